package server

import (
	"context"
	"time"

	"github.com/tickrelay/tickrelay/server/wsproto"
)

// Drain takes the relay out of service gently: readiness turns false and
// joins are refused (ERROR_CODE_DRAINING), existing rooms run on until they
// are empty or timeout passes, then every connection is closed with 1001 and
// the server shuts down; Done is closed when that is over. Calling it again
// does nothing. It returns at once. Zero timeout means Config.DrainTimeout.
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
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		poll := time.NewTicker(50 * time.Millisecond)
		defer poll.Stop()
	wait:
		for s.rooms != nil && s.rooms.Stats().Players > 0 {
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
		if err := s.Shutdown(ctx); err != nil {
			s.log.Warn("shutdown after drain", "err", err)
		}
	}()
}

// Draining reports whether Drain or Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() || s.shuttingDown.Load() }

// Done is closed once the server has shut down (after Shutdown, or at the end
// of a Drain).
func (s *Server) Done() <-chan struct{} { return s.done }

// Kill closes every connection with 1001 at once and stops the server,
// without waiting for clients' Close frames: the answer to a second signal.
func (s *Server) Kill() {
	select {
	case s.abortDrain <- struct{}{}:
	default:
	}
	s.CloseAll(wsproto.CauseGoingAway)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_ = s.Shutdown(ctx)
}
