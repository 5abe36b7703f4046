// Package server puts the room core on the wire: gnet v2 event loops with
// RFC 6455 framing (package wsproto, on gobwas/ws), no goroutine per
// connection.
//
// # Goroutines and ownership
//
//   - one acceptor goroutine: accepts TCP connections, counts them against
//     Config.MaxConnections, refuses the excess, and enrolls the rest on an
//     event loop.
//   - gnet event loops (Config.EventLoops): each owns the read side of its
//     connections — handshake state, frame decoder, request parsing — and
//     performs every socket write.
//   - room workers (package room): own rooms and build one frame per player
//     per tick, handed to a connection with conn.Deliver, which queues it in
//     the connection's outbox and wakes its loop; it never blocks.
//   - one sweeper goroutine: time limits, acting on connections only
//     through goroutine-safe calls (outbox, Wake, Close) and atomics.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/tickrelay/tickrelay/cluster"
	"github.com/tickrelay/tickrelay/proto/closes"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// Server is a tickrelay relay: WebSocket listener, rooms and liveness.
type Server struct {
	gnet.BuiltinEventEngine

	cfg   Config
	log   *slog.Logger
	rooms *room.Manager
	// cluster is this node's membership of a cluster; nil on a single
	// node.
	cluster *cluster.Node
	hs      wsproto.HandshakeConfig
	conns   registry
	loops   sync.Map // gnet.EventLoop -> *loopScratch
	stats   *counters
	pol     atomic.Pointer[livePolicy]
	access  *access

	openConns    atomic.Int64
	fdLimit      atomic.Int64 // the open-file limit, re-read by the sweeper
	shuttingDown atomic.Bool
	draining     atomic.Bool
	killed       atomic.Bool  // Kill: connections closing now are dropped at once
	drainTimeout atomic.Int64 // time.Duration; Config.DrainTimeout, reloadable
	abortDrain   chan struct{}
	done         chan struct{}
	metrics      *metrics
	admin        *admin

	engine   *gnet.Client
	acceptor *acceptor
	addr     string
	stopOnce sync.Once
	sweeper  *sweeper

	// fatalErr is set when a part the relay cannot run without stopped
	// (the acceptor): health checks fail and Done is closed.
	fatalOnce sync.Once
	fatalErr  atomic.Pointer[error]

	reloadMu sync.Mutex
	applied  Config // the configuration last loaded (New or Reload); reloadMu
}

// livePolicy is the reloadable part of the server's configuration, read by
// the event loops on every message without a lock.
type livePolicy struct {
	gen  uint64 // increases with every reload
	rate RateLimits
	// prev is the policy this one replaced (its own prev nil): a
	// connection that last sent under it finishes its lazy rate state
	// with its limits (connLimits.buckets).
	prev *livePolicy
}

// ofGen is the policy of generation gen if p still knows it: p or the one
// it replaced.
func (p *livePolicy) ofGen(gen uint32) *livePolicy {
	switch {
	case uint32(p.gen) == gen:
		return p
	case p.prev != nil && uint32(p.prev.gen) == gen:
		return p.prev
	}
	return nil
}

func (s *Server) policy() *livePolicy { return s.pol.Load() }

// New validates cfg and builds a Server. Start makes it listen.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.AdminTokenFile != "" {
		token, err := os.ReadFile(cfg.AdminTokenFile)
		if err != nil {
			return nil, fmt.Errorf("server: admin-token-file: %w", err)
		}
		cfg.AdminToken = strings.TrimSpace(string(token))
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("server: invalid config: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
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
			// Browsers show a refused upgrade as close 1006 and nothing
			// more; an upgrade closed at once with 4503 tells the page why.
			OriginRefusalAfterUpgrade: true,
		},
	}
	acc, err := newAccess(&cfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.access = acc
	s.hs.Forwarded = len(cfg.TrustedProxies) > 0
	if cfg.Auth.Mode == AuthJWT {
		s.hs.AuthSubprotocolPrefix = authSubprotocolPrefix
		s.hs.URLTokenParam = cfg.Auth.URLToken
	}
	s.refreshFileLimit()
	s.applied = cfg
	s.drainTimeout.Store(int64(cfg.DrainTimeout))
	s.pol.Store(&livePolicy{gen: 1, rate: cfg.RateLimits})
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

// Start starts the rooms, the event loops and the listener, and returns once
// the relay accepts connections.
func (s *Server) Start() error {
	roomCfg := s.cfg.Room
	if s.cfg.Cluster.Enabled() {
		node, err := cluster.New(s.cfg.Cluster, s.log)
		if err != nil {
			return fmt.Errorf("server: %w", err)
		}
		s.cluster = node
		roomCfg.Hooks = node.Hooks()
	}
	rooms, err := room.New(roomCfg)
	if err != nil {
		return fmt.Errorf("server: rooms: %w", err)
	}
	s.rooms = rooms
	if s.cluster != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := s.cluster.Start(ctx, rooms)
		cancel()
		if err != nil {
			rooms.Close()
			return fmt.Errorf("server: %w", err)
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		rooms.Close()
		return fmt.Errorf("server: listen on %s: %w", s.cfg.Listen, err)
	}
	s.addr = ln.Addr().String()
	// A gnet Client is an engine of event loops without a listener of its
	// own: the relay's acceptor enrolls every connection on it.
	eng, err := gnet.NewClient(s,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.EventLoops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithSocketSendBuffer(s.cfg.SocketSendBuffer),
		gnet.WithSocketRecvBuffer(s.cfg.SocketRecvBuffer),
	)
	if err == nil {
		err = eng.Start()
	}
	if err != nil {
		_ = ln.Close()
		rooms.Close()
		return fmt.Errorf("server: event loops: %w", err)
	}
	s.engine = eng
	s.acceptor = newAcceptor(s, ln.(*net.TCPListener))
	go s.acceptor.run()
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
		"max_connections", s.cfg.MaxConnections, "auth", s.authMode())
	if s.cfg.Auth.Mode == "" {
		s.log.Warn("AUTH IS OFF: anyone who can reach this port can create and join any room. " +
			"Set auth: jwt (docs/OPERATIONS.md, Authentication) before exposing the relay, or auth: off to say you mean it.")
	}
	return nil
}

func (s *Server) authMode() string {
	if s.cfg.Auth.Mode == "" {
		return AuthOff
	}
	return s.cfg.Auth.Mode
}

// fatal records that the relay can no longer serve (its acceptor stopped):
// health checks fail from now on, connections are closed and Done is
// closed, so the process exits non-zero (main reports Err).
func (s *Server) fatal(err error) {
	s.fatalOnce.Do(func() {
		s.fatalErr.Store(&err)
		s.log.Error("relay cannot go on", "err", err)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CloseTimeout+time.Second)
			defer cancel()
			_ = s.Shutdown(ctx)
		}()
	})
}

// Err is the fatal error that stopped the relay, or nil.
func (s *Server) Err() error {
	if p := s.fatalErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Healthy reports whether the relay serves: false once a fatal error
// stopped it.
func (s *Server) Healthy() bool { return s.fatalErr.Load() == nil }

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

// Shutdown stops accepting connections, sends every room's pending frames,
// closes every connection with 1001 and a reason, waits for them to go (or
// for ctx), then stops the engine and the rooms. Safe to call more than
// once; later calls return at once.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.shutdown(ctx, closes.GoingAway)
}

func (s *Server) shutdown(ctx context.Context, cause closes.Cause) error {
	var err error
	s.stopOnce.Do(func() {
		s.shuttingDown.Store(true)
		if s.acceptor != nil {
			s.acceptor.close()
		}
		if s.cluster != nil && !s.killed.Load() && !s.draining.Load() {
			s.cluster.Drain(ctx) // hand the owned rooms over first
		}
		if s.rooms != nil {
			s.rooms.SetDraining(true)
			// What rooms accepted goes out before the Close frames: a
			// drain loses nothing the relay took.
			if ferr := s.rooms.FlushAll(ctx); ferr != nil {
				s.log.Warn("flushing rooms before closing", "err", ferr)
			}
		}
		s.CloseAll(cause)
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
func (s *Server) CloseAll(cause closes.Cause) {
	s.conns.each(func(c *conn) {
		if s.killed.Load() {
			c.kill()
			return
		}
		c.close(cause, "", false)
	})
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
	if s.acceptor != nil {
		s.acceptor.close()
	}
	if s.sweeper != nil {
		s.sweeper.stop()
	}
	if s.engine != nil {
		if err := s.engine.Stop(); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("stopping event loops", "err", err)
		}
	}
	if s.rooms != nil {
		s.rooms.Close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
	s.access.close()
}

// Abort stops the relay at once, as a crashed process would look to the
// others: connections are dropped without a Close, the cluster is left
// without a handover (its leases run out), nothing is flushed. For fault
// tests; Shutdown and Drain are the ways to stop a relay.
func (s *Server) Abort() {
	s.stopOnce.Do(func() {
		s.shuttingDown.Store(true)
		s.killed.Store(true)
		if s.cluster != nil {
			s.cluster.Close()
		}
		s.conns.each(func(c *conn) { c.abort() })
		s.stopEngine()
		if s.admin != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.admin.close(ctx)
			cancel()
		}
		close(s.done)
	})
}

// Cluster is this node's cluster membership, nil on a single node.
func (s *Server) Cluster() *cluster.Node { return s.cluster }

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
