package wsproto

import (
	"strconv"

	"github.com/gobwas/ws"
)

// tickrelay's own close codes, in the private range 4000-4999 of RFC 6455
// section 7.4.2. 4000-4499 tell a client it may reconnect (with backoff);
// 4500-4999 tell it not to, because the same connection would be closed the
// same way again (the split centrifuge uses for its disconnect codes).
const (
	StatusSlowConsumer ws.StatusCode = 4000 // outbound budget exceeded
	StatusTimeout      ws.StatusCode = 4001 // idle / ping timeout
	StatusOverloaded   ws.StatusCode = 4002 // server full or overloaded
	StatusKicked       ws.StatusCode = 4500 // removed by the game or an operator
	StatusUnauthorized ws.StatusCode = 4501 // reserved for authentication
)

// Cause is an internal reason for closing a connection. ReasonFor maps every
// cause to the close code and reason sent to the client, in one table, so
// that the server never invents codes at call sites.
type Cause uint8

// Causes. The zero value is not a cause; ReasonFor treats it (and any unknown
// value) as CauseInternal.
const (
	// CauseNormal: the client asked to close (we echo its Close) or ended its
	// session cleanly. Never use it for a close the server forces.
	CauseNormal Cause = iota + 1
	// CauseGoingAway: the server is shutting down or draining.
	CauseGoingAway
	// CauseProtocolError: an RFC 6455 violation the frame decoder did not
	// already report with a more precise reason.
	CauseProtocolError
	// CauseTextFrame: a Text message in relay mode, which speaks binary only.
	CauseTextFrame
	// CauseInvalidData: a message whose payload is invalid for its type
	// (Text that is not UTF-8 on the echo endpoint).
	CauseInvalidData
	// CausePolicy: repeated malformed envelopes; one bad envelope gets an
	// Error message, a pattern of them gets the connection closed.
	CausePolicy
	// CauseTooBig: a message over the size or fragment limit.
	CauseTooBig
	// CauseInternal: a server bug or an unexpected failure.
	CauseInternal
	// CauseSlowConsumer: the client does not read fast enough and its
	// outbound budget is spent.
	CauseSlowConsumer
	// CauseIdleTimeout: nothing received (not even a Pong) within the idle
	// timeout.
	CauseIdleTimeout
	// CauseHandshakeTimeout: the HTTP upgrade request was not complete within
	// the handshake timeout. It happens before the upgrade, so it is answered
	// over HTTP (408) or not at all, never with a Close frame.
	CauseHandshakeTimeout
	// CauseOverloaded: the server sheds load (a worker inbox is full).
	CauseOverloaded
	// CauseServerFull: the connection limit is reached. Usually detected
	// before the upgrade (HTTP 503); the Close code covers a late detection.
	CauseServerFull
	// CauseKicked: removed by the game or an operator; reconnecting would
	// only be kicked again.
	CauseKicked
	// CauseUnauthorized: reserved for authentication.
	CauseUnauthorized

	numCauses
)

// CloseReason is what to tell a client when closing for a Cause.
type CloseReason struct {
	// Code goes into the Close frame. It is never 1005 or 1006 (RFC 6455
	// forbids sending them) and never 1000 for a close the server forces.
	Code ws.StatusCode
	// Reason goes after the code; at most 123 bytes, ASCII.
	Reason string
	// HTTPStatus answers the cause when it arises before the upgrade, when
	// no Close frame can be sent yet. Zero: the cause cannot arise then.
	HTTPStatus int
}

// closeTable is the single mapping from causes to what the client sees.
// CLOSE_CODES.md is generated from it (TestCloseCodesDocInSync keeps the two
// equal); edit here, then run that test with -update-close-codes.
var closeTable = [numCauses]struct {
	name   string
	reason CloseReason
	when   string
}{
	CauseNormal:           {"CauseNormal", CloseReason{ws.StatusNormalClosure, "", 0}, "client closed, or ended its session cleanly"},
	CauseGoingAway:        {"CauseGoingAway", CloseReason{ws.StatusGoingAway, "server going away", 503}, "shutdown or drain"},
	CauseProtocolError:    {"CauseProtocolError", CloseReason{ws.StatusProtocolError, "protocol error", 400}, "RFC 6455 violation (the decoder's CloseError carries a precise reason)"},
	CauseTextFrame:        {"CauseTextFrame", CloseReason{ws.StatusUnsupportedData, "text frames not supported", 0}, "Text message in relay mode"},
	CauseInvalidData:      {"CauseInvalidData", CloseReason{ws.StatusInvalidFramePayloadData, "invalid message data", 0}, "Text not UTF-8 (echo endpoint), invalid close reason"},
	CausePolicy:           {"CausePolicy", CloseReason{ws.StatusPolicyViolation, "too many malformed messages", 0}, "repeated malformed envelopes"},
	CauseTooBig:           {"CauseTooBig", CloseReason{ws.StatusMessageTooBig, "message too big", 0}, "message over MaxMessageBytes or MaxFragments"},
	CauseInternal:         {"CauseInternal", CloseReason{ws.StatusInternalServerError, "internal error", 500}, "server bug or unexpected failure"},
	CauseSlowConsumer:     {"CauseSlowConsumer", CloseReason{StatusSlowConsumer, "slow consumer", 0}, "outbound budget exceeded"},
	CauseIdleTimeout:      {"CauseIdleTimeout", CloseReason{StatusTimeout, "idle timeout", 0}, "nothing received within the idle timeout"},
	CauseHandshakeTimeout: {"CauseHandshakeTimeout", CloseReason{StatusTimeout, "handshake timeout", 408}, "upgrade request incomplete in time (HTTP only)"},
	CauseOverloaded:       {"CauseOverloaded", CloseReason{StatusOverloaded, "server overloaded", 503}, "load shedding"},
	CauseServerFull:       {"CauseServerFull", CloseReason{StatusOverloaded, "server full", 503}, "connection limit reached"},
	CauseKicked:           {"CauseKicked", CloseReason{StatusKicked, "kicked", 0}, "removed by the game or an operator"},
	CauseUnauthorized:     {"CauseUnauthorized", CloseReason{StatusUnauthorized, "unauthorized", 403}, "reserved for authentication"},
}

// ReasonFor returns the close code and reason for c. Unknown causes map to
// CauseInternal's entry. It does not allocate.
func ReasonFor(c Cause) CloseReason {
	if c == 0 || c >= numCauses {
		c = CauseInternal
	}
	return closeTable[c].reason
}

// String returns the cause's Go name, for logs and metrics labels.
func (c Cause) String() string {
	if c == 0 || c >= numCauses {
		return "Cause(" + strconv.Itoa(int(c)) + ")"
	}
	return closeTable[c].name
}

// MayReconnect reports whether a client that saw code should try to connect
// again (with backoff). It is meant for client code, so it also covers codes
// tickrelay never sends but a client can observe: 1006 (connection dropped
// without a Close), 1005 (Close without a code, e.g. from a proxy), 1012 and
// 1013 (service restart, try again later).
func MayReconnect(code ws.StatusCode) bool {
	switch {
	case code >= 4000 && code <= 4499:
		return true
	case code >= 4500 && code <= 4999:
		return false
	}
	switch code {
	case ws.StatusGoingAway, // restart or drain: another instance will take us
		ws.StatusInternalServerError, // transient by assumption
		ws.StatusNoStatusRcvd,        // someone in between closed without saying why
		ws.StatusAbnormalClosure,     // network drop
		1012,                         // service restart (IANA)
		1013:                         // try again later (IANA)
		return true
	}
	// 1000 is a deliberate end; 1002, 1003, 1007, 1008, 1009 mean the client
	// misbehaved and would again; 3000-3999 are not ours to interpret.
	return false
}

// validCloseCode reports whether code may appear in a Close frame, sent or
// received: 1000-1003, 1007-1014 and 3000-4999 (RFC 6455 section 7.4 and the
// IANA registry). 1004 is reserved, 1005/1006/1015 must never be sent,
// 1016-2999 are unassigned, <1000 and >=5000 are not in use.
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
