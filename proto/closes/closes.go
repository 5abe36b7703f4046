// Package closes is the one table of the ways a tickrelay connection ends:
// for every cause, the WebSocket close code and reason the relay sends, the
// protocol Error sent just before the Close, the HTTP status used when the
// cause arises before the upgrade, whether a client may reconnect, and
// whether the relay fails the connection (closes it promptly) or closes it
// cleanly (waits for the client's Close).
//
// The relay (package server), the Go SDK (package client), the TypeScript
// SDK (clients/ts, generated from this table) and docs/PROTOCOL.md (checked
// against it by a test) all derive from Table; edit it here and nowhere
// else.
//
// Codes follow RFC 6455 section 7.4 and the IANA registry: 1000-1015 are
// standard; 4000-4999 are tickrelay's own, split so that a client can decide
// without knowing every code: 4000-4499 mean "may reconnect, with backoff",
// 4500-4999 "do not reconnect automatically" (the same connection would be
// ended the same way again).
package closes

import (
	"strconv"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Cause is an internal reason for ending a connection.
type Cause uint8

// Causes. The zero value is not a cause: Of treats it (and any unknown
// value) as Internal.
const (
	// Normal: the client closed, or its session ended cleanly. Never used
	// for a close the relay forces.
	Normal Cause = iota + 1
	// GoingAway: the relay is shutting down.
	GoingAway
	// Draining: the relay is draining (SIGTERM or POST /v1/drain) and its
	// drain timeout has passed: reconnect (and resume) elsewhere.
	Draining
	// ProtocolError: an RFC 6455 violation; the frame decoder's close error
	// carries a precise reason in place of the generic one.
	ProtocolError
	// TextFrame: a Text message on the relay endpoint, which speaks binary
	// protobuf only.
	TextFrame
	// InvalidData: a payload invalid for its type (Text that is not UTF-8 on
	// the echo endpoint, a Close reason that is not UTF-8).
	InvalidData
	// Policy: too many malformed envelopes or refused requests.
	Policy
	// TooBig: a message over max-message-bytes or max-fragments.
	TooBig
	// Internal: a relay bug or an unexpected failure.
	Internal
	// Restart: the relay node can no longer serve this connection's room
	// (it lost its cluster, or hands the room over) but the session lives
	// on: reconnect and resume at once.
	Restart
	// SlowConsumer: the client does not read fast enough; its outbound
	// budget is spent.
	SlowConsumer
	// IdleTimeout: nothing received, not even a Pong, within idle-timeout.
	IdleTimeout
	// HandshakeTimeout: the HTTP upgrade request was not complete within
	// handshake-timeout. Before the upgrade: answered with HTTP 408.
	HandshakeTimeout
	// Overloaded: the relay sheds load.
	Overloaded
	// ServerFull: the connection limit is reached.
	ServerFull
	// RateLimited: the client kept sending over its rate limits after being
	// told to slow down.
	RateLimited
	// SlowMessage: a message was started but not completed within
	// message-read-timeout (a client trickling a frame byte by byte).
	SlowMessage
	// AddressLimited: too many connections or handshakes from the client's
	// address.
	AddressLimited
	// Kicked: removed by the game or an operator.
	Kicked
	// Unauthorized: the auth token was refused too many times, or is
	// required before anything else and was refused.
	Unauthorized
	// Replaced: the session was resumed on a newer connection; this one is
	// stale.
	Replaced
	// OriginRefused: the browser page's Origin is not on the allow-list.
	OriginRefused

	numCauses
)

// Info is what the relay does and tells the client for a Cause.
type Info struct {
	// Name identifies the cause in logs and metric labels (snake_case).
	Name string
	// Code goes into the Close frame. Never 1005 or 1006 (RFC 6455 forbids
	// sending them) and never 1000 for a close the relay forces.
	Code uint16
	// Reason goes after the code: short ASCII, at most 123 bytes.
	Reason string
	// Error, when not UNSPECIFIED, is the protocol Error sent just before
	// the Close frame, with a detail message saying more than Reason can.
	Error pb.ErrorCode
	// HTTPStatus answers the cause when it arises before the WebSocket
	// upgrade, when no Close frame can be sent yet. Zero: the cause cannot
	// arise then.
	HTTPStatus int
	// Reconnect: a client may reconnect (with backoff; Restart: at once).
	Reconnect bool
	// Fail: the relay fails the connection (RFC 6455 section 7.1.7): it
	// sends the Close, shuts down its side once that is flushed, discards
	// input and closes the socket on the client's FIN or Close or after a
	// short linger. Otherwise the close is clean: it waits for the client's
	// Close up to close-timeout.
	Fail bool
	// KeepsSeat: a player closed for this cause keeps its seat for the
	// room's seat grace, so that it can resume. Causes that are the
	// client's own doing (protocol violations, floods, refused tokens, a
	// client that does not read what it is sent) forfeit the seat at once: resume is for networks that fail, and a
	// client that reconnects after such a close without resuming must not
	// find its room full of its own old seats.
	KeepsSeat bool
	// When says when the relay uses it, for the docs.
	When string
}

// Table maps every cause to its Info. Index it with a Cause, or use Of.
var Table = [numCauses]Info{
	Normal:           {"normal", 1000, "", 0, 0, false, false, true, "the client closed, or its session ended cleanly"},
	GoingAway:        {"going_away", 1001, "server shutting down", 0, 503, true, false, true, "the relay shuts down (SIGINT, or a second signal)"},
	Draining:         {"draining", 1001, "server draining: reconnect to resume", pb.ErrorCode_ERROR_CODE_DRAINING, 503, true, false, true, "the drain timeout passed while the client was still connected"},
	ProtocolError:    {"protocol_error", 1002, "protocol error", 0, 400, false, true, false, "an RFC 6455 violation (the Close reason names it)"},
	TextFrame:        {"text_frame", 1003, "text frames not supported", pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, 0, false, true, false, "a Text message on the relay endpoint"},
	InvalidData:      {"invalid_data", 1007, "invalid message data", 0, 0, false, true, false, "Text that is not UTF-8 (echo endpoint), a Close reason that is not UTF-8"},
	Policy:           {"policy", 1008, "too many malformed messages", pb.ErrorCode_ERROR_CODE_POLICY_VIOLATION, 0, false, true, false, "max-bad-messages undecodable envelopes"},
	TooBig:           {"too_big", 1009, "message too big", pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE, 0, false, true, false, "a message over max-message-bytes or max-fragments"},
	Internal:         {"internal", 1011, "internal error", pb.ErrorCode_ERROR_CODE_INTERNAL, 500, true, false, true, "a relay bug or an unexpected failure"},
	Restart:          {"restart", 1012, "service restart: resume now", 0, 503, true, false, true, "the node can no longer serve the room (cluster fenced, room handed over)"},
	SlowConsumer:     {"slow_consumer", 4000, "slow consumer", pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER, 0, true, true, false, "the client's unwritten output passed outbound-hard-bytes, or its backlog max-backlog-bytes"},
	IdleTimeout:      {"idle_timeout", 4001, "idle timeout", pb.ErrorCode_ERROR_CODE_TIMEOUT, 0, true, true, true, "nothing received within idle-timeout"},
	HandshakeTimeout: {"handshake_timeout", 4001, "handshake timeout", 0, 408, true, true, false, "the upgrade request was not complete within handshake-timeout (HTTP only)"},
	Overloaded:       {"overloaded", 4002, "server overloaded", pb.ErrorCode_ERROR_CODE_OVERLOADED, 503, true, false, true, "load shedding"},
	ServerFull:       {"server_full", 4002, "server full", pb.ErrorCode_ERROR_CODE_SERVER_FULL, 503, true, true, false, "the connection limit is reached: upgraded and closed at once (far past the limit: HTTP 503 before reading the request)"},
	RateLimited:      {"rate_limited", 4003, "rate limited", pb.ErrorCode_ERROR_CODE_RATE_LIMITED, 0, true, true, false, "the client kept sending over its rate limits after RATE_LIMITED answers"},
	SlowMessage:      {"slow_message", 4004, "message read timeout", pb.ErrorCode_ERROR_CODE_TIMEOUT, 0, true, true, true, "a message not completed within message-read-timeout"},
	AddressLimited:   {"address_limited", 4005, "too many connections from your address", pb.ErrorCode_ERROR_CODE_RATE_LIMITED, 429, true, true, false, "per-address connection or handshake limits"},
	Kicked:           {"kicked", 4500, "kicked", 0, 0, false, false, false, "removed by the game or an operator"},
	Unauthorized:     {"unauthorized", 4501, "unauthorized", pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, 403, false, true, false, "the auth token was refused too many times"},
	Replaced:         {"replaced", 4502, "session resumed on another connection", 0, 0, false, false, false, "a Resume on a newer connection took this connection's seat"},
	OriginRefused:    {"origin_refused", 4503, "origin not allowed", 0, 403, false, true, false, "the page's Origin is not on allowed-origins: upgraded and closed at once, so the page can read why"},
}

// MaxReasonBytes is the longest Close reason RFC 6455 allows (a control
// frame's 125 bytes less the 2-byte code).
const MaxReasonBytes = 123

// Of returns the Info of c; unknown causes map to Internal's.
func Of(c Cause) Info {
	if c == 0 || c >= numCauses {
		c = Internal
	}
	return Table[c]
}

// All lists every cause, in table order.
func All() []Cause {
	out := make([]Cause, 0, numCauses-1)
	for c := Cause(1); c < numCauses; c++ {
		out = append(out, c)
	}
	return out
}

// String returns the cause's name.
func (c Cause) String() string {
	if c == 0 || c >= numCauses {
		return "Cause(" + strconv.Itoa(int(c)) + ")"
	}
	return Table[c].Name
}

// MayReconnect tells a client whether to connect again, with backoff, after
// seeing close code on its connection. It covers codes the relay never sends
// but a client observes: 1005 (a Close without a code, e.g. from a proxy),
// 1006 (the connection dropped without a Close), 1012 and 1013 (restart, try
// again later). 1000 is a deliberate end, 1002/1003/1007/1008/1009 mean the
// client misbehaved and would again, 3000-3999 are not tickrelay's to
// interpret, 4500-4999 mean the relay asks not to.
func MayReconnect(code int) bool {
	switch {
	case code >= 4000 && code <= 4499:
		return true
	case code >= 4500 && code <= 4999:
		return false
	}
	switch code {
	case 1001, 1005, 1006, 1011, 1012, 1013, 1014:
		return true
	}
	return false
}
