// Package refrelay is a measuring instrument, not a product: the leanest
// relay this design allows on this machine, the floor the real relay is
// measured against in bench/ (ratios "relay / reference" of CPU per
// delivery and memory per idle connection, taken in the same run).
//
// It is built from the relay's own parts, gnet/v2 event loops and gobwas/ws
// (the handshake through ws.Upgrader on the buffered request bytes, frames
// through gobwas's header helpers), and speaks just enough of the
// tickrelay.v1 wire protocol for client-sim: Join (creating the room if
// missing) answered by Joined; Send, broadcast to the other members of the
// room; at each tick (30 Hz), one Frame per member holding every delivery
// of the tick, written with one write; Ping answered by Pong; Leave
// answered by Left. There is no room logic beyond membership: no events,
// hosts, metadata, targets, echo, conflation, per-room tick rates,
// immediate rooms, reconnects, limits beyond the ones that keep it safe,
// keep-alive pings, idle timeouts, metrics or admin API. What it does not
// support gets a clear answer (Error INVALID_ARGUMENT, or a close with a
// reason), never a silent drop.
//
// Lean means: no allocation per message in steady state (each Send is
// encoded once into its room's tick buffer; each member's frame is built in
// a pooled buffer, handed to gnet's AsyncWrite and returned to the pool in
// its callback), one write per member per tick, and nothing per
// connection until it joins a room beyond gnet's own state and a small
// struct.
//
// Goroutines: gnet's event loops run OnOpen, OnTraffic and OnClose and the
// write callbacks; gnet's ticker goroutine runs OnTick, which builds every
// room's frames and hands them to the loops with AsyncWrite. A Server is
// safe for concurrent use.
package refrelay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Config configures a Server. A zero field means the default in its
// comment.
type Config struct {
	// Listen is the TCP address, e.g. "127.0.0.1:0". Zero means
	// "127.0.0.1:7700".
	Listen string
	// Path is the WebSocket path. Zero means "/ws".
	Path string
	// TickRate is every room's tick rate in Hz. Zero means 30.
	TickRate int
	// EventLoops is the number of gnet event loops. Zero means GOMAXPROCS.
	EventLoops int
	// DefaultMaxPlayers is a room's capacity when its creator asks for
	// none. Zero means 16.
	DefaultMaxPlayers int
	// MaxPlayersPerRoom caps the capacity a room may ask for. Zero means
	// 1,000.
	MaxPlayersPerRoom int
	// MaxMessageBytes caps one client message. Zero means 64 KiB.
	MaxMessageBytes int
	// MaxTickBytes caps the deliveries one room may buffer between two
	// ticks; a Send past it is refused with Error OVERLOADED. Zero means 4
	// MiB.
	MaxTickBytes int
	// MaxPendingFrames caps the frames of one connection handed to gnet and
	// not yet written; past it, and past MaxOutboundBytes of unwritten
	// bytes, the connection is closed as a slow consumer (4000). Zero
	// means 32 and 4 MiB.
	MaxPendingFrames int
	MaxOutboundBytes int
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7700"
	}
	if c.Path == "" {
		c.Path = "/ws"
	}
	if c.TickRate == 0 {
		c.TickRate = 30
	}
	if c.EventLoops == 0 {
		c.EventLoops = runtime.GOMAXPROCS(0)
	}
	if c.DefaultMaxPlayers == 0 {
		c.DefaultMaxPlayers = 16
	}
	if c.MaxPlayersPerRoom == 0 {
		c.MaxPlayersPerRoom = 1000
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.MaxTickBytes == 0 {
		c.MaxTickBytes = 4 << 20
	}
	if c.MaxPendingFrames == 0 {
		c.MaxPendingFrames = 32
	}
	if c.MaxOutboundBytes == 0 {
		c.MaxOutboundBytes = 4 << 20
	}
	return c
}

// ErrConfig is returned (wrapped) by New for a value out of range.
var ErrConfig = errors.New("refrelay: bad config")

// Server is the reference relay.
type Server struct {
	gnet.BuiltinEventEngine

	cfg    Config
	period time.Duration

	eng     gnet.Engine
	addr    string
	booted  chan struct{}
	runDone chan struct{}
	runErr  error
	stop    sync.Once

	mu       sync.Mutex // guards rooms; taken before any room.mu
	rooms    map[string]*room
	roomList atomic.Pointer[[]*room] // copy-on-write view for the ticker

	tick  atomic.Uint64 // the current tick number
	conns atomic.Int64  // open TCP connections

	ticker    tickState // owned by the ticker goroutine
	frames    sync.Pool // *frame
	appenders sync.Pool // *appender, for the loops' own writes
}

// New checks cfg and returns a Server; Start starts it.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.TickRate < 1 || cfg.TickRate > 1000 {
		return nil, fmt.Errorf("%w: tick rate %d not in 1-1000", ErrConfig, cfg.TickRate)
	}
	for name, v := range map[string]int{"EventLoops": cfg.EventLoops, "DefaultMaxPlayers": cfg.DefaultMaxPlayers,
		"MaxPlayersPerRoom": cfg.MaxPlayersPerRoom, "MaxMessageBytes": cfg.MaxMessageBytes, "MaxTickBytes": cfg.MaxTickBytes,
		"MaxPendingFrames": cfg.MaxPendingFrames, "MaxOutboundBytes": cfg.MaxOutboundBytes} {
		if v < 0 {
			return nil, fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
	}
	if cfg.DefaultMaxPlayers > cfg.MaxPlayersPerRoom {
		return nil, fmt.Errorf("%w: DefaultMaxPlayers above MaxPlayersPerRoom", ErrConfig)
	}
	s := &Server{
		cfg:     cfg,
		period:  time.Second / time.Duration(cfg.TickRate),
		booted:  make(chan struct{}),
		runDone: make(chan struct{}),
		rooms:   map[string]*room{},
	}
	s.roomList.Store(&[]*room{})
	s.frames.New = func() any { return &frame{b: make([]byte, 0, 512)} }
	s.appenders.New = func() any { return new(appender) }
	return s, nil
}

// Start starts the event loops and returns once the server accepts
// connections.
func (s *Server) Start() error {
	go func() {
		defer close(s.runDone)
		s.runErr = gnet.Run(s, "tcp://"+s.cfg.Listen,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.cfg.EventLoops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReuseAddr(true),
			gnet.WithTicker(true),
		)
	}()
	select {
	case <-s.booted:
		return nil
	case <-s.runDone:
		return fmt.Errorf("refrelay: listen on %s: %w", s.cfg.Listen, s.runErr)
	}
}

// Addr is the address the server listens on (with the real port when the
// configured one was 0). Valid after Start.
func (s *Server) Addr() string { return s.addr }

// OpenConnections is the number of open TCP connections.
func (s *Server) OpenConnections() int { return int(s.conns.Load()) }

// Shutdown stops the event loops (gnet closes every connection) and waits
// for them, or for ctx. Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.stop.Do(func() {
		select {
		case <-s.booted:
		default:
			return
		}
		if e := s.eng.Stop(ctx); e != nil {
			err = fmt.Errorf("refrelay: stop: %w", e)
		}
		select {
		case <-s.runDone:
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("refrelay: stop: %w", ctx.Err())
			}
		}
	})
	return err
}

// OnBoot records the engine and the bound address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.addr = s.cfg.Listen
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			if a, ok := sa.(*unix.SockaddrInet4); ok {
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			} else if a, ok := sa.(*unix.SockaddrInet6); ok {
				s.addr = net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
			}
		}
		_ = unix.Close(fd)
	}
	s.ticker.next = time.Now()
	close(s.booted)
	return gnet.None
}

// OnOpen gives the connection its state.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s.conns.Add(1)
	gc.SetContext(&conn{srv: s, gc: gc})
	return nil, gnet.None
}

// OnClose takes the connection out of its room.
func (s *Server) OnClose(gc gnet.Conn, _ error) gnet.Action {
	s.conns.Add(-1)
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None
	}
	c.gone.Store(true)
	if c.room != nil {
		s.leave(c)
	}
	gc.SetContext(nil)
	return gnet.None
}

// OnTraffic handles every complete request or frame buffered.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	return c.traffic()
}

// OnTick runs every room's tick, on gnet's ticker goroutine, on an absolute
// schedule: a late tick is run at once and the schedule skips what it
// missed (the tick number jumps, as the relay's does).
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	t := &s.ticker
	now := time.Now()
	if missed := now.Sub(t.next); missed >= 0 {
		n := uint64(missed/s.period) + 1
		s.tick.Add(n)
		t.next = t.next.Add(time.Duration(n) * s.period)
		s.runTick(s.tick.Load())
	}
	return max(time.Until(t.next), 0), gnet.None
}
