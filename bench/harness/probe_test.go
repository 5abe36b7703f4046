package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// The cross-check of client-sim's server figures against the harness's own
// /proc reads: an earlier VmHWM a little above a later one is how Linux
// reports it (a run of 2026-12-03 saw 16,224 against 16,112 KiB); more than
// the slack, or a CPU or RSS mismatch, is flagged.
func TestCheckProbe(t *testing.T) {
	t.Parallel()
	probe := Probe{RSSBeforeKiB: 15000, CPUWholeS: 10, HWMKiB: 16112}
	sim := func(hwm int64, cpu float64, before int64) report.Report {
		return report.Report{Server: &report.Server{HWMKiB: hwm, CPUS: cpu, RSSBeforeKiB: before}}
	}
	require.Empty(t, checkProbe(sim(16224, 9, 15100), probe))
	require.Empty(t, checkProbe(sim(16112+hwmSlackKiB, 10.02, 15000), probe))
	require.Contains(t, checkProbe(sim(16112+hwmSlackKiB+1, 9, 15000), probe), "HWM: client-sim")
	require.Contains(t, checkProbe(sim(16000, 10.5, 15000), probe), "window CPU")
	require.Contains(t, checkProbe(sim(16000, 9, 18000), probe), "RSS before")
	require.Equal(t, "client-sim reported no server figures", checkProbe(report.Report{}, probe))
}

// A refused upgrade is counted by client-sim three times (its Error, its
// close, its failed Join); the figures are per connection. The errors are
// round 1 of S4 in the full run of 2026-12-03, where one Join saw its
// connection end before the close code.
func TestOverLimitClassify(t *testing.T) {
	t.Parallel()
	o := OverLimit{Errors: map[string]int64{"disconnect:4002": 428, "join:closed_4002": 427, "join:closed": 1, "server_error:server_full": 428, "dial:http_503": 5}}
	o.classify()
	require.Equal(t, int64(428), o.Refused4002)
	require.Equal(t, int64(428), o.ServerFull)
	require.Equal(t, int64(5), o.Refused503)
	require.Empty(t, o.OtherErrors)

	// Closes without their Error, failed Joins beyond the closes and other
	// kinds stay visible.
	o = OverLimit{Errors: map[string]int64{"disconnect:4002": 10, "server_error:server_full": 7, "join:closed_4002": 10, "join:closed": 3, "dial:reset": 2}}
	o.classify()
	require.Equal(t, int64(10), o.Refused4002)
	require.Equal(t, int64(7), o.ServerFull)
	require.Equal(t, map[string]int64{"join:closed": 3, "dial:reset": 2}, o.OtherErrors)
}

// A results.json of the harness before it kept the raw errors (12f153d) is
// judged by the current rules once its counts are put back together.
func TestOverLimitFromAnOlderHarness(t *testing.T) {
	t.Parallel()
	o := OverLimit{Refused4002: 427, Refused503: 5, OtherErrors: map[string]int64{"disconnect:4002": 428, "join:closed": 1, "server_error:server_full": 428}}
	o.restoreErrors()
	o.classify()
	require.Equal(t, int64(428), o.Refused4002)
	require.Equal(t, int64(428), o.ServerFull)
	require.Equal(t, int64(5), o.Refused503)
	require.Empty(t, o.OtherErrors)

	var none OverLimit
	none.restoreErrors()
	none.classify()
	require.Zero(t, none.Refused4002)
	require.Empty(t, none.OtherErrors)
}
