// The real relay (package server) in the table of servers every client test
// runs against, next to the baseline.

package client

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server"
)

func init() {
	testServers = append(testServers,
		testServer{name: "relay", start: startRelay},
		testServer{name: "relay-split", start: startRelaySplit},
	)
}

// startRelaySplit puts a proxy that cuts every write, both ways, into
// random pieces with pauses between the clients and the relay.
func startRelaySplit(t *testing.T) (string, func()) {
	t.Helper()
	url, stop := startRelay(t)
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	p := splitproxy.ForTest(t, addr, nil)
	return "ws://" + p.Addr() + "/ws", stop
}

func startRelay(t *testing.T) (string, func()) {
	t.Helper()
	srv, err := server.New(server.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: server.AdminOff, // its default is a fixed port
		// A dropped player leaves at once: these tests are about rooms
		// (resume has its own, with a grace).
		Room:   room.Config{SeatGrace: -1},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		})
	}
	t.Cleanup(stop)
	return "ws://" + srv.Addr() + "/ws", stop
}
