package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// -mode lockstep against the relay: every client gets one InputSet per
// tick, nearly all of its inputs make their tick, and the report has the
// lockstep section.
func TestLockstepMode(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, startRelay(t))
	cfg.Mode = modeLockstep
	cfg.TickRate = 30
	rep := runWithTimeout(t, cfg)
	require.Equal(t, cfg.Clients, rep.Connected)
	require.Empty(t, rep.Errors)
	ls := rep.Lockstep
	require.NotNil(t, ls)
	require.Equal(t, modeLockstep, rep.Mode)
	// About 2 s x 30 Hz x 16 clients; the window's edges cut a tick or two.
	require.InDelta(t, 2*30*cfg.Clients, float64(ls.InputSets), float64(4*cfg.Clients))
	require.Equal(t, ls.InputSets, rep.Delivered)
	require.Greater(t, ls.Flags["client"], 10*ls.Flags["replaced_by_server"])
	require.Positive(t, ls.LeadMs.P50)
	require.GreaterOrEqual(t, ls.InputDelayTicks.Mean, 1.0)
	require.Positive(t, rep.LatencyMs.P50, "input delay in ms")

	b, err := report.Encode(rep.Report)
	require.NoError(t, err)
	back, err := report.Decode(b)
	require.NoError(t, err)
	require.Equal(t, ls.InputSets, back.Lockstep.InputSets)
}

func TestLockstepModeValidated(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, "ws://127.0.0.1:1/ws")
	cfg.Mode = modeLockstep
	cfg.Immediate = true
	require.Error(t, cfg.validate())
	cfg.Immediate, cfg.InputDelay = false, 0
	require.Error(t, cfg.validate())
	cfg.Mode = "bogus"
	require.Error(t, cfg.validate())
}
