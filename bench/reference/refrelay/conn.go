package refrelay

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Subprotocol is selected when the client offers it.
const Subprotocol = "tickrelay.v1"

// maxRequestBytes bounds the HTTP upgrade request.
const maxRequestBytes = 8 << 10

// Close codes and reasons sent.
const (
	closeNormal       = 1000
	closeProtocol     = 1002
	closeUnsupported  = 1003
	closeTooBig       = 1009
	closeSlowConsumer = 4000
)

// conn is one connection. Fields without a comment belong to its event
// loop.
type conn struct {
	srv      *Server
	gc       gnet.Conn
	upgraded bool
	closing  bool // a Close frame went out: input is ignored until TCP closes

	rd  bytes.Reader               // over the buffered input, for gobwas's header reader
	hdr [ws.MaxHeaderSize - 2]byte // ws.ReadHeaderBuffer's scratch
	msg wire.ClientMessage         // reused parse target

	room   *room // set and cleared on the loop, under room.mu too
	player uint32

	// Frames handed to AsyncWrite and not yet written, oldest first: the
	// ticker sends, the write callback (on the loop) receives and returns
	// the frame to the pool. Made by the ticker at the first frame, so
	// that idle connections do not pay for it.
	inflight chan *frame
	written  gnet.AsyncCallback // c.onWritten, bound once
	gone     atomic.Bool        // OnClose ran: the ticker stops sending
	kicked   atomic.Bool        // closed as a slow consumer
}

// traffic handles the buffered input. Bytes from Peek are valid only until
// Discard or the end of OnTraffic; every payload used later is copied
// first. Incomplete input stays buffered: Discard is only ever called with
// the positive count of bytes used (Discard(0) would drop everything).
func (c *conn) traffic() gnet.Action {
	in, _ := c.gc.Peek(-1)
	if len(in) == 0 {
		return gnet.None
	}
	if c.closing {
		_, _ = c.gc.Discard(len(in))
		return gnet.None
	}
	if !c.upgraded {
		used, action := c.handshake(in)
		if used > 0 {
			_, _ = c.gc.Discard(used)
		}
		if action != gnet.None || !c.upgraded {
			return action
		}
		if in, _ = c.gc.Peek(-1); len(in) == 0 {
			return gnet.None
		}
	}
	used := 0
	action := gnet.None
	for used < len(in) && action == gnet.None {
		n, act := c.frame(in[used:])
		if n == 0 && act == gnet.None {
			break // the rest of a frame has not arrived yet
		}
		used += n
		action = act
	}
	if used > 0 {
		_, _ = c.gc.Discard(used)
	}
	return action
}

// handshake answers GET /healthz, or upgrades GET Path with ws.Upgrader on
// the complete request; it returns the bytes used, 0 while the request is
// incomplete.
func (c *conn) handshake(in []byte) (int, gnet.Action) {
	end := bytes.Index(in, []byte("\r\n\r\n"))
	if end < 0 {
		if len(in) > maxRequestBytes {
			_, _ = c.gc.Write([]byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			return len(in), gnet.Close
		}
		return 0, gnet.None
	}
	req := in[:end+4]
	if bytes.HasPrefix(req, []byte("GET /healthz ")) {
		_, _ = c.gc.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"))
		return len(req), gnet.Close
	}
	path := c.srv.cfg.Path
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			if string(uri) != path {
				return ws.RejectConnectionError(ws.RejectionStatus(404), ws.RejectionReason("refrelay: no WebSocket endpoint here"))
			}
			return nil
		},
		Protocol: func(p []byte) bool { return string(p) == Subprotocol },
	}
	// Upgrade reads the request from the buffered bytes and writes its
	// answer (101, or the HTTP error) to the connection.
	if _, err := u.Upgrade(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(req), c.gc}); err != nil {
		return len(req), gnet.Close
	}
	c.upgraded = true
	return len(req), gnet.None
}

// frame handles the first frame of in: the bytes used (0: incomplete) and
// what to do with the connection.
func (c *conn) frame(in []byte) (int, gnet.Action) {
	c.rd.Reset(in)
	h, err := ws.ReadHeaderBuffer(&c.rd, c.hdr[:])
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, gnet.None
	}
	if err != nil {
		return len(in), c.closeWith(closeProtocol, "protocol error: "+err.Error())
	}
	hlen := len(in) - c.rd.Len()
	if err := ws.CheckHeader(h, ws.StateServerSide); err != nil {
		return len(in), c.closeWith(closeProtocol, "protocol error: "+err.Error())
	}
	if h.Length > int64(c.srv.cfg.MaxMessageBytes) {
		return len(in), c.closeWith(closeTooBig, "message too big")
	}
	end := hlen + int(h.Length)
	if len(in) < end {
		return 0, gnet.None
	}
	payload := in[hlen:end]
	ws.Cipher(payload, h.Mask, 0)
	switch h.OpCode {
	case ws.OpBinary:
		if !h.Fin {
			return end, c.closeWith(closeUnsupported, "fragmented messages are not supported by the reference relay")
		}
		return end, c.message(payload)
	case ws.OpPing:
		c.writeFrame(ws.OpPong, payload)
		return end, gnet.None
	case ws.OpPong:
		return end, gnet.None
	case ws.OpClose:
		// Echo the client's code and close once it is written.
		body := []byte(nil)
		if len(payload) >= 2 {
			body = payload[:2]
		}
		c.writeFrame(ws.OpClose, body)
		c.closing = true
		return end, gnet.Close
	case ws.OpText:
		return end, c.closeWith(closeUnsupported, "text frames not supported")
	default: // a continuation without a fragmented message
		return end, c.closeWith(closeProtocol, "unexpected continuation frame")
	}
}

// message handles one ClientMessage.
func (c *conn) message(b []byte) gnet.Action {
	if err := wire.ParseClientMessage(b, &c.msg); err != nil {
		c.sendError(0, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, "undecodable message")
		return gnet.None
	}
	m := &c.msg
	switch m.Body {
	case wire.BodySend:
		c.send(m)
	case wire.BodyJoin, wire.BodyLeave, wire.BodyPing:
		// Rare: decode the whole envelope with the generated code.
		var full pb.ClientMessage
		if err := proto.Unmarshal(b, &full); err != nil {
			c.sendError(m.RequestID, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, "undecodable message")
			return gnet.None
		}
		switch body := full.GetBody().(type) {
		case *pb.ClientMessage_Join:
			c.srv.join(c, full.GetRequestId(), body.Join)
		case *pb.ClientMessage_Leave:
			if c.room == nil {
				c.sendError(full.GetRequestId(), pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, "not in a room")
				return gnet.None
			}
			id := c.room.id
			c.srv.leave(c)
			c.reply(&pb.ServerMessage{RequestId: full.GetRequestId(), Body: &pb.ServerMessage_Left{Left: &pb.Left{RoomId: id, Reason: pb.LeaveReason_LEAVE_REASON_LEFT}}})
		case *pb.ClientMessage_Ping:
			c.reply(&pb.ServerMessage{RequestId: full.GetRequestId(), Body: &pb.ServerMessage_Pong{Pong: &pb.Pong{
				ClientTime: body.Ping.GetClientTime(), ServerTime: time.Now().UnixNano(), Tick: c.srv.tick.Load(),
				TickRate: uint32(c.srv.cfg.TickRate * boolInt(c.room != nil)),
			}}})
		}
	default:
		c.sendError(m.RequestID, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, "message without a body")
	}
	return gnet.None
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// send routes a Send into its room's tick buffer.
func (c *conn) send(m *wire.ClientMessage) {
	s := &m.Send
	switch {
	case c.room == nil:
		c.sendError(m.RequestID, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, "not in a room")
	case len(s.Targets) > 0 || s.Echo || s.LatestOnly:
		c.sendError(m.RequestID, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "the reference relay only broadcasts: no targets, echo or latest_only")
	case !c.room.add(c.player, s.Kind, s.Payload, c.srv.cfg.MaxTickBytes):
		c.sendError(m.RequestID, pb.ErrorCode_ERROR_CODE_OVERLOADED, "the room's tick buffer is full")
	}
}

// reply writes one ServerMessage (rare messages: proto.Marshal).
func (c *conn) reply(m *pb.ServerMessage) {
	b, err := proto.Marshal(m)
	if err != nil {
		return
	}
	c.writeFrame(ws.OpBinary, b)
}

func (c *conn) sendError(requestID uint32, code pb.ErrorCode, msg string) {
	c.reply(&pb.ServerMessage{RequestId: requestID, Body: &pb.ServerMessage_Error{Error: &pb.Error{Code: code, Message: msg}}})
}

// writeFrame writes one unfragmented server frame on the loop (gnet keeps
// whatever the socket does not take).
func (c *conn) writeFrame(op ws.OpCode, payload []byte) {
	w := c.srv.appenders.Get().(*appender)
	f := c.srv.frames.Get().(*frame)
	f.b = w.header(f.b[:0], op, len(payload))
	f.b = append(f.b, payload...)
	_, _ = c.gc.Write(f.b)
	c.srv.frames.Put(f)
	c.srv.appenders.Put(w)
}

// closeWith sends a Close frame and closes the connection once it is out.
func (c *conn) closeWith(code int, reason string) gnet.Action {
	c.writeFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(code), reason))
	c.closing = true
	return gnet.Close
}

// onWritten is the write callback of every tick frame, on the loop: the
// frame goes back to the pool; a connection whose unwritten bytes pass the
// limit is closed as a slow consumer.
func (c *conn) onWritten(gc gnet.Conn, _ error) error {
	c.srv.frames.Put(<-c.inflight)
	if gc.OutboundBuffered() > c.srv.cfg.MaxOutboundBytes && !c.kicked.Swap(true) {
		c.closeWith(closeSlowConsumer, "slow consumer")
		_ = gc.Close()
	}
	return nil
}
