package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// -mode lockstep against the relay: the clients get InputSets and their
// inputs make it into them, and the report has the lockstep section. No
// timing thresholds: on a loaded machine many inputs may come late.
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
	require.Positive(t, ls.InputSets)
	require.Equal(t, ls.InputSets, rep.Delivered)
	require.Positive(t, ls.Flags["client"])
	require.Zero(t, ls.Flags["not_present"]+ls.Flags["repeated"])
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
