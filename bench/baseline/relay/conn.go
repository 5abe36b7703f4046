package relay

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Close codes shared with the real relay.
const (
	closeSlowConsumer = 4000
)

// conn is one client connection: a reader goroutine (readLoop) that decodes
// requests and routes them, and a writer goroutine (writeLoop) that drains
// the out channel.
type conn struct {
	srv *Server
	ws  *websocket.Conn

	out        chan []byte   // encoded ServerMessages for writeLoop
	kick       chan struct{} // closed once: the connection is a slow consumer
	kickOnce   sync.Once
	readerDone chan struct{} // closed when readLoop ends

	// leaveReason is the reason other members see when this connection's
	// player leaves because the connection ended. Set by the writer before it
	// closes the socket, read by the reader after the socket fails.
	leaveReason atomic.Int32

	// room and member are owned by the reader goroutine: only it joins and
	// leaves rooms for this connection.
	room   *room
	member *member
}

func newConn(s *Server, ws *websocket.Conn) *conn {
	c := &conn{
		srv:        s,
		ws:         ws,
		out:        make(chan []byte, s.cfg.SendQueue),
		kick:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	c.leaveReason.Store(int32(pb.LeaveReason_LEAVE_REASON_DISCONNECTED))
	ws.SetReadLimit(s.cfg.MaxMessageSize)
	return c
}

// enqueue hands an encoded message to the writer without blocking: room
// locks are held while fanning out, so a stuck client must never stall the
// room. A full queue marks the connection as a slow consumer.
func (c *conn) enqueue(b []byte) {
	select {
	case c.out <- b:
	default:
		c.kickOnce.Do(func() { close(c.kick) })
	}
}

func (c *conn) readLoop() {
	defer c.srv.wg.Done()
	defer close(c.readerDone)
	defer c.srv.removeConn(c)
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			break
		}
		if typ != websocket.BinaryMessage {
			_ = c.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(websocket.CloseUnsupportedData, "binary messages only"),
				time.Now().Add(c.srv.cfg.WriteTimeout))
			break
		}
		var msg pb.ClientMessage
		if err := proto.Unmarshal(data, &msg); err != nil {
			c.sendError(0, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, "cannot decode message")
			continue
		}
		c.handle(&msg)
	}
	if c.room != nil {
		c.srv.leave(c, pb.LeaveReason(c.leaveReason.Load()))
	}
}

func (c *conn) handle(msg *pb.ClientMessage) {
	id := msg.GetRequestId()
	switch body := msg.GetBody().(type) {
	case *pb.ClientMessage_Send:
		if c.room == nil {
			c.sendError(id, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, "not in a room")
			return
		}
		c.room.relay(c.member, body.Send)
	case *pb.ClientMessage_Join:
		if c.room != nil {
			c.sendError(id, pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM, "already in a room")
			return
		}
		c.srv.join(c, id, body.Join)
	case *pb.ClientMessage_Leave:
		if c.room == nil {
			c.sendError(id, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, "not in a room")
			return
		}
		roomID := c.room.id
		c.srv.leave(c, pb.LeaveReason_LEAVE_REASON_LEFT)
		c.sendMessage(&pb.ServerMessage{RequestId: id, Body: &pb.ServerMessage_Left{Left: &pb.Left{
			RoomId: roomID,
			Reason: pb.LeaveReason_LEAVE_REASON_LEFT,
		}}})
	case *pb.ClientMessage_Ping:
		pong := &pb.Pong{ClientTime: body.Ping.GetClientTime(), ServerTime: time.Now().UnixNano()}
		if r := c.room; r != nil {
			r.mu.Lock()
			pong.Tick = r.tick
			pong.TickRate = uint32(r.tickRate)
			r.mu.Unlock()
		}
		c.sendMessage(&pb.ServerMessage{RequestId: id, Body: &pb.ServerMessage_Pong{Pong: pong}})
	default:
		c.sendError(id, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, "message has no body")
	}
}

func (c *conn) sendMessage(m *pb.ServerMessage) {
	b, err := proto.Marshal(m)
	if err != nil {
		// Marshalling generated types with valid UTF-8 strings cannot fail;
		// a failure here is a programming error, and dropping is all we can do.
		return
	}
	c.enqueue(b)
}

func (c *conn) sendError(requestID uint32, code pb.ErrorCode, text string) {
	c.sendMessage(&pb.ServerMessage{RequestId: requestID, Body: &pb.ServerMessage_Error{Error: &pb.Error{
		Code:    code,
		Message: text,
	}}})
}

func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	// Closing the socket here also ends readLoop when the writer is the one
	// that gives up (write error, slow consumer).
	defer func() { _ = c.ws.Close() }()
	timeout := c.srv.cfg.WriteTimeout
	for {
		select {
		case b := <-c.out:
			_ = c.ws.SetWriteDeadline(time.Now().Add(timeout))
			if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
				// A write that times out means the client stopped reading:
				// a slow consumer too, but its socket is full, so there is
				// no room left for an Error or a close frame.
				if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
					c.leaveReason.Store(int32(pb.LeaveReason_LEAVE_REASON_SLOW_CONSUMER))
				}
				return
			}
		case <-c.kick:
			c.leaveReason.Store(int32(pb.LeaveReason_LEAVE_REASON_SLOW_CONSUMER))
			// An Error goes out before any close for a limit (protocol rule);
			// it bypasses the full queue.
			b, _ := proto.Marshal(&pb.ServerMessage{Body: &pb.ServerMessage_Error{Error: &pb.Error{
				Code:    pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER,
				Message: "outbound queue full",
			}}})
			deadline := time.Now().Add(timeout)
			_ = c.ws.SetWriteDeadline(deadline)
			_ = c.ws.WriteMessage(websocket.BinaryMessage, b)
			_ = c.ws.WriteControl(websocket.CloseMessage,
				websocket.FormatCloseMessage(closeSlowConsumer, "slow consumer"), deadline)
			return
		case <-c.readerDone:
			return
		}
	}
}
