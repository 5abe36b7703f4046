// Package relay is the baseline tickrelay server: the relay a competent Go
// team writes in an afternoon with net/http and gorilla/websocket, speaking
// the same wire protocol as the real relay so that client-sim drives both
// unchanged. bench/ compares the real relay against it.
//
// Design, deliberately conventional:
//   - one reader and one writer goroutine per connection, joined by a
//     buffered channel of encoded messages; when the channel is full the
//     connection is closed as a slow consumer (close code 4000), as the real
//     relay does;
//   - rooms live in a map under one mutex; each room has its own mutex for
//     its members and, in tick mode, one goroutine with a time.Ticker;
//   - every message is encoded with proto.Marshal of the generated types.
//
// It is honest (nothing is slowed down on purpose) but makes no heroic
// optimisation either: that is the point of a baseline.
package relay

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Config configures a Server. A zero field means the default given in its
// comment.
type Config struct {
	// TickRate is the tick rate (Hz) of rooms whose creator asks for none.
	// Zero means immediate mode: each message is forwarded at once in its own
	// Frame, and the Frame's tick is a per-room counter.
	TickRate int
	// MaxTickRate bounds the tick rate a room may ask for. Zero means 120.
	MaxTickRate int
	// DefaultMaxPlayers is a room's capacity when its creator gives none.
	// Zero means 16.
	DefaultMaxPlayers int
	// MaxPlayersPerRoom caps the capacity a room may ask for. Zero means 1,000.
	MaxPlayersPerRoom int
	// SendQueue is the number of encoded messages that may wait for one
	// connection's writer; one more and the connection is closed as a slow
	// consumer. Zero means 1,024.
	SendQueue int
	// MaxMessageSize is the largest message accepted from a client. Zero
	// means 64 KiB.
	MaxMessageSize int64
	// WriteTimeout bounds one write to a client. Zero means 10 s.
	WriteTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.MaxTickRate == 0 {
		c.MaxTickRate = 120
	}
	if c.DefaultMaxPlayers == 0 {
		c.DefaultMaxPlayers = 16
	}
	if c.MaxPlayersPerRoom == 0 {
		c.MaxPlayersPerRoom = 1000
	}
	if c.SendQueue == 0 {
		c.SendQueue = 1024
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 64 << 10
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	return c
}

// ErrTickRate is returned by New for a default tick rate out of range.
var ErrTickRate = errors.New("relay: tick rate out of range")

// Server is the baseline relay. It implements http.Handler: mount it on the
// WebSocket path (/ws in main.go). Safe for concurrent use.
type Server struct {
	cfg      Config
	upgrader websocket.Upgrader

	mu     sync.Mutex // guards rooms, conns, closed; taken before any room.mu
	rooms  map[string]*room
	conns  map[*conn]struct{}
	closed bool

	wg sync.WaitGroup // connection and room goroutines
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.TickRate < 0 || cfg.TickRate > cfg.MaxTickRate {
		return nil, ErrTickRate
	}
	return &Server{
		cfg: cfg,
		upgrader: websocket.Upgrader{
			// Game clients are not browsers on a foreign origin; the real
			// relay does not check Origin either.
			CheckOrigin:  func(*http.Request) bool { return true },
			Subprotocols: []string{"tickrelay.v1"},
		},
		rooms: make(map[string]*room),
		conns: make(map[*conn]struct{}),
	}, nil
}

// ServeHTTP upgrades the request to a WebSocket and serves it until the
// connection ends or the Server is closed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// Upgrade has already written an HTTP error.
		return
	}
	c := newConn(s, ws)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go c.writeLoop()
	// The request goroutine that net/http gave us becomes the reader.
	c.readLoop()
}

// Close closes every connection and waits for all goroutines of the Server
// to end. Rooms empty themselves as their members disconnect.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.Close()
	}
	s.wg.Wait()
	return nil
}

// Stats is a snapshot of the Server's size, for tests and logs.
type Stats struct {
	Rooms int
	Conns int
}

// Stats returns the current number of rooms and connections.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Rooms: len(s.rooms), Conns: len(s.conns)}
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}
