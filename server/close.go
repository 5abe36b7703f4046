package server

import (
	"errors"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// closeAsync starts a server-initiated close from any goroutine: an optional
// Error message, then a Close frame; after that the connection sends no
// data and waits for the client's Close (or CloseTimeout, enforced by the
// sweeper). gnet runs async writes before the low-priority Close, so the
// Close frame cannot be overtaken by the TCP close.
func (c *conn) closeAsync(cause wsproto.Cause, code pb.ErrorCode, text string) {
	if c.state.Load() == stateHandshake {
		c.closing.Store(true)
		_ = c.gc.Close()
		return
	}
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.closeSentAt.Store(time.Now().UnixNano())
	reason := wsproto.ReasonFor(cause)
	_ = c.gc.AsyncWrite(closeFrames(code, text, reason), nil)
	c.srv.stats.closedBy(reason.Code, false)
}

// closeOnLoop is closeAsync for the connection's own event loop: the frames
// are written at once.
func (s *Server) closeOnLoop(c *conn, reason wsproto.CloseReason, code pb.ErrorCode, text string) gnet.Action {
	if !c.closing.CompareAndSwap(false, true) {
		return gnet.None
	}
	c.closeSentAt.Store(time.Now().UnixNano())
	if _, err := c.gc.Write(closeFrames(code, text, reason)); err != nil {
		return gnet.Close
	}
	s.stats.closedBy(reason.Code, false)
	return gnet.None
}

func closeFrames(code pb.ErrorCode, text string, reason wsproto.CloseReason) []byte {
	var buf []byte
	if code != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		buf = appendServerMessage(buf, &pb.ServerMessage{Body: &pb.ServerMessage_Error{
			Error: &pb.Error{Code: code, Message: text},
		}})
	}
	return wsproto.AppendClose(buf, reason.Code, reason.Reason)
}

// appendServerMessage appends m as one binary WebSocket frame. For rare
// messages (errors, pongs, answers written by the event loop); frames of
// relayed messages come pre-encoded from the rooms.
func appendServerMessage(dst []byte, m *pb.ServerMessage) []byte {
	body, err := proto.Marshal(m)
	if err != nil {
		// Only invalid UTF-8 in a string can fail here; never from our own
		// messages, but losing the message beats a panic.
		return dst
	}
	return wsproto.AppendFrame(dst, ws.OpBinary, body)
}

// writeError sends an Error answer from the event loop.
func writeError(c *conn, requestID uint32, code pb.ErrorCode, text string) {
	_, _ = c.gc.Write(appendServerMessage(nil, &pb.ServerMessage{
		RequestId: requestID,
		Body:      &pb.ServerMessage_Error{Error: &pb.Error{Code: code, Message: text}},
	}))
}

// closeReasonOf maps a decoder error to the close it calls for.
func closeReasonOf(err error) wsproto.CloseReason {
	var ce *wsproto.CloseError
	if errors.As(err, &ce) {
		return wsproto.CloseReason{Code: ce.Code, Reason: ce.Reason}
	}
	return wsproto.ReasonFor(wsproto.CauseProtocolError)
}

// errorCodeFor is the Error sent before closing for a decoder error: only a
// size limit is worth explaining in the protocol; framing errors get the
// Close frame alone (the client's framing is broken anyway).
func errorCodeFor(err error) pb.ErrorCode {
	var ce *wsproto.CloseError
	if errors.As(err, &ce) && ce.Code == ws.StatusMessageTooBig {
		return pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE
	}
	return pb.ErrorCode_ERROR_CODE_UNSPECIFIED
}
