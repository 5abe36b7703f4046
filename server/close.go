package server

import (
	"errors"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// close ends the connection for cause, from any goroutine; onLoop says the
// caller is the connection's event loop (the frames are written at once).
// The Error the cause calls for (with detail as its message) and the Close
// frame are the last bytes the connection gets. A failing close
// (closes.Info.Fail) drops frames not yet written so the explanation goes
// out next, shuts down the write side once it is flushed, and the sweeper
// drops the connection after the fail linger; a clean close sends what was
// queued first and waits for the client's Close up to the close timeout.
// Later calls do nothing.
func (c *conn) close(cause closes.Cause, detail string, onLoop bool) {
	info := closes.Of(cause)
	c.closeWith(cause, info.Code, info.Reason, detail, 0, onLoop)
}

// refuse closes a connection the relay will not serve (server full, address
// limits) with a retry hint in the Error before the Close.
func (c *conn) refuse(cause closes.Cause, detail string, retry time.Duration, onLoop bool) {
	info := closes.Of(cause)
	c.closeWith(cause, info.Code, info.Reason, detail, retry, onLoop)
}

// closeDecodeError fails the connection for a frame decoder error, whose
// close reason is more precise than the cause's generic one.
func (c *conn) closeDecodeError(err error, onLoop bool) {
	var ce *wsproto.CloseError
	if !errors.As(err, &ce) {
		c.close(closes.ProtocolError, "", onLoop)
		return
	}
	cause := closes.ProtocolError
	detail := ""
	switch ce.Code {
	case ws.StatusInvalidFramePayloadData:
		cause = closes.InvalidData
	case ws.StatusMessageTooBig:
		cause = closes.TooBig
		detail = "message over the relay's limit (" + ce.Reason + ")"
	}
	c.closeWith(cause, uint16(ce.Code), ce.Reason, detail, 0, onLoop)
}

func (c *conn) closeWith(cause closes.Cause, code uint16, reason, detail string, retry time.Duration, onLoop bool) {
	if c.state.Load() == stateHandshake {
		if !onLoop {
			// Only the loop moves a connection out of the handshake, and
			// it may be writing the 101 right now: decide there, where a
			// connection that has just been upgraded gets its Close
			// frame instead of a bare TCP close.
			err := c.gc.Wake(func(gnet.Conn, error) error {
				if c.state.Load() != stateClosed {
					c.closeWith(cause, code, reason, detail, retry, true)
				}
				return nil
			})
			if err != nil {
				_ = c.gc.Close()
			}
			return
		}
		// Before the upgrade there is no WebSocket to close.
		c.closing().Store(true)
		_ = c.gc.Close()
		return
	}
	if !c.closing().CompareAndSwap(false, true) {
		return
	}
	info := closes.Of(cause)
	c.failing().Store(info.Fail)
	c.forfeitSeat().Store(!info.KeepsSeat)
	c.rare().closeSentAt.Store(time.Now().UnixNano())
	c.loop.srv.stats.closedBy(ws.StatusCode(code), false)
	c.loop.srv.stats.closedFor(cause)
	errCode := info.Error
	if c.echo {
		errCode = 0 // the echo endpoint speaks plain WebSocket, not the relay protocol
	}
	wake, kill := c.out.seal(closeFrames(errCode, detail, retry, code, reason), info.Fail)
	switch {
	case onLoop:
		c.flush()
	case wake:
		c.wake()
	}
	if kill {
		c.drop() // a kill came while this close was on its way (conn.kill)
	}
}

// closeFrames is the optional Error message (when code is set, with retry
// as its hint) followed by the Close frame.
func closeFrames(code pb.ErrorCode, detail string, retry time.Duration, closeCode uint16, reason string) []byte {
	var buf []byte
	if code != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		if detail == "" {
			detail = reason
		}
		m := errorMessage(0, code, detail)
		m.GetError().RetryAfterMs = uint32(retry.Milliseconds())
		buf = appendServerMessage(buf, m)
	}
	return wsproto.AppendClose(buf, ws.StatusCode(closeCode), reason)
}

func errorMessage(requestID uint32, code pb.ErrorCode, text string) *pb.ServerMessage {
	return &pb.ServerMessage{
		RequestId: requestID,
		Body: &pb.ServerMessage_Error{Error: &pb.Error{
			Code:    code,
			Message: strings.ToValidUTF8(text, "\uFFFD"),
		}},
	}
}

// appendServerMessage appends m as one binary WebSocket frame. For rare
// messages (errors, pongs, answers written by the event loop); frames of
// relayed messages come pre-encoded from the rooms.
func appendServerMessage(dst []byte, m *pb.ServerMessage) []byte {
	body, err := proto.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string can fail here, and errorMessage
		// repairs it; losing the message beats a panic.
		return dst
	}
	return wsproto.AppendFrame(dst, ws.OpBinary, body)
}

// writeError answers a request with an Error from the event loop.
func writeError(c *conn, requestID uint32, code pb.ErrorCode, text string) {
	c.answer(appendServerMessage(nil, errorMessage(requestID, code, text)))
}
