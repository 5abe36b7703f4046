package server

import (
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/tickrelay/tickrelay/proto/closes"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// sweeper enforces the time limits gnet cannot (it has no read deadlines):
// handshake timeout, pings to silent connections, idle timeout, message
// read timeout, the linger of a failed connection and the wait for the
// client's Close; and it wakes connections whose input is held while their
// output drains. One goroutine for all connections; it acts only through
// goroutine-safe calls.
type sweeper struct {
	srv  *Server
	quit chan struct{}
	done chan struct{}
}

var pingFrame = wsproto.AppendFrame(nil, ws.OpPing, nil)

func startSweeper(s *Server) *sweeper {
	sw := &sweeper{srv: s, quit: make(chan struct{}), done: make(chan struct{})}
	go sw.run(sweepPeriod(s.cfg))
	return sw
}

// sweepPeriod is fine enough for the shortest limit and never busier than
// 20 sweeps a second.
func sweepPeriod(cfg Config) time.Duration {
	p := min(cfg.HandshakeTimeout, cfg.PingInterval, cfg.CloseTimeout, cfg.FailLinger, cfg.MessageReadTimeout) / 4
	return max(min(p, time.Second), 50*time.Millisecond)
}

func (sw *sweeper) run(period time.Duration) {
	defer close(sw.done)
	t := time.NewTicker(period)
	defer t.Stop()
	lastLimitSweep := time.Now()
	last := time.Now()
	for {
		select {
		case <-sw.quit:
			return
		case now := <-t.C:
			elapsed := int64(now.Sub(last))
			last = now
			sw.srv.conns.each(func(c *conn) { sw.check(c, now.UnixNano(), elapsed) })
			sw.srv.refreshFileLimit()
			if now.Sub(lastLimitSweep) > 10*time.Second {
				lastLimitSweep = now
				sw.srv.access.limits.Sweep(now) // forget addresses idle long enough
			}
		}
	}
}

func (sw *sweeper) stop() {
	close(sw.quit)
	<-sw.done
}

var handshakeTimeoutAnswer = httpAnswer(closes.Of(closes.HandshakeTimeout).HTTPStatus, "tickrelay: the WebSocket handshake did not complete in time\n")

// check applies the time limits to c; elapsed is the time since the
// previous sweep.
func (sw *sweeper) check(c *conn, now, elapsed int64) {
	cfg := &sw.srv.cfg
	switch c.state.Load() {
	case stateHandshake:
		if c.answered().Load() {
			sw.checkAnswered(c, now)
			return
		}
		if now-c.openedAt > int64(cfg.HandshakeTimeout) && !c.closing().Load() {
			c.timeOutHandshake()
		}
	case stateOpen:
		if c.closing().Load() {
			sw.checkClosing(c, now)
			return
		}
		c.out.trimIdle()
		if c.held().Load() {
			// The relay holds this connection's input back (its output is
			// over the soft limit, or a request waits for its seat): the
			// client cannot complete a message the relay does not read, so
			// the message read timeout stands still, to within a sweep.
			c.pausePartial(now, elapsed)
		} else if since := c.partialSince.Load(); since != 0 && now-since > int64(cfg.MessageReadTimeout) {
			sw.srv.stats.slowMessages.Add(1)
			c.close(closes.SlowMessage, "a message was not completed within the message read timeout", false)
			return
		}
		idle := now - c.lastRead.Load()
		switch {
		case idle > int64(cfg.IdleTimeout):
			sw.srv.stats.idleTimeouts.Add(1)
			c.close(closes.IdleTimeout, "no data or pong from the client within the idle timeout", false)
		case idle > int64(cfg.PingInterval) && now-c.lastPing.Load() > int64(cfg.PingInterval):
			c.lastPing.Store(now)
			if ok, _, wake := c.out.push(pingFrame, nil); ok && wake {
				c.wake()
			}
		case c.held().Load() || c.outHeld().Load():
			// Input or output waits for gnet to drain its buffer, which
			// it does not report: look again.
			c.wake()
		}
	}
}

// pausePartial moves the start of the message being received forward by
// elapsed (never past now), so time spent held does not count against the
// message read timeout. A CAS: the loop may store a new start meanwhile, and
// that one wins.
func (c *conn) pausePartial(now, elapsed int64) {
	if since := c.partialSince.Load(); since != 0 {
		c.partialSince.CompareAndSwap(since, min(since+elapsed, now))
	}
}

// timeOutHandshake answers 408 and closes a connection whose upgrade request
// is late, on its event loop: there the answer cannot cross a 101 the loop
// is writing (the request may complete just now). Goroutine-safe.
func (c *conn) timeOutHandshake() {
	_ = c.gc.Wake(func(gc gnet.Conn, err error) error {
		if err != nil || c.state.Load() != stateHandshake || !c.closing().CompareAndSwap(false, true) {
			return nil
		}
		c.loop.srv.stats.handshakeFailed(failTimeout)
		c.answerAndLinger(handshakeTimeoutAnswer)
		return nil
	})
}

// checkAnswered drops a connection answered with an HTTP error before its
// upgrade (answerAndLinger): fail-linger after its write side was shut, or
// fail-linger after the answer when the client has not read it all by then;
// until then it is woken, so its write side is shut once the answer is out.
func (sw *sweeper) checkAnswered(c *conn, now int64) {
	if sw.lingeredAfterShut(c, now) {
		return
	}
	if now-c.rare().closeSentAt.Load() > int64(sw.srv.cfg.FailLinger) {
		_ = c.gc.Close()
		return
	}
	c.wake()
}

// lingeredAfterShut reports whether c's write side is shut, and drops c
// once it has been for fail-linger.
func (sw *sweeper) lingeredAfterShut(c *conn, now int64) bool {
	shut := c.rare().shutAt.Load()
	if shut == 0 {
		return false
	}
	if now-shut > int64(sw.srv.cfg.FailLinger) {
		_ = c.gc.Close()
	}
	return true
}

// checkClosing drops a closing connection whose time is up. A failed one:
// once its Close is flushed and its write side shut, after the fail linger;
// until then, as long as the client keeps reading (its unwritten bytes go
// down) up to the close timeout, so a slow reader still gets the Error and
// Close, but one that reads nothing for a whole linger is dropped. A clean
// one: after the close timeout.
func (sw *sweeper) checkClosing(c *conn, now int64) {
	cfg := &sw.srv.cfg
	since := now - c.rare().closeSentAt.Load()
	if !c.failing().Load() {
		if since > int64(cfg.CloseTimeout) {
			_ = c.gc.Close()
		}
		return
	}
	if sw.lingeredAfterShut(c, now) {
		return
	}
	// Progress: its unwritten bytes went down since the last sweep.
	if left := c.out.total(); left < c.rare().lingerLeft.Swap(left) || c.rare().progressAt.Load() == 0 {
		c.rare().progressAt.Store(now)
	}
	if since > int64(cfg.CloseTimeout) || now-c.rare().progressAt.Load() > int64(cfg.FailLinger) {
		c.drop()
		return
	}
	c.wake() // flushes, and shuts the write side once everything is out
}
