package server

import (
	"context"
	"time"

	"github.com/tickrelay/tickrelay/proto/closes"
)

// Drain takes the relay out of service gently: readiness turns false and
// joins are refused (ERROR_CODE_DRAINING), existing rooms run on until they
// are empty or timeout passes, then every room's pending frames are sent and
// every connection is closed with 1001 and the server shuts down; Done is
// closed when that is over. Calling it again does nothing. It returns at
// once. Zero timeout means Config.DrainTimeout.
func (s *Server) Drain(timeout time.Duration) {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	if timeout <= 0 {
		timeout = time.Duration(s.drainTimeout.Load())
	}
	s.log.Info("draining", "timeout", timeout)
	if s.rooms != nil {
		s.rooms.SetDraining(true)
	}
	go func() {
		if s.cluster != nil {
			// Rooms this node owns go on elsewhere, with all their
			// state; its own players resume there after the close.
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			s.cluster.Drain(ctx)
			cancel()
		}
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		poll := time.NewTicker(50 * time.Millisecond)
		defer poll.Stop()
	wait:
		// Players whose connection is gone (away, seat kept for a
		// resume) do not hold the drain.
		for s.rooms != nil && s.playersConnected() > 0 {
			select {
			case <-deadline.C:
				s.log.Info("drain deadline passed", "players", s.rooms.Stats().Players)
				break wait
			case <-s.abortDrain:
				break wait
			case <-poll.C:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout+time.Second)
		defer cancel()
		if err := s.shutdown(ctx, closes.Draining); err != nil {
			s.log.Warn("shutdown after drain", "err", err)
		}
	}()
}

// playersConnected is the players in rooms with a connection.
func (s *Server) playersConnected() int {
	st := s.rooms.Stats()
	return st.Players - st.SeatsAway
}

// Draining reports whether Drain or Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() || s.shuttingDown.Load() }

// Done is closed once the server has shut down (after Shutdown, at the end
// of a Drain, or after a fatal error).
func (s *Server) Done() <-chan struct{} { return s.done }

// Kill is the answer to a second signal: every connection gets its Close
// frame and is dropped at once, without waiting for the client's answer,
// and the server stops. A drain or shutdown already under way finishes at
// once instead of waiting out its timeouts. It returns when the server has
// stopped (or after about a second).
func (s *Server) Kill() {
	s.killed.Store(true)
	select {
	case s.abortDrain <- struct{}{}:
	default:
	}
	s.conns.each(func(c *conn) { c.kill() })
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_ = s.shutdown(ctx, closes.GoingAway)
	}()
	select {
	case <-s.done:
	case <-time.After(time.Second):
	}
}

// kill sends the connection its Close (unless one is on its way) and drops
// it right after, without waiting for the client. Goroutine-safe.
//
// The drop must not overtake the Close: another goroutine may have started
// a close (won closing) and not queued its frames yet. So whoever queues
// the Close drops the connection: kill itself when the Close is queued
// already, the close under way when it queues it (outbox.seal sees the
// kill). drop runs on the loop and writes everything queued first.
func (c *conn) kill() {
	if c.out.markKilling() {
		c.drop()
		return
	}
	c.close(closes.GoingAway, "", false)
}

// abort drops the connection with a TCP reset and no Close frame (Abort).
func (c *conn) abort() {
	c.closing().Store(true)
	_ = c.gc.SetLinger(0)
	_ = c.gc.Close()
}
