package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
)

// resumeConfig is a small S1: rooms of 8 at 20 msg/s in 30 Hz rooms, with
// a tenth of the connections cut every 300 ms.
func resumeConfig(t *testing.T, url string) Config {
	cfg := testConfig(t, url)
	cfg.Clients = 40
	cfg.RoomSize = 8
	cfg.TickRate = 30
	cfg.Duration = 3 * time.Second
	cfg.Drain = 10 * time.Second
	cfg.FaultCutFraction = 0.1
	cfg.FaultCutEvery = 300 * time.Millisecond
	return cfg
}

func runResume(t *testing.T, cfg Config) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := run(ctx, cfg)
	require.NoError(t, err)
	var b strings.Builder
	writeSummary(&b, rep.Report)
	t.Log(b.String())
	return rep
}

// The relay directly behind the fault proxy, and behind a proxy that also
// splits every write into random pieces (internal/splitproxy): replays and
// re-sent inputs arrive in pieces too.
func TestResumeThroughCutsLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	for _, split := range []bool{false, true} {
		name := "direct"
		if split {
			name = "split writes"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := startRelay(t)
			if split {
				addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
				url = "ws://" + splitproxy.ForTest(t, addr, nil).Addr() + "/ws"
			}
			cfg := resumeConfig(t, url)
			cfg.Resume = true
			checkResumed(t, runResume(t, cfg))
		})
	}
}

// Every connection cut at once, twice: a small resume storm.
func TestResumeStormLosesAndDuplicatesNothing(t *testing.T) {
	t.Parallel()
	cfg := resumeConfig(t, startRelay(t))
	cfg.Resume = true
	cfg.FaultCutFraction = 1
	cfg.FaultCutEvery = 1500 * time.Millisecond
	rep := runResume(t, cfg)
	checkResumed(t, rep)
	require.GreaterOrEqual(t, rep.Resume.Cuts, uint64(40), "every connection cut at least once")
}

func checkResumed(t *testing.T, rep result) {
	t.Helper()

	require.Equal(t, 40, rep.Connected)
	rs := rep.Resume
	require.NotNil(t, rs)
	require.True(t, rs.Enabled)
	require.Positive(t, rs.Cuts, "the proxy cut connections")
	require.Positive(t, rs.Disconnects)
	require.Equal(t, rs.Disconnects, uint64(rs.Recovered), "every lost connection was resumed with its seat")
	require.Equal(t, rs.Recovered, rs.Reconnects)
	require.Zero(t, rs.Resyncs)
	require.Zero(t, rs.InputsLost)
	require.Zero(t, rs.SessionsEnded)
	require.Positive(t, rs.ResumeMs.Max)

	require.Equal(t, rep.Sent*7, rep.Expected, "each send reaches the 7 other members")
	require.Zero(t, rep.Lost, "nothing lost: delivered %d of %d", rep.Delivered, rep.Expected)
	require.Equal(t, rep.Expected, rep.Delivered)
	require.Zero(t, rep.Duplicates)
	require.Zero(t, rep.OutOfOrder)
	require.Zero(t, rep.ReceiversWithLoss)
	require.Empty(t, rep.Errors)
}

func TestCutsWithoutResumeLoseMessages(t *testing.T) {
	t.Parallel()
	cfg := resumeConfig(t, startRelay(t))
	cfg.Drain = 2 * time.Second
	rep := runResume(t, cfg)

	rs := rep.Resume
	require.NotNil(t, rs, "the fault proxy's figures are reported without -resume too")
	require.False(t, rs.Enabled)
	require.Positive(t, rs.Cuts)
	require.Zero(t, rs.Reconnects)
	require.Positive(t, rep.Lost, "cut clients are gone for good")
	require.Positive(t, rep.Errors["disconnect:1006"], "errors: %v", rep.Errors)
}

func TestSeveralURLsSpreadTheClients(t *testing.T) {
	t.Parallel()
	a, srvA := startRelayWith(t, nil)
	b, srvB := startRelayWith(t, nil)
	cfg := testConfig(t, a+" , "+b)
	cfg.Clients = 16
	cfg.Resume = true
	cfg.Drain = time.Second
	var open [2]int
	cfg.hooks.midWindow = func(*sim) { open = [2]int{srvA.OpenConnections(), srvB.OpenConnections()} }
	rep := runWithTimeout(t, cfg)
	require.Equal(t, 16, rep.Connected)
	require.Equal(t, [2]int{8, 8}, open, "round-robin over the URLs")
	// Without a cluster each relay has its own rooms of the same ids, with
	// half the members each: part of what is expected cannot arrive.
	require.Positive(t, rep.Delivered)
	require.Zero(t, rep.Duplicates)
}
