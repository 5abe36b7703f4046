package client

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/bench/baseline/relay"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 5 * time.Second

// testServer is one relay implementation the client is tested against.
// start returns the WebSocket URL and a stop function that ends every
// connection (also registered with t.Cleanup; calling it twice is fine).
type testServer struct {
	name  string
	start func(t *testing.T) (url string, stop func())
}

// testServers are the relays every table test runs against: the baseline in
// both of its modes, and the real relay (added by servers_relay_test.go).
var testServers = []testServer{
	{name: "baseline-immediate", start: startBaseline(0)},
	{name: "baseline-tick30", start: startBaseline(30)},
}

func startBaseline(tickRate int) func(t *testing.T) (string, func()) {
	return func(t *testing.T) (string, func()) {
		t.Helper()
		srv, err := relay.New(relay.Config{TickRate: tickRate})
		require.NoError(t, err)
		mux := http.NewServeMux()
		mux.Handle("/ws", srv)
		hs := httptest.NewServer(mux)
		var once sync.Once
		stop := func() {
			once.Do(func() {
				hs.Close()
				_ = srv.Close()
			})
		}
		t.Cleanup(stop)
		return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws", stop
	}
}

// forEachServer runs f as a parallel subtest per relay implementation.
func forEachServer(t *testing.T, f func(t *testing.T, url string, stop func())) {
	for _, s := range testServers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			url, stop := s.start(t)
			f(t, url, stop)
		})
	}
}

type gotDelivery struct {
	Sender  uint32
	Kind    uint32
	Payload string
}

type closeInfo struct {
	code   int
	reason string
}

// peer is a Client whose callbacks copy everything into channels, so tests
// can wait for what they expect.
type peer struct {
	*Client
	deliveries chan gotDelivery
	events     chan *pb.RoomEvent
	errs       chan *ServerError
	lefts      chan Left
	closed     chan closeInfo

	mu         sync.Mutex
	lastTick   uint64
	badTick    error
	frameCount int
}

func connect(t *testing.T, url string) *peer {
	t.Helper()
	return connectWith(t, url, Options{})
}

func connectWith(t *testing.T, url string, opts Options) *peer {
	t.Helper()
	p := &peer{
		deliveries: make(chan gotDelivery, 10000),
		events:     make(chan *pb.RoomEvent, 1000),
		errs:       make(chan *ServerError, 100),
		lefts:      make(chan Left, 10),
		closed:     make(chan closeInfo, 1),
	}
	opts.OnFrame = func(f *FrameView) {
		p.mu.Lock()
		p.frameCount++
		if f.Tick <= p.lastTick && p.badTick == nil {
			p.badTick = &tickError{prev: p.lastTick, got: f.Tick}
		}
		p.lastTick = f.Tick
		p.mu.Unlock()
		for _, d := range f.Deliveries {
			p.deliveries <- gotDelivery{Sender: d.Sender, Kind: d.Kind, Payload: string(d.Payload)}
		}
		for _, e := range f.Events {
			p.events <- e
		}
	}
	opts.OnError = func(e *ServerError) { p.errs <- e }
	opts.OnLeft = func(l Left) { p.lefts <- l }
	opts.OnClose = func(code int, reason string) { p.closed <- closeInfo{code, reason} }
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, url, opts)
	require.NoError(t, err)
	p.Client = c
	t.Cleanup(func() { _ = c.Close() })
	return p
}

type tickError struct{ prev, got uint64 }

func (e *tickError) Error() string { return "tick did not increase" }

// requireTicksIncreased checks that every frame had a larger tick than the
// one before.
func (p *peer) requireTicksIncreased(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NoError(t, p.badTick)
}

func (p *peer) join(t *testing.T, o JoinOptions) *Joined {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	j, err := p.Join(ctx, o)
	require.NoError(t, err)
	return j
}

func (p *peer) send(t *testing.T, payload string, o SendOptions) {
	t.Helper()
	require.NoError(t, p.Send([]byte(payload), o))
}

func (p *peer) nextDelivery(t *testing.T) gotDelivery {
	t.Helper()
	select {
	case d := <-p.deliveries:
		return d
	case <-time.After(waitTimeout):
		require.FailNow(t, "no delivery")
		return gotDelivery{}
	}
}

func (p *peer) nextEvent(t *testing.T) *pb.RoomEvent {
	t.Helper()
	select {
	case e := <-p.events:
		return e
	case <-time.After(waitTimeout):
		require.FailNow(t, "no room event")
		return nil
	}
}

// expectEvent waits for the next event and checks its type and player.
func (p *peer) expectEvent(t *testing.T, typ pb.RoomEventType, player uint32) *pb.RoomEvent {
	t.Helper()
	e := p.nextEvent(t)
	require.Equal(t, typ, e.GetType(), "event %v", e)
	require.Equal(t, player, e.GetPlayerId(), "event %v", e)
	return e
}

func (p *peer) nextClose(t *testing.T) closeInfo {
	t.Helper()
	select {
	case c := <-p.closed:
		return c
	case <-time.After(waitTimeout):
		require.FailNow(t, "connection not closed")
		return closeInfo{}
	}
}

// clientGoroutines lists the goroutines that belong to Clients (reader,
// keep-alive) or to the handshake of gobwas/ws: after every Client is closed
// there must be none. A goleak-style check restricted to this package's own
// goroutines, so that in-process servers do not count.
func clientGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "client.(*Client)") || strings.Contains(g, "github.com/gobwas/ws.") {
			out = append(out, g)
		}
	}
	return out
}

func requireNoClientGoroutines(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return len(clientGoroutines()) == 0 }, waitTimeout, 5*time.Millisecond,
		"goroutines left: %v", clientGoroutines())
}

// rawServer accepts WebSocket connections on loopback with gobwas/ws and
// hands each to script, for framing edge cases no relay produces.
func rawServer(t *testing.T, script func(conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				if _, err := ws.Upgrade(conn); err != nil {
					return
				}
				script(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return "ws://" + ln.Addr().String() + "/ws"
}
