package client

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Sentinel errors for the server's error codes. A *ServerError unwraps to the
// sentinel of its code, so callers test with errors.Is:
//
//	if errors.Is(err, client.ErrRoomFull) { ... }
//
// and reach the server's message with errors.As(err, &serverErr).
var (
	ErrRoomFull          = errors.New("client: room full")
	ErrRoomNotFound      = errors.New("client: room not found")
	ErrNotInRoom         = errors.New("client: not in a room")
	ErrAlreadyInRoom     = errors.New("client: already in a room")
	ErrBadMessage        = errors.New("client: bad message")
	ErrMessageTooLarge   = errors.New("client: message too large")
	ErrUnauthorized      = errors.New("client: unauthorized")
	ErrRateLimited       = errors.New("client: rate limited")
	ErrInvalidArgument   = errors.New("client: invalid argument")
	ErrRoomLimitReached  = errors.New("client: room limit reached")
	ErrServerFull        = errors.New("client: server full")
	ErrSlowConsumer      = errors.New("client: slow consumer")
	ErrDraining          = errors.New("client: server draining")
	ErrOverloaded        = errors.New("client: server overloaded")
	ErrInternal          = errors.New("client: internal server error")
	ErrTimeout           = errors.New("client: timed out by server")
	ErrPolicyViolation   = errors.New("client: policy violation")
	ErrInputTooLate      = errors.New("client: input too late")
	errUnspecifiedServer = errors.New("client: unspecified server error")
)

var sentinels = map[pb.ErrorCode]error{
	pb.ErrorCode_ERROR_CODE_UNSPECIFIED:        errUnspecifiedServer,
	pb.ErrorCode_ERROR_CODE_ROOM_FULL:          ErrRoomFull,
	pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND:     ErrRoomNotFound,
	pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM:        ErrNotInRoom,
	pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM:    ErrAlreadyInRoom,
	pb.ErrorCode_ERROR_CODE_BAD_MESSAGE:        ErrBadMessage,
	pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE:  ErrMessageTooLarge,
	pb.ErrorCode_ERROR_CODE_UNAUTHORIZED:       ErrUnauthorized,
	pb.ErrorCode_ERROR_CODE_RATE_LIMITED:       ErrRateLimited,
	pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:   ErrInvalidArgument,
	pb.ErrorCode_ERROR_CODE_ROOM_LIMIT_REACHED: ErrRoomLimitReached,
	pb.ErrorCode_ERROR_CODE_SERVER_FULL:        ErrServerFull,
	pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER:      ErrSlowConsumer,
	pb.ErrorCode_ERROR_CODE_DRAINING:           ErrDraining,
	pb.ErrorCode_ERROR_CODE_OVERLOADED:         ErrOverloaded,
	pb.ErrorCode_ERROR_CODE_INTERNAL:           ErrInternal,
	pb.ErrorCode_ERROR_CODE_TIMEOUT:            ErrTimeout,
	pb.ErrorCode_ERROR_CODE_POLICY_VIOLATION:   ErrPolicyViolation,
	pb.ErrorCode_ERROR_CODE_INPUT_TOO_LATE:     ErrInputTooLate,
}

// ServerError is an Error message from the server: the refusal of a request
// (returned by Join, Leave, Ping) or an unsolicited error (passed to
// Options.OnError).
type ServerError struct {
	Code pb.ErrorCode
	// Message is the server's human-readable detail, for logs only.
	Message string
	// Reason is a machine-readable refinement of some codes (UNAUTHORIZED:
	// "expired", "bad_signature", ...; RATE_LIMITED: "address_rate",
	// "locked_out"); see docs/PROTOCOL.md.
	Reason string
	// RetryAfter is how long to wait before trying again (RATE_LIMITED,
	// SERVER_FULL, OVERLOADED), zero when not given.
	RetryAfter time.Duration
	// Tick and InputLead are INPUT_TOO_LATE's timing feedback: the room's
	// last closed tick, the refused input's tick, and how early the input
	// was (negative: how late).
	Tick      uint64
	InputTick uint64
	InputLead time.Duration
}

func (e *ServerError) Error() string {
	var b strings.Builder
	b.WriteString("tickrelay server: ")
	b.WriteString(strings.ToLower(strings.TrimPrefix(e.Code.String(), "ERROR_CODE_")))
	if e.Reason != "" {
		b.WriteString(" (")
		b.WriteString(e.Reason)
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the sentinel error of e.Code (ErrRoomFull, ...), or nil for
// a code this client does not know.
func (e *ServerError) Unwrap() error { return sentinels[e.Code] }

// ErrClosed is returned for requests on a closed connection. The *CloseError
// a connection ended with matches it: errors.Is(err, ErrClosed).
var ErrClosed = errors.New("client: connection closed")

// CloseError tells how a connection ended: the code and reason of the
// server's Close frame, or 1006 (abnormal closure) when the connection was
// lost without one. Codes 4000-4999 are tickrelay's own (4000 slow consumer).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	s := "client: connection closed: " + strconv.Itoa(e.Code)
	if e.Reason != "" {
		s += " " + e.Reason
	}
	return s
}

// MayReconnect reports whether reconnecting (with backoff) makes sense after
// this close: the relay's 4000-4499 range (slow consumer, idle timeout, ...),
// a relay going away or restarting (1001, 1011-1014), a Close without a code
// from something in between (1005) or a lost connection (1006). Not after a
// normal close, the relay's 4500-4999 range (kicked: do not reconnect
// automatically), or a protocol error (a client bug that a reconnect would
// repeat). The rule is the relay's own (package proto/closes).
func (e *CloseError) MayReconnect() bool { return closes.MayReconnect(e.Code) }

// Is makes every CloseError match ErrClosed.
func (e *CloseError) Is(target error) bool { return target == ErrClosed }

// ErrNoRoomID is returned by Join when JoinOptions names no room and does not
// ask to create one; an empty room id on the wire means "create", which must
// be asked for explicitly.
var ErrNoRoomID = errors.New("client: join: no room id (set RoomID, or Create for a server-made code)")

// ErrUnexpectedReply is returned (wrapped) when the server answers a request
// with a message of the wrong type.
var ErrUnexpectedReply = errors.New("client: unexpected reply")

// HTTPStatusError is returned (wrapped) by Dial when the server answers the
// WebSocket handshake with another HTTP status than 101, such as 503 from a
// relay that holds as many connections as it may.
type HTTPStatusError struct {
	Status int
}

func (e *HTTPStatusError) Error() string {
	return "client: handshake refused: HTTP " + strconv.Itoa(e.Status)
}
