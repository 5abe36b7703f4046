package server

import (
	"time"

	"github.com/gobwas/ws"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// sweeper enforces the time limits gnet cannot (it has no read deadlines):
// handshake timeout, pings to silent connections, idle timeout and the wait
// for the client's Close. One goroutine for all connections; it acts only
// through goroutine-safe calls.
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
	p := min(cfg.HandshakeTimeout, cfg.PingInterval, cfg.CloseTimeout) / 4
	return max(min(p, time.Second), 50*time.Millisecond)
}

func (sw *sweeper) run(period time.Duration) {
	defer close(sw.done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-sw.quit:
			return
		case now := <-t.C:
			sw.srv.conns.each(func(c *conn) { sw.check(c, now.UnixNano()) })
		}
	}
}

func (sw *sweeper) stop() {
	close(sw.quit)
	<-sw.done
}

func (sw *sweeper) check(c *conn, now int64) {
	cfg := &sw.srv.cfg
	switch c.state.Load() {
	case stateHandshake:
		if now-c.openedAt > int64(cfg.HandshakeTimeout) {
			sw.srv.stats.handshakeFailed(failTimeout)
			c.closing.Store(true)
			_ = c.gc.Close()
		}
	case stateOpen:
		if c.closing.Load() {
			if now-c.closeSentAt.Load() > int64(cfg.CloseTimeout) {
				_ = c.gc.Close()
			}
			return
		}
		idle := now - c.lastRead.Load()
		switch {
		case idle > int64(cfg.IdleTimeout):
			sw.srv.stats.idleTimeouts.Add(1)
			c.closeAsync(wsproto.CauseIdleTimeout, pb.ErrorCode_ERROR_CODE_TIMEOUT,
				"no data or pong from the client within the idle timeout")
		case idle > int64(cfg.PingInterval) && now-c.lastPing.Load() > int64(cfg.PingInterval):
			c.lastPing.Store(now)
			_ = c.gc.AsyncWrite(pingFrame, nil)
		}
	}
}
