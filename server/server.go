// Package server puts the room core on the wire: a gnet v2 event loop with
// gobwas/ws framing (through package wsproto), no goroutine per connection.
//
// # Goroutines and ownership
//
//   - gnet event loops (Config.EventLoops): each owns the read side of its
//     connections — handshake state, frame decoder, request parsing — and
//     performs every socket write.
//   - room workers (package room): own rooms and build one frame per player
//     per tick, handed to a connection with conn.Deliver, which queues it on
//     the connection's loop with AsyncWrite and never blocks.
//   - one sweeper goroutine: handshake, ping and close timeouts, acting on
//     connections only through goroutine-safe calls (AsyncWrite, Close, Wake)
//     and atomics.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// Server is a tickrelay relay: WebSocket listener, rooms and liveness.
type Server struct {
	gnet.BuiltinEventEngine

	cfg   Config
	log   *slog.Logger
	rooms *room.Manager
	hs    wsproto.HandshakeConfig
	conns registry
	stats *counters

	openConns    atomic.Int64
	shuttingDown atomic.Bool
	draining     atomic.Bool
	drainTimeout atomic.Int64 // time.Duration; Config.DrainTimeout, reloadable
	abortDrain   chan struct{}
	done         chan struct{}
	metrics      *metrics
	admin        *admin

	eng      gnet.Engine
	addr     string
	booted   chan struct{}
	runDone  chan struct{}
	runErr   error
	stopOnce sync.Once
	sweeper  *sweeper
}

// New validates cfg and builds a Server. Start makes it listen.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("server: invalid config: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		booted:     make(chan struct{}),
		runDone:    make(chan struct{}),
		done:       make(chan struct{}),
		abortDrain: make(chan struct{}, 1),
		stats:      newCounters(),
		hs: wsproto.HandshakeConfig{
			Path:           cfg.Path,
			EchoPath:       cfg.EchoPath,
			AllowedOrigins: cfg.AllowedOrigins,
			Subprotocol:    Subprotocol,
			MaxHeaderBytes: cfg.MaxHeaderBytes,
			HealthPath:     cfg.HealthPath,
		},
	}
	s.conns.init()
	s.drainTimeout.Store(int64(cfg.DrainTimeout))
	s.metrics = newMetrics(s)
	// Tick histograms are the only metrics observed on the room path; with
	// no admin listener nobody can scrape them, so they are not kept.
	if s.cfg.Room.Observer == nil && s.cfg.AdminListen != AdminOff {
		s.cfg.Room.Observer = s.metrics
	}
	return s, nil
}

// Subprotocol is the WebSocket subprotocol the relay selects when a client
// offers it. Offering it is optional.
const Subprotocol = "tickrelay.v1"

// Start starts the rooms and the listener and returns once the relay accepts
// connections.
func (s *Server) Start() error {
	rooms, err := room.New(s.cfg.Room)
	if err != nil {
		return fmt.Errorf("server: rooms: %w", err)
	}
	s.rooms = rooms
	go func() {
		defer close(s.runDone)
		s.runErr = gnet.Run(s, "tcp://"+s.cfg.Listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.cfg.EventLoops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithLogger(gnetLogger{s.log}),
			gnet.WithSocketSendBuffer(s.cfg.SocketSendBuffer),
			gnet.WithSocketRecvBuffer(s.cfg.SocketRecvBuffer),
		)
	}()
	select {
	case <-s.booted:
	case <-s.runDone:
		rooms.Close()
		return fmt.Errorf("server: listen on %s: %w", s.cfg.Listen, s.runErr)
	}
	s.sweeper = startSweeper(s)
	if s.cfg.AdminListen != AdminOff {
		a, err := startAdmin(s)
		if err != nil {
			s.stopEngine()
			return fmt.Errorf("server: %w", err)
		}
		s.admin = a
	}
	s.log.Info("tickrelay listening",
		"addr", s.addr, "path", s.cfg.Path, "admin", s.AdminAddr(), "event_loops", s.cfg.EventLoops,
		"max_connections", s.cfg.MaxConnections)
	return nil
}

// Addr is the address the relay listens on (with the real port when the
// configured one was 0). Valid after Start.
func (s *Server) Addr() string { return s.addr }

// AdminAddr is the admin API's address, or "" when it is off. Valid after Start.
func (s *Server) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.addr()
}

// Rooms gives access to the room manager (admin API, tests). Valid after Start.
func (s *Server) Rooms() *room.Manager { return s.rooms }

// Shutdown stops accepting connections, closes every connection with 1001
// and a reason, waits for them to go (or for ctx), then stops the engine and
// the rooms. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.shuttingDown.Store(true)
		if s.rooms != nil {
			s.rooms.SetDraining(true)
		}
		s.CloseAll(wsproto.CauseGoingAway)
		err = s.waitForConnections(ctx)
		s.stopEngine()
		if s.admin != nil {
			s.admin.close(ctx)
		}
		close(s.done)
	})
	return err
}

// CloseAll starts closing every open connection for cause (sending a Close
// frame to upgraded ones). It does not wait.
func (s *Server) CloseAll(cause wsproto.Cause) {
	s.conns.each(func(c *conn) { c.closeAsync(cause, 0, "") })
}

// OpenConnections is the number of open TCP connections.
func (s *Server) OpenConnections() int { return int(s.openConns.Load()) }

func (s *Server) waitForConnections(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for s.openConns.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("server: shutdown with %d connections still open: %w", s.openConns.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func (s *Server) stopEngine() {
	if s.sweeper != nil {
		s.sweeper.stop()
	}
	select {
	case <-s.booted:
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.eng.Stop(stopCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			s.log.Warn("stopping event loops", "err", err)
		}
		cancel()
		<-s.runDone
	default:
	}
	if s.rooms != nil {
		s.rooms.Close()
	}
}

// OnBoot records the engine and the bound address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.addr = s.cfg.Listen
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			s.addr = sockaddrString(sa)
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
	case *unix.SockaddrInet6:
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
	}
	return ""
}

// gnetLogger routes gnet's internal logs to slog.
type gnetLogger struct{ log *slog.Logger }

func (l gnetLogger) Debugf(f string, a ...any) {
	l.log.Debug(fmt.Sprintf(f, a...), "component", "gnet")
}
func (l gnetLogger) Infof(f string, a ...any) { l.log.Debug(fmt.Sprintf(f, a...), "component", "gnet") }
func (l gnetLogger) Warnf(f string, a ...any) { l.log.Warn(fmt.Sprintf(f, a...), "component", "gnet") }
func (l gnetLogger) Errorf(f string, a ...any) {
	l.log.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
func (l gnetLogger) Fatalf(f string, a ...any) {
	l.log.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
