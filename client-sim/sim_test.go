package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/bench/baseline/relay"
	"github.com/tickrelay/tickrelay/client-sim/centrifugo/cftest"
	"github.com/tickrelay/tickrelay/client-sim/report"
)

// testServer is one relay the simulator is tested against; start returns
// its WebSocket URL.
type testServer struct {
	name     string
	start    func(t *testing.T) string
	protocol string // client-sim's -protocol; empty means tickrelay
}

// testServers: the baseline in both modes, a server speaking Centrifugo's
// protocol, and the real relay and the reference relay (added by
// servers_relay_test.go).
var testServers = []testServer{
	{name: "baseline-immediate", start: startBaseline(0)},
	{name: "baseline-tick30", start: startBaseline(30)},
	{name: "centrifugo-protocol", start: startCentrifugoProtocol, protocol: report.ProtocolCentrifugo},
}

// startCentrifugoProtocol is cftest's server: Centrifugo's client protocol
// through the official codec, publications delivered to the publisher too
// (which client-sim must not count).
func startCentrifugoProtocol(t *testing.T) string {
	t.Helper()
	srv, err := cftest.Start(cftest.Config{PingInterval: 500 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	return srv.URL()
}

// config is testConfig for this server.
func (s testServer) config(t *testing.T) Config {
	cfg := testConfig(t, s.start(t))
	if s.protocol != "" {
		cfg.Protocol = s.protocol
	}
	return cfg
}

// closeClient closes one simulated client's connection, whatever its
// protocol.
func closeClient(c *simClient) {
	if c.cf != nil {
		_ = c.cf.Close()
		return
	}
	_ = c.c.Close()
}

func startBaseline(tickRate int) func(t *testing.T) string {
	return func(t *testing.T) string {
		t.Helper()
		srv, err := relay.New(relay.Config{TickRate: tickRate})
		require.NoError(t, err)
		mux := http.NewServeMux()
		mux.Handle("/ws", srv)
		hs := httptest.NewServer(mux)
		t.Cleanup(func() {
			hs.Close()
			_ = srv.Close()
		})
		return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	}
}

// testConfig is a short run: 16 clients in rooms of 4 at 20 msg/s, 0.5 s of
// warm-up and 2 s measured.
func testConfig(t *testing.T, url string) Config {
	cfg := defaultConfig()
	cfg.URL = url
	cfg.Clients = 16
	cfg.RoomSize = 4
	cfg.Rate = 20
	cfg.Warmup = 500 * time.Millisecond
	cfg.Duration = 2 * time.Second
	cfg.Ramp = 0
	cfg.Drain = 3 * time.Second
	cfg.Progress = testWriter{t}
	return cfg
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func runWithTimeout(t *testing.T, cfg Config) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := run(ctx, cfg)
	require.NoError(t, err)
	return rep
}

func TestShortRunHasNoLoss(t *testing.T) {
	t.Parallel()
	for _, s := range testServers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t)
			rep := runWithTimeout(t, cfg)

			require.Equal(t, cfg.Protocol, rep.Protocol)
			require.Equal(t, 16, rep.Connected)
			require.Equal(t, 4, rep.Rooms)
			require.Empty(t, rep.Errors)
			// 16 clients x 20 msg/s x 2 s, give or take a message each at
			// the window's edges. Fewer when the machine is so loaded that
			// the scheduler lags and late sends slip past the window's end
			// (still counted consistently at both ends: the check that
			// matters is delivered == expected).
			// Both ways: a scheduler that lagged in the warm-up catches up
			// inside the window.
			require.InDelta(t, 640, float64(rep.Sent), 320)
			require.Greater(t, rep.SentTotal, rep.Sent, "warm-up sends are not measured")
			require.Equal(t, rep.Sent*3, rep.Expected, "each send reaches the 3 other members")
			require.Equal(t, rep.Expected, rep.Delivered)
			require.Zero(t, rep.LossRatio)
			require.Zero(t, rep.Duplicates)
			require.Zero(t, rep.OutOfOrder)
			require.Zero(t, rep.BadPayloads)
			require.Zero(t, rep.ReceiversWithLoss)

			l := rep.LatencyMs
			require.Positive(t, l.P50)
			require.LessOrEqual(t, l.P50, l.P90)
			require.LessOrEqual(t, l.P90, l.P99)
			require.LessOrEqual(t, l.P99, l.P999)
			require.LessOrEqual(t, l.P999, l.Max)
			// Milliseconds on loopback, but a 2-core box shared with other
			// test binaries can stall a process for seconds; what must hold
			// is that no latency exceeds the run itself (a misread
			// timestamp would give years).
			require.Less(t, l.Max, float64((cfg.Warmup + cfg.Duration + cfg.Drain).Milliseconds()))
			require.Positive(t, rep.ClientCPUS)
		})
	}
}

func TestMaxLossFailsWhenAReceiverDisconnects(t *testing.T) {
	t.Parallel()
	for _, s := range testServers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			cfg := s.config(t)
			cfg.MaxLoss = 0.001
			var once sync.Once
			cfg.hooks.midWindow = func(s *sim) {
				// Halfway through the window one receiver goes away: the
				// 3 others in its room keep sending to it.
				once.Do(func() { closeClient(s.clients[1]) })
			}
			rep := runWithTimeout(t, cfg)

			require.Equal(t, rep.Sent*3, rep.Expected, "expected counts full rooms: the gone receiver's share is loss")
			require.Less(t, rep.Delivered, rep.Expected)
			// Client 1 misses about half the window of 3 senders: 3 x 20 msg
			// of 1,920 deliveries, about 3%.
			require.Greater(t, rep.LossRatio, 0.01)
			require.Less(t, rep.LossRatio, 0.1)
			require.Equal(t, 1, rep.ReceiversWithLoss)
			// One disconnect: 1000 when the server answers the Close in
			// time, 1006 otherwise.
			require.Equal(t, int64(1), rep.Errors["disconnect:1000"]+rep.Errors["disconnect:1006"], "errors: %v", rep.Errors)
			require.Zero(t, rep.Duplicates)

			var stderr bytes.Buffer
			require.Equal(t, 3, finish(cfg, rep, &bytes.Buffer{}, &stderr), "exit status for too much loss")
			require.Contains(t, stderr.String(), "exceeds -max-loss")

			cfg.MaxLoss = -1
			require.Equal(t, 0, finish(cfg, rep, &bytes.Buffer{}, &bytes.Buffer{}), "no limit")
		})
	}
}

func TestIdleRun(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, testServers[0].start(t))
	cfg.Rate = 0
	cfg.Clients = 50
	cfg.RoomSize = 8
	cfg.Warmup = 0
	cfg.Duration = 300 * time.Millisecond
	rep := runWithTimeout(t, cfg)
	require.Equal(t, 50, rep.Connected)
	require.Equal(t, 7, rep.Rooms, "the last room holds the remaining 2")
	require.Zero(t, rep.Sent)
	require.Zero(t, rep.Expected)
	require.Zero(t, rep.LossRatio)
	require.Empty(t, rep.Errors)
}

func TestConnectFailuresAreCounted(t *testing.T) {
	t.Parallel()
	// Rooms of 4 on a server whose rooms hold 2: half the joins fail.
	srv, err := relay.New(relay.Config{MaxPlayersPerRoom: 2})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		_ = srv.Close()
	})
	cfg := testConfig(t, "ws"+strings.TrimPrefix(hs.URL, "http"))
	cfg.Duration = 200 * time.Millisecond
	cfg.Warmup = 0
	rep := runWithTimeout(t, cfg)
	require.Zero(t, rep.Connected)
	require.Equal(t, int64(16), rep.Errors["join:invalid_argument"], "errors: %v", rep.Errors)

	cfg.URL = "ws://" + closedAddr(t) + "/ws"
	rep = runWithTimeout(t, cfg)
	require.Equal(t, int64(16), rep.Errors["dial:refused"], "errors: %v", rep.Errors)
}

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// The command as a whole: flags in, summary, JSON and plot out.
func TestMainWritesReportAndPlot(t *testing.T) {
	t.Parallel()
	url := testServers[1].start(t)
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "report.json")
	plotPath := filepath.Join(dir, "latency.svg")
	var stdout, stderr bytes.Buffer
	code := mainWithArgs([]string{
		"-url", url, "-clients", "8", "-room-size", "4", "-rate", "50",
		"-duration", "1s", "-warmup", "200ms", "-ramp", "0",
		"-json", jsonPath, "-plot", plotPath, "-max-loss", "0",
		"-local-addrs", "127.0.0.1,127.0.0.2",
	}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	require.Contains(t, stderr.String(), "latency   p50")

	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for _, k := range []string{"clients", "connected", "room_size", "rate", "payload", "duration_s", "sent",
		"expected", "delivered", "loss_ratio", "duplicates", "out_of_order", "delivered_per_sec", "latency_ms",
		"errors", "client_cpu_s"} {
		require.Contains(t, m, k)
	}
	for _, k := range []string{"p50", "p90", "p99", "p999", "max"} {
		require.Contains(t, m["latency_ms"], k)
	}
	require.Equal(t, float64(8), m["connected"])
	// The exported distribution decodes to the one the percentiles came from.
	enc, ok := m["latency_hist"].(string)
	require.True(t, ok, "latency_hist is a string")
	h, err := hdrhistogram.Decode([]byte(enc))
	require.NoError(t, err)
	require.Equal(t, m["latency_ms"].(map[string]any)["max"], float64(h.Max())/1000)

	svg, err := os.ReadFile(plotPath)
	require.NoError(t, err)
	require.Contains(t, string(svg), "<svg")
}

func TestMainRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-payload", "8"},
		{"-clients", "0"},
		{"-local-addrs", "not-an-ip"},
		{"-run-id", "has space"},
		{"-no-such-flag"},
		{"-protocol", "mqtt"},
		{"-protocol", "centrifugo", "-payload", "16"}, // no room for the sender's number
		{"-protocol", "centrifugo", "-immediate"},
		{"-chaos", "-1"},
		{"-chaos", "2", "-chaos-personas", "burst,nosuch"},
		{"-protocol", "centrifugo", "-payload", "24", "-chaos", "2"}, // chaos clients speak tickrelay
		{"extra-arg"},
	} {
		var stderr bytes.Buffer
		require.Equal(t, 2, mainWithArgs(args, &bytes.Buffer{}, &stderr), "args %q", args)
	}
}

// TestServerPIDsSummed samples this test process as the server twice
// (-server-pid and -server-pids) and once as the broker: the server's
// figures are the sum over its processes, the broker's its own.
func TestServerPIDsSummed(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, startBaseline(30)(t))
	me := os.Getpid()
	cfg.ServerPID, cfg.ServerPIDs, cfg.BrokerPID = me, strconv.Itoa(me), me
	rep := runWithTimeout(t, cfg).Report
	require.NotNil(t, rep.Server)
	require.NotNil(t, rep.Broker)
	require.Equal(t, []int{me, me}, rep.Server.PIDs)
	require.Empty(t, rep.Broker.PIDs)
	require.Equal(t, me, rep.Broker.PID)
	// Two readings of one process against one: about twice, whatever it
	// allocated between them.
	require.Greater(t, rep.Server.RSSBeforeKiB, rep.Broker.RSSBeforeKiB)
	require.Greater(t, rep.Server.HWMKiB, rep.Broker.HWMKiB)
	require.Positive(t, rep.Broker.CPUS)
}
