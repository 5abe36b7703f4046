// The real relay (package server) and the reference relay (bench/reference)
// in the table of servers the simulator is tested against, next to the
// baseline.

package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/bench/reference/refrelay"
	"github.com/tickrelay/tickrelay/server"
)

func init() {
	testServers = append(testServers,
		testServer{name: "relay", start: startRelay},
		testServer{name: "reference", start: startReference})
}

func startReference(t *testing.T) string {
	t.Helper()
	srv, err := refrelay.New(refrelay.Config{Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "ws://" + srv.Addr() + "/ws"
}

func startRelay(t *testing.T) string {
	t.Helper()
	url, _ := startRelayWith(t, nil)
	return url
}

// startRelayWith starts the relay with its test configuration changed by
// mutate (nil: none); its admin API, if mutate turns it on, is at
// srv.AdminAddr().
func startRelayWith(t *testing.T, mutate func(*server.Config)) (string, *server.Server) {
	t.Helper()
	cfg := server.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: server.AdminOff, // its default is a fixed port
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "ws://" + srv.Addr() + "/ws", srv
}
