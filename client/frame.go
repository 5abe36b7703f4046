package client

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/internal/wsclient"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// maxClientHeader: write buffers keep this much room in front of the
// message, so that header and message go out in one write.
const maxClientHeader = wsclient.MaxHeader

// Close codes of RFC 6455 used by the client.
const (
	closeNormal        = 1000
	closeProtocolError = 1002
	closeUnsupported   = 1003
	closeNoStatus      = 1005
	closeAbnormal      = 1006
	closeInvalidData   = 1007
	closeTooBig        = 1009
)

// reader is the state of the reader goroutine; nothing else touches it.
type reader struct {
	br         *bufio.Reader
	hdr        [ws.MaxHeaderSize - 2]byte // scratch for ws.ReadHeaderBuffer
	ctl        [125]byte                  // control frame payload
	buf        []byte                     // the message being read; reused
	fragmented bool                       // inside a fragmented data message
	msg        wire.ServerMessage         // decoded views into buf; reused
	frame      FrameView                  // handed to OnFrame; reused
	set        wire.InputSetView          // a lockstep frame's InputSet; reused
	inputSet   InputSet                   // handed to OnInputSet; reused
}

// readLoop is the reader goroutine: it reads until the connection ends, then
// fails pending requests and reports the close.
func (c *Client) readLoop() {
	code, reason := c.readFrames()
	_ = c.conn.Close()
	if r := c.deadReason.Load(); r != nil && code == closeAbnormal {
		reason = *r
	}
	ce := &CloseError{Code: code, Reason: reason}
	c.mu.Lock()
	c.closeErr = ce
	c.pending = nil
	c.mu.Unlock()
	if c.keepalive != nil {
		c.keepalive.Stop()
	}
	if c.ackTimer != nil {
		c.ackTimer.Stop()
	}
	c.writeMu.Lock()
	if c.writeErr == nil {
		c.writeErr = ce
	}
	c.writeMu.Unlock()
	// Requests wait on done; they find closeErr set.
	close(c.done)
	if c.opts.OnClose != nil {
		c.inCallback.Store(true)
		c.opts.OnClose(code, reason)
		c.inCallback.Store(false)
	}
}

// readFrames reads WebSocket frames until the connection ends and returns the
// close code and reason.
func (c *Client) readFrames() (int, string) {
	r := &c.r
	for {
		h, err := ws.ReadHeaderBuffer(r.br, r.hdr[:])
		if err != nil {
			return c.lost(err)
		}
		c.frames.Add(1)
		if h.Masked || h.Rsv != 0 {
			return c.fail(closeProtocolError, "masked frame or rsv bits from server")
		}
		if h.OpCode.IsControl() {
			if !h.Fin || h.Length > int64(len(r.ctl)) {
				return c.fail(closeProtocolError, "invalid control frame")
			}
			p := r.ctl[:h.Length]
			if _, err := io.ReadFull(r.br, p); err != nil {
				return c.lost(err)
			}
			switch h.OpCode {
			case ws.OpPing:
				c.writeControl(ws.OpPong, p)
			case ws.OpPong:
				// Only proves liveness (counted in frames above).
			case ws.OpClose:
				return c.closeReceived(p)
			default:
				return c.fail(closeProtocolError, "reserved control opcode")
			}
			continue
		}

		switch h.OpCode {
		case ws.OpBinary:
			if r.fragmented {
				return c.fail(closeProtocolError, "data frame inside a fragmented message")
			}
			r.buf = r.buf[:0]
		case ws.OpContinuation:
			if !r.fragmented {
				return c.fail(closeProtocolError, "unexpected continuation frame")
			}
		case ws.OpText:
			return c.fail(closeUnsupported, "text messages not supported")
		default:
			return c.fail(closeProtocolError, "reserved opcode")
		}
		n := len(r.buf)
		if h.Length > int64(c.opts.MaxMessageSize-n) {
			return c.fail(closeTooBig, "message too big")
		}
		need := n + int(h.Length)
		if cap(r.buf) < need {
			grown := make([]byte, n, max(need, 2*cap(r.buf), 512))
			copy(grown, r.buf)
			r.buf = grown
		}
		r.buf = r.buf[:need]
		if _, err := io.ReadFull(r.br, r.buf[n:]); err != nil {
			return c.lost(err)
		}
		if !h.Fin {
			r.fragmented = true
			continue
		}
		r.fragmented = false
		if err := c.dispatch(r.buf); err != nil {
			return c.fail(closeInvalidData, "undecodable server message")
		}
	}
}

// lost reports a connection that ended without a Close frame.
func (c *Client) lost(err error) (int, string) {
	if c.closing.Load() {
		return closeAbnormal, "closed by client before the server answered"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return closeAbnormal, "connection lost: EOF"
	}
	return closeAbnormal, "connection lost: " + err.Error()
}

// fail closes the connection because the server broke the protocol: a Close
// frame with code goes out, then the reader returns and drops the socket
// without waiting for an answer from a server that is not trusted anymore.
func (c *Client) fail(code int, reason string) (int, string) {
	c.writeMu.Lock()
	if c.writeErr == nil {
		_ = c.writeControlLocked(ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(code), reason), c.opts.CloseTimeout)
		c.writeErr = ErrClosed
	}
	c.writeMu.Unlock()
	return code, reason
}

// closeReceived handles the server's Close frame: when the server started
// the close, echo its code (RFC 6455 5.5.1); when we did, this is the answer.
func (c *Client) closeReceived(p []byte) (int, string) {
	code, reason := closeNoStatus, ""
	switch {
	case len(p) == 1:
		return c.fail(closeProtocolError, "close frame of one byte")
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		if !utf8.Valid(p[2:]) {
			return c.fail(closeProtocolError, "close reason is not UTF-8")
		}
		reason = string(p[2:])
	}
	if !c.closing.Load() {
		c.writeMu.Lock()
		if c.writeErr == nil {
			var body []byte
			if code != closeNoStatus {
				body = p[:2]
			}
			_ = c.writeControlLocked(ws.OpClose, body, c.opts.CloseTimeout)
			c.writeErr = ErrClosed
		}
		c.writeMu.Unlock()
	}
	return code, reason
}

// dispatch handles one complete server message.
func (c *Client) dispatch(b []byte) error {
	r := &c.r
	if err := wire.ParseServerMessage(b, &r.msg); err != nil {
		return fmt.Errorf("client: parse server message: %w", err)
	}
	if r.msg.Body == wire.BodyFrame {
		if seq := r.msg.Seq; seq != 0 {
			if seq <= c.seq.Load() {
				return nil // replayed twice (a resume overlapping what arrived)
			}
			c.seq.Store(seq)
			if c.ackTimer != nil && !c.ackArmed.Swap(true) {
				c.ackTimer.Reset(c.opts.AckInterval)
			}
		}
		if c.opts.OnFrame == nil && c.opts.OnInputSet == nil && c.opts.OnSnapshotRequest == nil {
			return nil
		}
		r.frame.Tick = r.msg.Tick
		r.frame.Seq = r.msg.Seq
		r.frame.Deliveries = r.msg.Deliveries
		r.frame.Events = nil
		if len(r.msg.Events) > 0 {
			// Rare (membership changes): decode with the generated code, into
			// values the callback may keep.
			evs := make([]*pb.RoomEvent, len(r.msg.Events))
			for i, raw := range r.msg.Events {
				ev := new(pb.RoomEvent)
				if err := proto.Unmarshal(raw, ev); err != nil {
					return fmt.Errorf("client: decode room event: %w", err)
				}
				evs[i] = ev
			}
			r.frame.Events = evs
		}
		c.inCallback.Store(true)
		defer c.inCallback.Store(false)
		if c.opts.OnFrame != nil {
			c.opts.OnFrame(&r.frame)
		}
		return c.lockstepFrame()
	}

	// Answers and notices are rare: decode them whole. proto.Unmarshal
	// copies bytes fields, so the message outlives the read buffer.
	at := time.Now()
	m := new(pb.ServerMessage)
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("client: decode server message: %w", err)
	}
	c.startSeat(m)
	if id := m.GetRequestId(); id != 0 {
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- reply{msg: m, at: at} // buffered: never blocks
			return nil
		}
	}
	switch body := m.GetBody().(type) {
	case *pb.ServerMessage_Error:
		if c.opts.OnError != nil {
			c.inCallback.Store(true)
			c.opts.OnError(serverError(body.Error))
			c.inCallback.Store(false)
		}
	case *pb.ServerMessage_Left:
		if c.opts.OnLeft != nil {
			c.inCallback.Store(true)
			c.opts.OnLeft(Left{RoomID: body.Left.GetRoomId(), Reason: body.Left.GetReason(), Message: body.Left.GetMessage()})
			c.inCallback.Store(false)
		}
	}
	// Answers to requests that gave up (context done) are dropped.
	return nil
}

// startSeat resets the frame numbering when m starts or resumes a seat, on
// the reader goroutine, so that the frames after m are judged against it.
func (c *Client) startSeat(m *pb.ServerMessage) {
	from := uint64(0)
	switch body := m.GetBody().(type) {
	case *pb.ServerMessage_Joined:
	case *pb.ServerMessage_Resumed:
		if body.Resumed.GetRecovered() {
			from = body.Resumed.GetReplayFrom() - 1 // the Resume's last_seq
		} else if body.Resumed.GetSnapshot() == nil {
			return // no seat
		}
	default:
		return
	}
	c.seq.Store(from)
	c.writeMu.Lock()
	c.ackSent = from
	c.writeMu.Unlock()
	if c.opts.seatHook != nil {
		c.inCallback.Store(true)
		c.opts.seatHook(m)
		c.inCallback.Store(false)
	}
}

// writeControl writes one control frame, unless writing has stopped.
func (c *Client) writeControl(op ws.OpCode, payload []byte) {
	c.writeMu.Lock()
	if c.writeErr == nil {
		_ = c.writeControlLocked(op, payload, c.opts.WriteTimeout)
	}
	c.writeMu.Unlock()
}

// writeControlLocked writes one control frame. c.writeMu must be held.
func (c *Client) writeControlLocked(op ws.OpCode, payload []byte, timeout time.Duration) error {
	buf := append(c.wbuf[:maxClientHeader], payload...)
	c.wbuf = buf
	return c.writeFrameLocked(op, buf, timeout)
}

// writeFrameLocked masks buf[maxClientHeader:] and writes it as one final
// frame of opcode op, header and payload in a single write; buf's first
// maxClientHeader bytes are scratch for the header. A failed write is sticky
// and closes the socket: after a partial frame the stream is unusable.
// c.writeMu must be held.
func (c *Client) writeFrameLocked(op ws.OpCode, buf []byte, timeout time.Duration) error {
	frame := wsclient.Frame(op, buf)
	if err := c.deadline.Refresh(c.conn, timeout); err != nil {
		c.writeErr = fmt.Errorf("set write deadline: %w", err)
		_ = c.conn.Close()
		return c.writeErr
	}
	if _, err := c.conn.Write(frame); err != nil {
		c.writeErr = fmt.Errorf("write: %w", err)
		_ = c.conn.Close()
		return c.writeErr
	}
	return nil
}
