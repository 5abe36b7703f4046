package server

import (
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/tickrelay/tickrelay/proto/closes"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// frames decodes and handles every complete message in in, the connection's
// buffered input. It stops early, leaving the rest buffered, when the
// connection's output is over its soft limit (input waits until the client
// reads: back-pressure, not more buffering) or a request is parked.
func (s *Server) frames(c *conn, in []byte) gnet.Action {
	if c.broken || c.closing().Load() && c.failing().Load() {
		discardInput(c.gc)
		return gnet.None
	}
	if c.parked != nil {
		if !s.unpark(c) {
			return s.holdInput(c)
		}
		if c.closing().Load() && c.failing().Load() {
			discardInput(c.gc)
			return gnet.None
		}
	}
	// Input read while the connection was held was sent at the client's
	// pace and reaches the room at once: its Sends may use a second tick
	// of their sender's budget.
	c.readingHeld = c.held().Load()
	used := 0
	pings := 0 // control frames answered in this batch
	// One clock reading for the batch: the rate limits charge every
	// message of it at the same instant (they arrived in one read), and a
	// flood of small messages no longer pays a time.Now each (5% of the
	// relay's CPU in the soak).
	now := time.Now()
	// boundary: a message ended in this batch with no fragmented one open,
	// so whatever is left began in the bytes read since.
	boundary := false
	for used < len(in) {
		if c.out.overSoft() && c.out.refreshNet() {
			consume(c.gc, used)
			s.trackPartial(c, boundary)
			return s.holdInput(c)
		}
		msg, n, ok, err := c.decoder.Next(in[used:])
		used += n
		if err != nil {
			// After a framing error the rest of the stream cannot be
			// framed: input is discarded from now on.
			discardInput(c.gc)
			c.broken = true
			if c.closing().Load() {
				return gnet.Close // we had closed already; nothing to explain
			}
			s.stats.protocolErrors.Add(1)
			c.closeDecodeError(err, true)
			return gnet.None
		}
		if !ok {
			break
		}
		boundary = boundary || !c.decoder.Assembling()
		if msg.Kind == wsproto.Ping {
			pings++
			if !c.limits.allowControl(s.policy(), now) {
				// A ping flood: RFC 6455 lets an endpoint answer only the
				// most recent of several pings; past the rate limit the
				// pings are not answered at all.
				continue
			}
		}
		action := s.message(c, &msg, now)
		if action != gnet.None {
			discardInput(c.gc)
			return action
		}
		if c.parked != nil || c.closing().Load() && c.failing().Load() {
			consume(c.gc, used)
			if c.parked != nil {
				s.trackPartial(c, boundary)
				return s.holdInput(c)
			}
			discardInput(c.gc)
			return gnet.None
		}
	}
	consume(c.gc, used)
	c.held().Store(false)
	s.trackPartial(c, boundary)
	return gnet.None
}

// trackPartial notes when a message starts arriving and forgets it when it
// is complete, for message-read-timeout: a client that keeps a frame open by
// trickling its bytes is closed, not kept forever with its buffer. The time
// is the message's own: after a message ended in this batch (boundary), the
// bytes left over are the start of a new one, whose clock starts now; a
// message still incomplete keeps the time it started. (The sweeper pauses
// the clock while the relay holds input back: see sweeper.check.)
func (s *Server) trackPartial(c *conn, boundary bool) {
	if c.gc.InboundBuffered() == 0 && !c.decoder.Assembling() {
		c.partialSince.Store(0)
		return
	}
	if boundary || c.partialSince.Load() == 0 {
		c.partialSince.Store(time.Now().UnixNano())
	}
}

// holdInput leaves the buffered input for later: the sweeper (output
// draining) or the room (a parked request that can now go) wakes the
// connection to look again. gnet goes on reading the socket into its buffer
// meanwhile, so the input a held connection may buffer is bounded: past
// maxHeldInput it is closed as a slow consumer (it neither reads nor stops
// sending).
func (s *Server) holdInput(c *conn) gnet.Action {
	c.held().Store(true)
	if c.gc.InboundBuffered() > s.maxHeldInput() {
		s.stats.slowConsumers.Add(1)
		c.close(closes.SlowConsumer, "the client sends without reading: its input and output buffers are full", true)
	}
	return gnet.None
}

// maxHeldInput is the input a held connection may leave buffered: one
// complete message and its framing, plus a margin.
func (s *Server) maxHeldInput() int { return s.cfg.MaxMessageBytes + 64<<10 }

// message handles one complete WebSocket message or control frame. Payload
// bytes are borrowed from the read buffer: valid only during this call.
func (s *Server) message(c *conn, m *wsproto.Message, now time.Time) gnet.Action {
	switch m.Kind {
	case wsproto.Ping:
		if !c.closing().Load() {
			c.answer(wsproto.AppendFrame(nil, ws.OpPong, m.Payload))
		}
		return gnet.None
	case wsproto.Pong:
		return gnet.None
	case wsproto.Close:
		if c.closing().Load() {
			return gnet.Close // the answer to our Close: the handshake is complete
		}
		c.closing().Store(true)
		code := m.CloseCode
		if code == ws.StatusNoStatusRcvd {
			c.writeFinal(wsproto.AppendFrame(nil, ws.OpClose, nil))
		} else {
			c.writeFinal(wsproto.AppendClose(nil, code, ""))
		}
		s.stats.closedBy(code, true)
		return gnet.Close
	}
	if c.closing().Load() {
		return gnet.None // data after our Close is discarded, as RFC 6455 allows
	}
	if c.echo {
		return s.echoMessage(c, m)
	}
	if m.Kind == wsproto.Text {
		c.close(closes.TextFrame, "text frames are not supported: send protobuf envelopes in binary frames", true)
		return gnet.None
	}
	return s.dispatch(c, m.Payload, now)
}

func (s *Server) echoMessage(c *conn, m *wsproto.Message) gnet.Action {
	op := ws.OpBinary
	if m.Kind == wsproto.Text {
		if !wsproto.ValidUTF8(m.Payload) {
			c.close(closes.InvalidData, "", true)
			return gnet.None
		}
		op = ws.OpText
	}
	c.answer(wsproto.AppendFrame(nil, op, m.Payload))
	return gnet.None
}
