package server

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/auth"
	"github.com/tickrelay/tickrelay/clientip"
	"github.com/tickrelay/tickrelay/cluster"

	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// connState is where a connection is in its life. Only the event loop moves
// a connection forward; other goroutines read the state (sweeper) or start a
// close (conn.close).
type connState int32

// Connection states.
const (
	stateHandshake connState = iota // the HTTP upgrade is not done
	stateOpen                       // upgraded: WebSocket frames
	stateClosed                     // OnClose ran
)

var connStateNames = [...]string{stateHandshake: "handshake", stateOpen: "open", stateClosed: "closed"}

// String names the state, for logs and test failures.
func (s connState) String() string {
	if s < 0 || int(s) >= len(connStateNames) {
		return "connState(" + strconv.Itoa(int(s)) + ")"
	}
	return connStateNames[s]
}

// atomicState is a connState that any goroutine may read.
type atomicState struct{ v atomic.Int32 }

func (a *atomicState) Load() connState   { return connState(a.v.Load()) }
func (a *atomicState) Store(s connState) { a.v.Store(int32(s)) }

// conn is one client connection. Fields without a comment belong to the
// connection's event loop; the atomics and out may be used from any
// goroutine.
type conn struct {
	gc gnet.Conn

	decoder  *wsproto.Decoder
	seat     *room.Seat   // nil on the echo endpoint
	loop     *loopScratch // shared by the connections of its event loop (and the way to the Server)
	openedAt int64        // unix nanos
	limits   connLimits   // per-connection rate limits
	// The client: its address (behind trusted proxies, the forwarded
	// one); its token's claims and the close clocks are in more.
	addr netip.Addr
	// parked holds a request that the seat cannot take yet (a Join right
	// behind a Leave whose room has not answered): input is not processed
	// until the seat is ready, so requests keep their order. Rare, so a
	// pointer: nil costs 8 bytes where the request inline cost 32.
	parked *parkedRequest
	// remote is set while the connection is in a room another node of the
	// cluster owns (cluster.go).
	remote atomic.Pointer[cluster.Remote]
	// more is what only some connections need (made by rare()).
	more atomic.Pointer[connRare]

	state atomicState
	// flags are the atomic flags (flagClosing...), one word for all of
	// them: this struct is most of what an idle connection costs, and
	// seven atomic.Bools took 28 bytes.
	flags atomic.Uint32

	// The plain flags, together (a bool between wider fields costs a
	// word).
	echo         bool
	reject       bool // over MaxConnections: refuse once the request is read
	broken       bool // the stream cannot be framed any more: discard input
	addrCounted  bool // counts against the per-address connection limit
	proxyPending bool // a PROXY header must come first
	shutWrite    bool // the write side was shut down after a failing close or an answer
	// readingHeld: the batch being read was held back (see frames); its
	// Sends go to the room as such (room.Manager.SendHeldBack). Loop only.
	readingHeld bool
	// registered is c's index in its registry shard; guarded by the
	// shard's lock.
	registered int32

	lastRead atomic.Int64 // unix nanos of the last inbound bytes
	lastPing atomic.Int64 // unix nanos of the last ping the sweeper sent
	// partialSince is when the message being received began (its first
	// bytes arrived and it is not complete yet), for message-read-timeout;
	// zero when no message is in progress.
	partialSince atomic.Int64

	out outbox
}

// The bits of conn.flags.
const (
	flagClosing     uint32 = 1 << iota // a Close is on its way (or the connection is gone): no more data
	flagFailing                        // the close fails the connection: linger, then drop it
	flagForfeitSeat                    // the relay closed it for a cause that does not keep the seat
	flagAnswered                       // given an HTTP answer before its upgrade: linger, then drop it
	// flagHeld: input is waiting (a parked request, or output over its
	// soft limit) and OnTraffic must look again when woken.
	flagHeld
	// flagOutHeld: frames wait in the outbox because gnet's buffer is over
	// gnetBufferCap; the sweeper wakes the connection to retry.
	flagOutHeld
	// flagRefreshing: a wake to refresh the outbox's figure of gnet's
	// buffer is in flight (Congested).
	flagRefreshing
)

// connFlag is one bit of a conn's flags, with the methods of an
// atomic.Bool.
type connFlag struct {
	w   *atomic.Uint32
	bit uint32
}

func (f connFlag) Load() bool { return f.w.Load()&f.bit != 0 }

func (f connFlag) Store(v bool) {
	if v {
		f.w.Or(f.bit)
	} else {
		f.w.And(^f.bit)
	}
}

// CompareAndSwap sets the bit to new if it was old, and reports whether it
// did.
func (f connFlag) CompareAndSwap(old, new bool) bool {
	switch {
	case old == new:
		return f.Load() == old
	case new:
		return f.w.Or(f.bit)&f.bit == 0
	default:
		return f.w.And(^f.bit)&f.bit != 0
	}
}

func (c *conn) closing() connFlag     { return connFlag{&c.flags, flagClosing} }
func (c *conn) failing() connFlag     { return connFlag{&c.flags, flagFailing} }
func (c *conn) forfeitSeat() connFlag { return connFlag{&c.flags, flagForfeitSeat} }
func (c *conn) answered() connFlag    { return connFlag{&c.flags, flagAnswered} }
func (c *conn) held() connFlag        { return connFlag{&c.flags, flagHeld} }
func (c *conn) outHeld() connFlag     { return connFlag{&c.flags, flagOutHeld} }
func (c *conn) refreshing() connFlag  { return connFlag{&c.flags, flagRefreshing} }

// connRare is the part of a connection that only some need: the clocks of
// a close (every connection closes once, but an idle one is open for
// hours), the claims of a token presented for the whole connection (auth
// on) and the counts of a misbehaving client. Made on first use; never taken away.
type connRare struct {
	shutAt      atomic.Int64 // unix nanos of the write shutdown
	lingerLeft  atomic.Int64 // unwritten bytes at the last sweep of a failing close
	progressAt  atomic.Int64 // unix nanos when they last went down
	closeSentAt atomic.Int64 // unix nanos
	claims      *auth.Claims // loop only
	// Refused tokens and undecodable envelopes so far; loop only.
	authFailures int32
	badMessages  int32
}

// rare returns c's connRare, making it on first use. Goroutine-safe.
func (c *conn) rare() *connRare {
	if r := c.more.Load(); r != nil {
		return r
	}
	c.more.CompareAndSwap(nil, new(connRare))
	return c.more.Load()
}

// claims are the claims of the token c presented for the whole connection,
// nil without one.
func (c *conn) claims() *auth.Claims {
	if r := c.more.Load(); r != nil {
		return r.claims
	}
	return nil
}

// parkedRequest is a copy of a parked Join or Resume and the grant it was
// admitted with.
type parkedRequest struct {
	payload []byte
	grant   *room.Grant
}

// loopScratch is what the connections of one event loop share: the parse
// target of a request and the slices of a writev, used on that loop only
// and never across a return to it, and the loop's wake batch, which the
// room workers use. Kept per loop rather than per connection, it costs an
// idle connection nothing.
type loopScratch struct {
	srv *Server
	msg wire.ClientMessage // reused parse target (dispatch.go, request)
	// join and joinOptions are the reused decode target of a Join
	// (resetJoin); nothing keeps them past the request.
	join        pb.Join
	joinOptions pb.RoomOptions
	iov         [][]byte   // scratch for Writev (outbox.go, flushOut)
	wakes       *wakeBatch // goroutine-safe (wakebatch.go)
}

// resetJoin empties the loop's Join for the next decode, its options
// included, and keeps the options attached so that decoding into it (with
// Merge: otherwise the same as proto.Unmarshal) allocates neither. A Join
// without options then has empty ones, which read the same through the
// getters, the only way the relay reads a Join.
func (l *loopScratch) resetJoin() *pb.Join {
	proto.Reset(&l.join)
	proto.Reset(&l.joinOptions)
	l.join.Options = &l.joinOptions
	return &l.join
}

// loopScratch returns the scratch of event loop el, made on first use.
func (s *Server) loopScratch(el gnet.EventLoop) *loopScratch {
	if v, ok := s.loops.Load(el); ok {
		return v.(*loopScratch)
	}
	v, _ := s.loops.LoadOrStore(el, &loopScratch{srv: s, wakes: newWakeBatch(s)})
	return v.(*loopScratch)
}

// serverFullAnswer is the HTTP answer past the connection limit.
var serverFullAnswer = httpAnswer(closes.Of(closes.ServerFull).HTTPStatus, "tickrelay: server full, try again later\n")

// httpAnswer is a complete HTTP answer with "Connection: close".
func httpAnswer(status int, body string) []byte {
	var b bytes.Buffer
	_ = wsproto.WriteHTTPError(&b, status, body)
	return b.Bytes()
}

// OnBoot implements gnet.EventHandler.
func (s *Server) OnBoot(gnet.Engine) gnet.Action { return gnet.None }

// OnOpen turns an admitted connection into a conn.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	adm, _ := gc.Context().(*admission)
	now := time.Now().UnixNano()
	c := &conn{gc: gc, loop: s.loopScratch(gc.EventLoop()), openedAt: now, addr: peerAddr(gc.RemoteAddr())}
	c.proxyPending = s.access.proxyPP && s.access.trusted.Contains(c.addr)
	c.out.init(c)
	c.lastRead.Store(now)
	if adm != nil {
		adm.opened.Store(true)
		c.reject = adm.reject
	}
	gc.SetContext(c)
	s.conns.add(gc.Fd(), c)
	return nil, gnet.None
}

// OnClose releases the connection's seat: its room keeps it for a Resume
// (seat grace) unless the relay closed the connection for a cause that
// forfeits it (closes.Info.KeepsSeat).
func (s *Server) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	if c.state.Load() == stateHandshake && !c.closing().Load() {
		// Neither answered nor timed out: the client closed or reset the
		// connection before its upgrade was done (a TCP health check that
		// connects and leaves counts here too).
		s.stats.handshakeFailed(failClientClosed)
	}
	c.closing().Store(true)
	c.state.Store(stateClosed)
	c.out.discard()
	s.conns.remove(gc.Fd(), c)
	s.openConns.Add(-1)
	s.stats.connsClosed.Add(1)
	switch {
	case c.seat == nil:
	case c.forfeitSeat().Load():
		s.rooms.Forfeit(c.seat)
	default:
		s.rooms.Disconnect(c.seat)
	}
	if r := c.remote.Swap(nil); r != nil {
		r.Gone()
	}
	if c.addrCounted {
		s.access.limits.CloseConn(c.addr)
	}
	if c.decoder != nil {
		c.decoder.Reset()
	}
	gc.SetContext(nil)
	return gnet.None
}

// OnTraffic handles every complete request or frame in the buffer; partial
// input stays buffered for the next call. It also runs when the connection
// is woken (conn.wake): for queued output, or to look again at input it held
// back.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	if c.state.Load() == stateHandshake && c.closing().Load() {
		// Answered with an HTTP error (or being closed) before its
		// upgrade: the rest of its request is read and thrown away, and
		// the write side is shut once the answer is out (answerAndLinger).
		c.shutAnsweredIfFlushed()
		discardInput(gc)
		return gnet.None
	}
	switch {
	case c.out.pending():
		c.flush()
		if c.state.Load() == stateClosed {
			return gnet.None
		}
	case c.refreshing().Load() || c.failing().Load():
		c.afterFlush() // a fresh outbound figure (Congested), or the shutdown of a failed connection
	}
	in, _ := gc.Peek(-1)
	if len(in) == 0 {
		if c.parked != nil {
			return s.frames(c, in) // woken: the seat may take the parked request
		}
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
	if c.proxyPending {
		h, n, err := clientip.ParseProxyHeader(in)
		switch {
		case errors.Is(err, clientip.ErrNeedMore):
			return gnet.None, false
		case err != nil:
			// A trusted proxy that should speak PROXY protocol did not:
			// a misconfiguration, not a client to serve.
			s.stats.handshakeFailed(failProxyHeader)
			c.answerAndLinger(httpAnswer(400, "tickrelay: expected a PROXY protocol header from this proxy\n"))
			return gnet.None, false
		}
		if ap, ok := h.ClientAddr(); ok {
			c.addr = ap.Addr().Unmap()
		}
		c.proxyPending = false
		consume(c.gc, n)
		if in, _ = c.gc.Peek(-1); len(in) == 0 {
			return gnet.None, false
		}
	}
	// The answer is held back until the connection is set up: a client
	// that has read its 101 may send at once, and whatever closes it from
	// then on (a shutdown, its own address limit) must find an open
	// connection that gets a Close frame, with its address counted.
	answer := answerPool.Get().(*heldAnswer)
	defer answer.release()
	res, err := wsproto.Handshake(in, answer, &s.hs)
	if res.NeedMore && err == nil {
		return gnet.None, false
	}
	consume(c.gc, res.Consumed)
	if err != nil || !res.Upgraded {
		if !c.answerAndLinger(answer.b) {
			// gnet has closed the connection (OnClose ran): the client
			// is gone, and no answer reached it.
			s.stats.handshakeFailed(failClientClosed)
			return gnet.None, false
		}
		switch res.Status {
		case 200, 426, 404, 405:
			s.stats.plainHTTP.Add(1) // a real HTTP answer to a plain request
		case 0:
			s.stats.handshakeFailed(failBadRequest)
		default:
			s.stats.handshakeFailed("http_" + strconv.Itoa(res.Status))
		}
		return gnet.None, false
	}
	now := time.Now()
	refusal := s.setUp(c, &res, now)
	c.state.Store(stateOpen)
	if _, werr := c.gc.Write(answer.b); werr != nil {
		// A reset or EOF before the 101 could be written: gnet has
		// closed the connection, and OnClose released what setUp took.
		s.stats.handshakeFailed(failClientClosed)
		return gnet.None, false
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("upgraded", "client", c.addr, "peer", c.gc.RemoteAddr())
	}
	if refusal != nil {
		// Refusals after the upgrade, with a code and reason the page can
		// read (browsers hide an HTTP refusal behind close 1006); input is
		// not read.
		s.stats.handshakeFailed(refusal.reason)
		c.refuse(refusal.cause, refusal.detail, refusal.retry, true)
		return gnet.None, false
	}
	s.stats.upgrades.Add(1)
	return gnet.None, true
}

// answerAndLinger writes an HTTP answer to a connection the relay will not
// upgrade and ends it the way a failing WebSocket close does, not with an
// immediate close: closing a socket whose peer is still sending (the rest of
// a garbage request, a body, a pipelined request, often in pieces through a
// proxy) makes the kernel answer those bytes with a reset, and a reset can
// destroy the answer before the client has read it. So the input is read
// and discarded, the write side is shut down once the answer is flushed
// (the client reads the answer, then our FIN), and the connection is
// dropped on the client's FIN or after fail-linger (the sweeper,
// checkAnswered). It reports false when the connection is already gone.
// Loop only.
func (c *conn) answerAndLinger(answer []byte) bool {
	c.closing().Store(true) // closed by us: not a client that went away
	c.rare().closeSentAt.Store(time.Now().UnixNano())
	if _, err := c.gc.Write(answer); err != nil {
		return false
	}
	c.answered().Store(true)
	c.shutAnsweredIfFlushed()
	return true
}

// shutAnsweredIfFlushed shuts down the write side of a connection answered
// by answerAndLinger once gnet has written all of its answer. Loop only.
func (c *conn) shutAnsweredIfFlushed() {
	if c.answered().Load() && !c.shutWrite && c.gc.OutboundBuffered() == 0 {
		c.shutWriteSide()
	}
}

// heldAnswer keeps the one HTTP answer wsproto.Handshake writes, for the
// connection to send once it is ready for what follows it.
// They are pooled: gnet copies what it cannot write at once, so the buffer
// is free again when the handshake returns.
type heldAnswer struct{ b []byte }

var answerPool = sync.Pool{New: func() any { return &heldAnswer{b: make([]byte, 0, 256)} }}

// release puts a back in answerPool (an answer that grew past 1 KiB is
// left to the GC).
func (a *heldAnswer) release() {
	if cap(a.b) > 1<<10 {
		return
	}
	a.b = a.b[:0]
	answerPool.Put(a)
}

func (a *heldAnswer) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// upgradeRefusal is why an upgraded connection is closed at once: its close
// cause, the Error's detail and retry hint, and the handshake failure
// reason it is counted under.
type upgradeRefusal struct {
	cause  closes.Cause
	detail string
	retry  time.Duration
	reason string
}

// setUp makes an upgraded connection ready to serve, before its 101 is
// sent: decoder, client address, seat, rate limits, the per-address counts
// and a token given with the handshake. It returns why the connection must
// be refused, or nil.
func (s *Server) setUp(c *conn, res *wsproto.HandshakeResult, now time.Time) *upgradeRefusal {
	c.decoder = wsproto.NewDecoder(wsproto.Limits{
		MaxMessageBytes: s.cfg.MaxMessageBytes,
		MaxFragments:    s.cfg.MaxFragments,
	})
	c.echo = res.Echo
	if s.access.trusted.Contains(peerAddr(c.gc.RemoteAddr())) && !s.access.proxyPP {
		c.addr = s.access.trusted.Resolve(c.addr, res.XForwardedFor, res.XRealIP)
	}
	if !c.echo {
		c.seat = s.rooms.NewSeat(c)
	}
	switch {
	case res.OriginRefused:
		return &upgradeRefusal{cause: closes.OriginRefused, reason: failOrigin}
	case c.reject:
		return &upgradeRefusal{closes.ServerFull, "the relay holds as many connections as it may", serverFullRetry, failServerFull}
	}
	// Per-address limits, on the address behind trusted proxies.
	if !s.access.limits.OpenConn(c.addr) {
		return &upgradeRefusal{closes.AddressLimited, "too many connections from your address", addressRetry, failAddressLimit}
	}
	c.addrCounted = true
	if ok, retry := s.access.limits.AllowHandshake(c.addr, now); !ok {
		return &upgradeRefusal{closes.AddressLimited, "too many new connections from your address", retry, failAddressLimit}
	}
	// A token offered with the handshake (a browser's subprotocol) holds
	// for the connection; a bad one ends it: the client can do nothing.
	if res.AuthToken != "" && s.access.verifier != nil {
		claims, err := s.access.verify(res.AuthToken, now)
		if err != nil {
			return &upgradeRefusal{cause: closes.Unauthorized, detail: err.Error(), reason: failUnauthorized}
		}
		c.rare().claims = claims
	}
	return nil
}

// serverFullRetry is the retry hint of a refusal for the connection limit,
// addressRetry for the per-address connection limit.
const (
	serverFullRetry = 2 * time.Second
	addressRetry    = 5 * time.Second
)

// consume discards the first n buffered bytes, the ones a parser has used.
//
// gnet v2's Conn.Discard(n) discards EVERYTHING buffered when n <= 0, so a
// read that holds only the start of a frame (nothing used yet) must not call
// it: the partial frame would be lost and its rest parsed as a new header.
// Every discard of parsed input goes through here.
func consume(gc gnet.Conn, n int) {
	if n > 0 {
		_, _ = gc.Discard(n)
	}
}

// discardInput drops everything buffered (input of a connection that is
// going away, or whose stream can no longer be framed).
func discardInput(gc gnet.Conn) {
	consume(gc, gc.InboundBuffered())
}
