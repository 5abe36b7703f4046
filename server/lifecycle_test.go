package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

func TestSlowConsumerIsClosedAndRoomGoesOn(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		// Small kernel buffers, so that a client that stops reading backs
		// up into the relay's own queue quickly instead of into megabytes
		// of loopback socket memory.
		c.SocketSendBuffer = 8 << 10
		c.OutboundSoftBytes = 16 << 10
		c.OutboundHardBytes = 1 << 20
		c.Room.MaxBacklogBytes = 128 << 10
		c.RateLimits.MessagesPerSecond = 10_000 // the sender is honest, only fast
	})
	sender, reader := dial(t, srv), dial(t, srv)
	sender.join("slow", 1)
	reader.join("slow", 1)

	// The slow player: a tiny receive buffer and it never reads.
	d := net.Dialer{Timeout: testTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	slow := &rawConn{t: t, nc: nc}
	slow.br = newReader(nc)
	require.NoError(t, nc.SetDeadline(time.Now().Add(testTimeout)))
	slow.upgrade()
	slow.write(clientFrame(true, opBinary, joinMessage(t, "slow", 1), false))
	slowJoined := slow.readServerMessage().GetJoined()
	require.NotNil(t, slowJoined)

	const messages, size = 1000, 1 << 10
	payload := make([]byte, size)
	done := make(chan struct{})
	received := 0
	go func() {
		defer close(done)
		for received < messages {
			m := reader.read()
			received += len(m.GetFrame().GetDeliveries())
		}
	}()
	// Paced at about 1 MB/s: easy for a reading client, impossible for
	// one that never reads.
	pace := time.NewTicker(time.Millisecond)
	defer pace.Stop()
	for i := 0; i < messages; i++ {
		<-pace.C
		sender.sendPayload(payload, nil, false)
	}
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatalf("the reading player got %d of %d messages", received, messages)
	}
	require.Eventually(t, func() bool { return srv.stats.slowConsumers.Load() > 0 },
		testTimeout, 10*time.Millisecond, "the slow player is closed as a slow consumer")
	require.Eventually(t, func() bool { return srv.OpenConnections() == 2 }, testTimeout, 10*time.Millisecond)
}

func TestOpenCloseManyConnectionsLeaksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	srv := startServer(t, func(c *Config) { c.Room.SeatGrace = -1 }) // dropped players leave at once
	warm := func(n int) {
		conns := make([]*rawConn, 0, n)
		for i := 0; i < n; i++ {
			r := dialRaw(t, srv)
			r.upgrade()
			r.write(clientFrame(true, opBinary, joinMessage(t, fmt.Sprintf("leak-%d", i%100), 1), false))
			m := r.readServerMessage()
			require.NotNil(t, m.GetJoined(), "join %d: %v", i, m)
			conns = append(conns, r)
		}
		for _, r := range conns {
			require.NoError(t, r.nc.Close())
		}
		require.Eventually(t, func() bool { return srv.OpenConnections() == 0 }, testTimeout, 10*time.Millisecond)
		require.Eventually(t, func() bool {
			st := srv.Rooms().Stats()
			return st.Rooms == 0 && st.Players == 0
		}, testTimeout, 10*time.Millisecond)
	}
	warm(100) // pools and maps reach their working size
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutinesBefore := runtime.NumGoroutine()

	warm(1000)

	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= goroutinesBefore+2 },
		testTimeout, 10*time.Millisecond, "goroutines return to where they were")
	var after runtime.MemStats
	require.Eventually(t, func() bool {
		runtime.GC()
		runtime.ReadMemStats(&after)
		return after.HeapAlloc < before.HeapAlloc+4<<20
	}, testTimeout, 50*time.Millisecond, "heap returns: before %d after %d", before.HeapAlloc, after.HeapAlloc)
}

func TestShutdownClosesEveryConnectionWithGoingAway(t *testing.T) {
	t.Parallel()
	cfg := Config{Listen: "127.0.0.1:0", AdminListen: AdminOff, EventLoops: 2, Logger: quietLogger()}
	srv, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	clients := []*wsClient{dial(t, srv), dial(t, srv), dial(t, srv)}
	clients[0].join("bye", 1)
	codes := make(chan int, len(clients))
	for _, c := range clients {
		go func(c *wsClient) { codes <- c.expectCloseNoFail() }(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	for range clients {
		require.Equal(t, 1001, <-codes)
	}
	_, err = net.DialTimeout("tcp", srv.Addr(), time.Second)
	require.Error(t, err, "the listener is gone")
}

// expectCloseNoFail is expectClose for use off the test goroutine.
func (c *wsClient) expectCloseNoFail() int {
	_ = c.conn.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		return -1
	}
}

// If the relay can no longer accept (its acceptor failed for good), it says
// so on /healthz, closes its connections and stops, so that main exits
// non-zero and a supervisor restarts it: it never keeps answering "ok"
// while refusing every connection.
func TestFatalErrorFailsHealthAndStops(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	c := dial(t, srv)
	admin := newAdminClient(t, srv, "")
	status, _ := admin.do("GET", "/healthz", "")
	require.Equal(t, http.StatusOK, status)

	srv.fatal(errors.New("server: accept: test failure"))
	select {
	case <-srv.Done():
	case <-time.After(testTimeout):
		t.Fatal("the relay did not stop")
	}
	require.ErrorContains(t, srv.Err(), "test failure")
	require.False(t, srv.Healthy())
	require.Equal(t, 1001, c.expectClose())
}
