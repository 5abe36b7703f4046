package server

import (
	"bytes"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// Connection states. Only the event loop moves a connection forward; other
// goroutines read the state (sweeper) or set closing (closeAsync).
const (
	stateHandshake int32 = iota
	stateOpen
	stateClosed
)

// conn is one client connection. Fields without a comment belong to the
// connection's event loop; the atomics may be touched from any goroutine.
type conn struct {
	srv *Server
	gc  gnet.Conn

	decoder   *wsproto.Decoder
	seat      *room.Seat // nil on the echo endpoint
	echo      bool
	reject    bool // over MaxConnections: answer the request with 503
	broken    bool // a framing error: discard input until the close completes
	badFrames int
	msg       wire.ClientMessage // reused parse target
	openedAt  int64              // unix nanos

	state       atomic.Int32
	closing     atomic.Bool  // a Close frame was sent (or the connection is going): no more data
	closeSentAt atomic.Int64 // unix nanos
	lastRead    atomic.Int64 // unix nanos of the last inbound bytes
	lastPing    atomic.Int64 // unix nanos of the last ping the sweeper sent

	// pending counts bytes handed to AsyncWrite whose write has not yet run;
	// outbound is gnet's unwritten buffer as last seen on the loop. Their sum
	// is the connection's back-pressure (gnet's own buffer has no limit).
	pending    atomic.Int64
	outbound   atomic.Int64
	refreshing atomic.Bool // a Wake to refresh outbound is in flight
}

// serverFullAnswer is the HTTP answer past the connection limit.
var serverFullAnswer = func() []byte {
	var b bytes.Buffer
	_ = wsproto.WriteHTTPError(&b, 503, "tickrelay: server full, try again later\n")
	return b.Bytes()
}()

// OnOpen registers the connection; over the limit it is marked for a 503.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	if s.shuttingDown.Load() {
		return nil, gnet.Close
	}
	now := time.Now().UnixNano()
	c := &conn{srv: s, gc: gc, openedAt: now}
	c.lastRead.Store(now)
	s.stats.connsOpened.Add(1)
	switch open := s.openConns.Add(1); {
	case open > int64(s.cfg.MaxConnections+rejectWindow):
		// Far past the limit (a flood): answer without waiting for the
		// request, so descriptors are given back at once.
		s.openConns.Add(-1)
		s.stats.connsClosed.Add(1)
		s.stats.handshakeFailed(failServerFull)
		return serverFullAnswer, gnet.Close
	case open > int64(s.cfg.MaxConnections):
		c.reject = true // answered 503 once its request is read
	}
	gc.SetContext(c)
	s.conns.add(gc.Fd(), c)
	return nil, gnet.None
}

// OnClose releases the connection's seat: its room sees it leave at once.
func (s *Server) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	c.closing.Store(true)
	c.state.Store(stateClosed)
	s.conns.remove(gc.Fd(), c)
	s.openConns.Add(-1)
	s.stats.connsClosed.Add(1)
	if c.seat != nil {
		s.rooms.Disconnect(c.seat)
	}
	if c.decoder != nil {
		c.decoder.Reset()
	}
	gc.SetContext(nil)
	return gnet.None
}

// OnTraffic handles every complete request or frame in the buffer; partial
// input stays buffered for the next call.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	in, _ := gc.Peek(-1)
	if len(in) == 0 {
		return gnet.None
	}
	c.lastRead.Store(time.Now().UnixNano())
	if c.state.Load() == stateHandshake {
		action, upgraded := s.handshake(c, in)
		if !upgraded || action != gnet.None {
			return action
		}
		if in, _ = gc.Peek(-1); len(in) == 0 {
			return gnet.None
		}
	}
	return s.frames(c, in)
}

func (s *Server) handshake(c *conn, in []byte) (gnet.Action, bool) {
	if c.reject {
		s.stats.handshakeFailed(failServerFull)
		_, _ = c.gc.Write(serverFullAnswer)
		return gnet.Close, false
	}
	res, err := wsproto.Handshake(in, c.gc, &s.hs)
	if res.NeedMore && err == nil {
		return gnet.None, false
	}
	if res.Consumed > 0 {
		_, _ = c.gc.Discard(res.Consumed)
	}
	if err != nil || !res.Upgraded {
		switch res.Status {
		case 200, 426, 404, 405:
			s.stats.plainHTTP.Add(1) // a real HTTP answer to a plain request
		case 0:
			s.stats.handshakeFailed(failBadRequest)
		default:
			s.stats.handshakeFailed("http_" + strconv.Itoa(res.Status))
		}
		return gnet.Close, false
	}
	c.decoder = wsproto.NewDecoder(wsproto.Limits{MaxMessageBytes: s.cfg.MaxMessageBytes})
	c.echo = res.Echo
	if !c.echo {
		c.seat = s.rooms.NewSeat(c)
	}
	c.state.Store(stateOpen)
	s.stats.upgrades.Add(1)
	return gnet.None, true
}

// frames decodes and handles every complete message in in.
func (s *Server) frames(c *conn, in []byte) gnet.Action {
	if c.broken {
		_, _ = c.gc.Discard(-1)
		return gnet.None
	}
	used := 0
	for used < len(in) {
		msg, n, ok, err := c.decoder.Next(in[used:])
		used += n
		if err != nil {
			// After a protocol error the rest of the stream cannot be
			// framed: from now on input is discarded until the client closes
			// or the close timeout passes (closing at once could reset the
			// connection before the client reads our Close frame).
			_, _ = c.gc.Discard(-1)
			c.broken = true
			if c.closing.Load() {
				return gnet.Close
			}
			s.stats.protocolErrors.Add(1)
			return s.closeOnLoop(c, closeReasonOf(err), errorCodeFor(err), err.Error())
		}
		if !ok {
			break
		}
		if action := s.message(c, &msg); action != gnet.None {
			_, _ = c.gc.Discard(-1)
			return action
		}
	}
	_, _ = c.gc.Discard(used)
	return gnet.None
}

// message handles one complete WebSocket message or control frame. Payload
// bytes are borrowed from the read buffer: valid only during this call.
func (s *Server) message(c *conn, m *wsproto.Message) gnet.Action {
	switch m.Kind {
	case wsproto.Ping:
		if !c.closing.Load() {
			_, _ = c.gc.Write(wsproto.AppendFrame(nil, ws.OpPong, m.Payload))
		}
		return gnet.None
	case wsproto.Pong:
		return gnet.None
	case wsproto.Close:
		if c.closing.Load() {
			return gnet.Close // the answer to our Close: the handshake is complete
		}
		c.closing.Store(true)
		code := m.CloseCode
		if code == ws.StatusNoStatusRcvd {
			_, _ = c.gc.Write(wsproto.AppendFrame(nil, ws.OpClose, nil))
		} else {
			_, _ = c.gc.Write(wsproto.AppendClose(nil, code, ""))
		}
		s.stats.closedBy(code, true)
		return gnet.Close
	}
	if c.closing.Load() {
		return gnet.None // data after our Close is discarded, as RFC 6455 allows
	}
	if c.echo {
		return s.echoMessage(c, m)
	}
	if m.Kind == wsproto.Text {
		return s.closeOnLoop(c, wsproto.ReasonFor(wsproto.CauseTextFrame), pb.ErrorCode_ERROR_CODE_BAD_MESSAGE,
			"text frames are not supported: send protobuf envelopes in binary frames")
	}
	return s.dispatch(c, m.Payload)
}

func (s *Server) echoMessage(c *conn, m *wsproto.Message) gnet.Action {
	op := ws.OpBinary
	if m.Kind == wsproto.Text {
		if !wsproto.ValidUTF8(m.Payload) {
			return s.closeOnLoop(c, wsproto.ReasonFor(wsproto.CauseInvalidData), 0, "")
		}
		op = ws.OpText
	}
	_, _ = c.gc.Write(wsproto.AppendFrame(nil, op, m.Payload))
	return gnet.None
}

// Deliver implements room.Peer: it queues one room message on the
// connection's event loop. Called from room workers; never blocks.
func (c *conn) Deliver(msg *room.Outbound) {
	if c.closing.Load() {
		msg.Release()
		return
	}
	n := len(msg.Bytes())
	frame := msg.WithHeader(wsproto.HeaderLen(n))
	wsproto.PutHeader(frame, ws.OpBinary, n)
	size := int64(len(frame))
	if c.pending.Add(size)+c.outbound.Load() > int64(c.srv.cfg.OutboundHardBytes) {
		c.pending.Add(-size)
		msg.Release()
		c.srv.stats.slowConsumers.Add(1)
		c.closeAsync(wsproto.CauseSlowConsumer, pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER,
			"outbound queue over its limit: the connection cannot keep up")
		return
	}
	err := c.gc.AsyncWrite(frame, func(gc gnet.Conn, _ error) error {
		c.pending.Add(-size)
		if gc != nil {
			c.outbound.Store(int64(gc.OutboundBuffered()))
		}
		msg.Release()
		return nil
	})
	if err != nil {
		c.pending.Add(-size)
		msg.Release()
	}
}

// Congested implements room.Peer. When the last seen outbound size says the
// peer is behind, it asks the loop (Wake) for a fresh figure, so a peer that
// catches up is noticed even while the room sends it nothing.
func (c *conn) Congested() bool {
	if c.pending.Load()+c.outbound.Load() <= int64(c.srv.cfg.OutboundSoftBytes) {
		return false
	}
	if c.refreshing.CompareAndSwap(false, true) {
		err := c.gc.Wake(func(gc gnet.Conn, _ error) error {
			if gc != nil {
				c.outbound.Store(int64(gc.OutboundBuffered()))
			}
			c.refreshing.Store(false)
			return nil
		})
		if err != nil {
			c.refreshing.Store(false)
		}
	}
	return true
}

// Evict implements room.Peer: the room removed this player for a cause that
// ends the connection; the room has already sent the explanation.
func (c *conn) Evict(cause room.EvictCause) {
	switch cause {
	case room.EvictSlowConsumer:
		c.srv.stats.slowConsumers.Add(1)
		c.closeAsync(wsproto.CauseSlowConsumer, 0, "")
	case room.EvictKicked:
		c.closeAsync(wsproto.CauseKicked, 0, "")
	default:
		c.closeAsync(wsproto.CauseInternal, 0, "")
	}
}
