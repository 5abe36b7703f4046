package centrifugo

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of Centrifugo's client protocol (github.com/centrifugal/
// protocol, client.proto) on the paths this package encodes or decodes by
// hand. TestFieldNumbers checks every one against the generated
// descriptors, so the official schema stays the one source of these facts.
const (
	commandID        protowire.Number = 1
	commandPublish   protowire.Number = 7
	publishChannel   protowire.Number = 1
	publishData      protowire.Number = 2
	replyID          protowire.Number = 1
	replyError       protowire.Number = 2
	replyPush        protowire.Number = 4
	replyConnect     protowire.Number = 5
	replySubscribe   protowire.Number = 6
	errorCode        protowire.Number = 1
	errorMessage     protowire.Number = 2
	pushChannel      protowire.Number = 2
	pushPub          protowire.Number = 4
	pushUnsubscribe  protowire.Number = 7
	pushDisconnect   protowire.Number = 11
	publicationData  protowire.Number = 4
	unsubscribeCode  protowire.Number = 2
	unsubscribeWhy   protowire.Number = 3
	disconnectCode   protowire.Number = 1
	disconnectReason protowire.Number = 2
)

// ErrMalformed is returned (wrapped) for a server message that is not a
// valid stream of length-prefixed Replies.
var ErrMalformed = errors.New("centrifugo: malformed reply")

func malformed(what string) error { return fmt.Errorf("%w: %s", ErrMalformed, what) }

// AppendPublish appends one length-prefixed Command{id, publish{channel,
// data}} to dst, the protobuf stream framing of Centrifugo's WebSocket
// transport (several commands may share one WebSocket message). It is the
// hand-written, allocation-free twin of marshalling protocol.Command.
func AppendPublish(dst []byte, id uint32, channel string, data []byte) []byte {
	pub := 0
	if channel != "" {
		pub += 1 + protowire.SizeBytes(len(channel))
	}
	if len(data) > 0 {
		pub += 1 + protowire.SizeBytes(len(data))
	}
	cmd := 1 + protowire.SizeBytes(pub)
	if id != 0 {
		cmd += 1 + protowire.SizeVarint(uint64(id))
	}
	dst = protowire.AppendVarint(dst, uint64(cmd))
	if id != 0 {
		dst = protowire.AppendTag(dst, commandID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(id))
	}
	dst = protowire.AppendTag(dst, commandPublish, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(pub))
	if channel != "" {
		dst = protowire.AppendTag(dst, publishChannel, protowire.BytesType)
		dst = protowire.AppendString(dst, channel)
	}
	if len(data) > 0 {
		dst = protowire.AppendTag(dst, publishData, protowire.BytesType)
		dst = protowire.AppendBytes(dst, data)
	}
	return dst
}

// replyKind says what a decoded Reply holds.
type replyKind uint8

const (
	replyPing        replyKind = iota // an empty Reply: the server's ping
	replyResult                       // an answer to a command (Connect, Subscribe, Publish...)
	replyPublication                  // Push{pub}
	replyUnsubscribe                  // Push{unsubscribe}: the server dropped the subscription
	replyDisconnect                   // Push{disconnect} (older servers; newer ones close the WebSocket)
	replyOtherPush                    // a push this package does not use (join, leave, message...)
)

// replyView is one decoded Reply. Byte slices borrow from the parsed
// message. For replyResult, Raw is the whole Reply (for the generated
// code, on the rare paths); ErrCode is non-zero when it carries an Error.
type replyView struct {
	Kind    replyKind
	ID      uint32
	ErrCode uint32
	ErrMsg  []byte
	Channel []byte // push channel
	Data    []byte // publication data
	Code    uint32 // unsubscribe or disconnect code
	Reason  []byte
	Raw     []byte
}

// nextReply decodes the first length-prefixed Reply of b and returns it and
// the rest of b. Unknown fields are skipped.
func nextReply(b []byte, r *replyView) ([]byte, error) {
	n, k := protowire.ConsumeVarint(b)
	if k < 0 {
		return nil, malformed("length prefix")
	}
	b = b[k:]
	if n > uint64(len(b)) {
		return nil, malformed("reply longer than the message")
	}
	msg, rest := b[:n], b[n:]
	*r = replyView{Kind: replyPing, Raw: msg}
	for len(msg) > 0 {
		num, typ, k := protowire.ConsumeTag(msg)
		if k < 0 {
			return nil, malformed("reply tag")
		}
		msg = msg[k:]
		switch {
		case num == replyID && typ == protowire.VarintType:
			v, k := protowire.ConsumeVarint(msg)
			if k < 0 {
				return nil, malformed("reply id")
			}
			r.ID = uint32(v)
			r.Kind = replyResult
			msg = msg[k:]
		case num == replyError && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(msg)
			if k < 0 {
				return nil, malformed("reply error")
			}
			if err := parseCodeAndText(v, errorCode, errorMessage, &r.ErrCode, &r.ErrMsg); err != nil {
				return nil, err
			}
			if r.Kind == replyPing {
				r.Kind = replyResult
			}
			msg = msg[k:]
		case num == replyPush && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(msg)
			if k < 0 {
				return nil, malformed("push")
			}
			if err := parsePush(v, r); err != nil {
				return nil, err
			}
			msg = msg[k:]
		default:
			k := protowire.ConsumeFieldValue(num, typ, msg)
			if k < 0 {
				return nil, malformed("reply field")
			}
			if num > replyPush && r.Kind == replyPing {
				r.Kind = replyResult // connect, subscribe, publish... results
			}
			msg = msg[k:]
		}
	}
	return rest, nil
}

func parsePush(b []byte, r *replyView) error {
	r.Kind = replyOtherPush
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return malformed("push tag")
		}
		b = b[k:]
		switch {
		case num == pushChannel && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return malformed("push channel")
			}
			r.Channel = v
			b = b[k:]
		case num == pushPub && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return malformed("publication")
			}
			data, err := publicationDataOf(v)
			if err != nil {
				return err
			}
			r.Kind, r.Data = replyPublication, data
			b = b[k:]
		case (num == pushUnsubscribe || num == pushDisconnect) && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return malformed("push body")
			}
			r.Kind = replyUnsubscribe
			codeField, whyField := unsubscribeCode, unsubscribeWhy
			if num == pushDisconnect {
				r.Kind = replyDisconnect
				codeField, whyField = disconnectCode, disconnectReason
			}
			if err := parseCodeAndText(v, codeField, whyField, &r.Code, &r.Reason); err != nil {
				return err
			}
			b = b[k:]
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return malformed("push field")
			}
			b = b[k:]
		}
	}
	return nil
}

func publicationDataOf(b []byte) ([]byte, error) {
	var data []byte
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return nil, malformed("publication tag")
		}
		b = b[k:]
		if num == publicationData && typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return nil, malformed("publication data")
			}
			data = v
			b = b[k:]
			continue
		}
		k = protowire.ConsumeFieldValue(num, typ, b)
		if k < 0 {
			return nil, malformed("publication field")
		}
		b = b[k:]
	}
	return data, nil
}

// parseCodeAndText reads a message made of a varint code and a text field
// (Error, Unsubscribe, Disconnect).
func parseCodeAndText(b []byte, codeNum, textNum protowire.Number, code *uint32, text *[]byte) error {
	for len(b) > 0 {
		num, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return malformed("tag")
		}
		b = b[k:]
		switch {
		case num == codeNum && typ == protowire.VarintType:
			v, k := protowire.ConsumeVarint(b)
			if k < 0 {
				return malformed("code")
			}
			*code = uint32(v)
			b = b[k:]
		case num == textNum && typ == protowire.BytesType:
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return malformed("text")
			}
			*text = v
			b = b[k:]
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return malformed("field")
			}
			b = b[k:]
		}
	}
	return nil
}
