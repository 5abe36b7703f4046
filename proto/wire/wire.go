// Package wire holds hand-written, allocation-free encoders and decoders for
// the hot messages of the tickrelay protocol: the Send a client relays and the
// Frame the server batches. Everything else goes through the generated code in
// package tickrelayv1. Tests check both against each other, byte for byte.
//
// Decoded views borrow from the input buffer: they are valid only as long as
// the caller keeps that buffer unchanged.
package wire

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of tickrelay.proto used on the hot paths. TestFieldNumbers
// checks them against the generated descriptors.
const (
	clientRequestID    protowire.Number = 1
	clientJoin         protowire.Number = 2
	clientLeave        protowire.Number = 3
	clientSend         protowire.Number = 4
	clientPing         protowire.Number = 5
	clientAuthenticate protowire.Number = 6
	clientResume       protowire.Number = 7
	clientInput        protowire.Number = 8
	clientSnapshot     protowire.Number = 9
	clientAck          protowire.Number = 10

	sendPayload    protowire.Number = 1
	sendKind       protowire.Number = 2
	sendTargets    protowire.Number = 3
	sendEcho       protowire.Number = 4
	sendLatestOnly protowire.Number = 5
	sendSeq        protowire.Number = 6

	serverRequestID     protowire.Number = 1
	serverJoined        protowire.Number = 2
	serverFrame         protowire.Number = 3
	serverPong          protowire.Number = 4
	serverError         protowire.Number = 5
	serverLeft          protowire.Number = 6
	serverAuthenticated protowire.Number = 7
	serverResumed       protowire.Number = 8

	frameTick       protowire.Number = 1
	frameDeliveries protowire.Number = 2
	frameEvents     protowire.Number = 3
	frameSeq        protowire.Number = 4
	frameInputSet   protowire.Number = 5
	frameInputLead  protowire.Number = 6

	deliverySender  protowire.Number = 1
	deliveryKind    protowire.Number = 2
	deliveryPayload protowire.Number = 3
)

// MaxTargets bounds the target list of one Send, so that a hostile message
// cannot make the server build an arbitrarily long list.
const MaxTargets = 1024

// ErrMalformed is returned (wrapped) for input that is not a valid message.
var ErrMalformed = errors.New("wire: malformed message")

// ErrTooManyTargets is returned (wrapped) when a Send lists more than MaxTargets targets.
var ErrTooManyTargets = errors.New("wire: too many targets")

// Body says which field of an envelope's oneof is set.
type Body uint8

const (
	BodyNone Body = iota
	BodyJoin
	BodyLeave
	BodySend
	BodyPing
	BodyJoined
	BodyFrame
	BodyPong
	BodyError
	BodyLeft
	BodyAuthenticate
	BodyResume
	BodyInput
	BodySnapshot
	BodyAuthenticated
	BodyResumed
)

var bodyNames = [...]string{"none", "join", "leave", "send", "ping", "joined", "frame", "pong", "error", "left",
	"authenticate", "resume", "input", "snapshot", "authenticated", "resumed"}

func (b Body) String() string {
	if int(b) < len(bodyNames) {
		return bodyNames[b]
	}
	return fmt.Sprintf("body(%d)", uint8(b))
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// takeVarint consumes one varint field value from b, naming what in the
// error when b is malformed.
func takeVarint(b []byte, what string) (uint64, []byte, error) {
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, nil, malformed(what)
	}
	return v, b[n:], nil
}

// takeBytes consumes one length-delimited field value from b.
func takeBytes(b []byte, what string) ([]byte, []byte, error) {
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, nil, malformed(what)
	}
	return v, b[n:], nil
}
