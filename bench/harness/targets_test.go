package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// encodedHist is a client-sim latency export of the given microsecond
// values.
func encodedHist(t *testing.T, us ...int64) string {
	t.Helper()
	h := report.NewHistogram()
	for _, v := range us {
		require.NoError(t, h.RecordValue(v))
	}
	return report.EncodeHistogram(h)
}

// fakeRun is a successful run with the figures the targets look at.
func fakeRun(t *testing.T, sc, sys string, round int, usPerDelivery, p99, kibPerConn float64) Run {
	rep := report.Report{Clients: 1000, Connected: 1000, DurationS: 30, ClientCores: 0.4,
		LatencyMs: report.Percentiles{P50: p99 / 2, P99: p99, P999: p99 * 1.2, Max: p99 * 1.5}, Errors: map[string]int64{},
		Server: &report.Server{Cores: 0.3, CPUUsPerDelivery: usPerDelivery, RSSBeforeKiB: 12000, RSSAfterJoinKiB: 16000,
			RSSEndKiB: 18000, HWMKiB: 18000, KiBPerConnection: kibPerConn}}
	if usPerDelivery > 0 {
		rep.Expected, rep.Delivered = 4_200_000, 4_200_000
		rep.LatencyHist = encodedHist(t, int64(p99*500), int64(p99*1000))
	}
	return Run{Scenario: sc, System: sys, Round: round, Report: rep, Probe: Probe{MachineBusyCores: 1.25}}
}

func fakeResults(t *testing.T) *Results {
	r := &Results{Mode: "full", Rounds: 3, Commands: map[string]string{}, Started: time.Unix(1_800_000_000, 0), Finished: time.Unix(1_800_001_800, 0),
		Env: Env{NProc: 2, CPUModel: "AMD EPYC", GoVersion: "go1.26.8", Commit: "abc1234+dirty", Sysctl: map[string]string{
			"net.ipv4.tcp_wmem": "4096 16384 4194304", "net.ipv4.tcp_rmem": "4096 131072 33554432", "net.ipv4.tcp_mem": "1 2 575796",
			"net.ipv4.ip_local_port_range": "32768 60999", "fs.nr_open": "1048576"}}}
	full := fullPlan()
	for _, sc := range full.Scenarios {
		sc.Load = Load{Clients: 1000, RoomSize: 8, Rate: 20, Payload: 64, Warmup: 5 * time.Second, Duration: 30 * time.Second}
		if sc.ID == "s3" || sc.ID == "s4" {
			sc.Load.Rate = 0
		}
		if sc.ID == "s5" {
			sc.Load.Clients, sc.Load.Rate = 200, 10
		}
		if sc.ID == soakID {
			sc.Load.Chaos = 100
		}
		r.Scenarios = append(r.Scenarios, sc)
	}
	for round := 1; round <= 3; round++ {
		d := float64(round) * 0.01 // a little spread between rounds
		r.Runs = append(r.Runs,
			fakeRun(t, "s1", refRelay, round, 2.0+d, 35, 4),
			fakeRun(t, "s1", refNoAdmin, round, 1.95+d, 35, 4),
			fakeRun(t, "s1", baseImm, round, 8.0, 80, 33),
			fakeRun(t, "s1", base30, round, 4.6, 37, 34),
			fakeRun(t, "s2", refRelay, round, 0.37, 35, 8),
			fakeRun(t, "s2", baseImm, round, 2.0, 90, 37),
			fakeRun(t, "s2", base30, round, 0.74, 41, 37),
			fakeRun(t, "s3", refRelay, round, 0, 0, 2.5),
			fakeRun(t, "s3", baseImm, round, 0, 0, 33),
			fakeRun(t, "s3", base30, round, 0, 0, 33),
			fakeRun(t, "s1", refFloor, round, 1.9, 34, 3.5),
			fakeRun(t, "s1", refCentrifugo, round, 25, 9, 40),
			fakeRun(t, "s1", refImm, round, 6, 4, 4),
			fakeRun(t, "s2", refFloor, round, 0.36, 34, 7),
			fakeRun(t, "s2", refCentrifugo, round, 1.2, 400, 40),
			fakeRun(t, "s3", refFloor, round, 0, 0, 1.0),
			fakeRun(t, "s3", refCentrifugo, round, 0, 0, 60),
			fakeRun(t, "s5", refRelay, round, 4.0, 36, 4),
			fakeRun(t, "s5", refFloor, round, 3.0, 35, 3),
			fakeRun(t, "s5", refCentrifugo, round, 20, 2, 40),
			fakeRun(t, "s5", base30, round, 6.0, 36, 30),
		)
		r.Runs = append(r.Runs, fakeSoakRun(t, refRelay, round, 36, 40_000), fakeSoakRun(t, refNoChaos, round, 34, 30_000))
		s4 := fakeRun(t, "s4", refRelay, round, 0, 0, 1.6)
		s4.Reach = &ReachFigures{HoldProcs: 4, Attempted: 19000, Held: 19000, JoinS: 2, JoinRate: 9500, KiBPerConn: 1.6, KiBPerConnSettled: 1.7,
			RSSBeforeKiB: 12800, OpenFileLimit: 20000, MaxConnections: 19872, IdleCores: 0.004, KernelKiBPerSocket: 4.1,
			Over: &OverLimit{Attempted: 1300, Accepted: 872, Refused503: 428, ConnsOpen: 19872}}
		r.Runs = append(r.Runs, s4)
	}
	return r
}

// fakeSoakRun is a soak run: with chaos clients (refRelay) or without.
func fakeSoakRun(t *testing.T, sys string, round int, p99 float64, hwmKiB int64) Run {
	run := fakeRun(t, soakID, sys, round, 2.5, p99, 4)
	run.Probe.HWMKiB = hwmKiB
	run.Probe.RSSBeforeKiB, run.Probe.RSSPeakKiB, run.Probe.RSSEveryS = 12_000, hwmKiB-500, 0.5
	run.Probe.RSSTimelineKiB = []int64{12_000, hwmKiB - 2000, hwmKiB - 500, hwmKiB - 1000}
	run.Relay = &RelayFigures{Closes: map[string]float64{}, ReleasedS: 0.2}
	if sys == refRelay {
		run.Relay.Closes = map[string]float64{"rate_limited": 40, "slow_message": 9, "protocol_error": 55, "slow_consumer": 30}
		run.Relay.HandshakeFailures = map[string]float64{"timeout": 20, "http_400": 56}
		run.Report.Chaos = &report.Chaos{Clients: 100, Connections: 20_000, AllDocumented: true, Personas: []report.ChaosPersona{
			{Persona: "burst", Clients: 13, Connections: 60, Finished: 47, Documented: 47, Unfinished: 13,
				Outcomes: map[string]int64{"error:rate_limited+close:4003": 47, "unfinished": 13}, Errors: map[string]int64{"rate_limited": 900},
				RetryAfterMs: &report.Range{Min: 1, Max: 33}, CloseRetryAfterMs: &report.Range{}, AnsweredAfterMs: report.Percentiles{P50: 6000, Max: 6500},
				AnsweredAfterHist: encodedHist(t, 6_000_000, 6_500_000)},
			{Persona: "trickle", Clients: 12, Connections: 36, Finished: 24, Documented: 24, Unfinished: 12,
				Outcomes: map[string]int64{"error:timeout+close:4004": 24, "unfinished": 12}},
		}}
	}
	return run
}

func targetByPrefix(t *testing.T, ts []Target, prefix string) Target {
	t.Helper()
	for _, x := range ts {
		if strings.HasPrefix(x.What, prefix) {
			return x
		}
	}
	t.Fatalf("no target %q", prefix)
	return Target{}
}

func TestEvaluateTargets(t *testing.T) {
	t.Parallel()
	r := fakeResults(t)
	ts := evaluateTargets(r)
	status := map[string]string{}
	for _, x := range ts {
		status[x.What] = x.Status
	}
	// 2.02/8 = 0.25 <= 1/3: met; S2 0.37/2.0 = 0.185 > 1/8: missed by
	// 48%.
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S1 server CPU per delivery, relay 30 Hz / baseline immediate").Status)
	s2 := targetByPrefix(t, ts, "S2 server CPU per delivery, relay 30 Hz / baseline immediate")
	require.Equal(t, statusMissed, s2.Status)
	require.Equal(t, "over by 48% (1.48x the limit)", s2.Margin)
	// Against the floor: S1 2.02/1.9 = 1.063 <= 1.10; S2 0.37/0.36 =
	// 1.028 <= 1.05; S5 4/3 = 1.33 > 1.15.
	r1 := targetByPrefix(t, ts, "S1 server CPU per delivery, relay / reference")
	require.Equal(t, statusMet, r1.Status)
	require.Equal(t, "1.063 (rounds 1.058–1.068)", r1.Measured)
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S2 server CPU per delivery, relay / reference").Status)
	require.Equal(t, statusMissed, targetByPrefix(t, ts, "S5 (low load) server CPU per delivery, relay / reference").Status)
	// Against Centrifugo: S1 2.02/25 met; S2 0.37/1.2 = 0.31 > 1/4.
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S1 server CPU per delivery, relay / Centrifugo").Status)
	c2 := targetByPrefix(t, ts, "S2 server CPU per delivery, relay / Centrifugo")
	require.Equal(t, statusMissed, c2.Status)
	require.Contains(t, c2.Measured, "= 1/3.2")
	l1 := targetByPrefix(t, ts, "S1 latency p99, relay 30 Hz")
	require.Equal(t, statusMet, l1.Status)
	require.Equal(t, "≤ 38.3 ms (one 30 Hz tick + 5 ms)", l1.Required)
	require.Contains(t, l1.Measured, "machine busy 1.25 of 2 cores")
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S5 latency p99, relay 30 Hz").Status)
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S1 latency p99, relay immediate").Status)
	s3 := targetByPrefix(t, ts, "S3 server memory per idle connection, relay")
	require.Equal(t, statusMissed, s3.Status)
	require.Equal(t, "over by 67% (1.67x the limit)", s3.Margin)
	require.Equal(t, statusMissed, targetByPrefix(t, ts, "S3 memory per idle connection, relay / reference").Status) // 2.5/1.0
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S3 memory per connection, relay / Centrifugo").Status)        // 2.5/60
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S1 reference relay (instrument check)").Status)
	for _, x := range ts {
		require.NotContains(t, x.What, "relay 30 Hz / baseline 30 Hz", "superseded by the reference relay (issue 17)")
	}
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S3 memory per connection, relay / baseline immediate").Status)
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S4 idle connections").Status)
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S4 past -max-connections").Status)
	mc := targetByPrefix(t, ts, "S1 metrics cost")
	require.Equal(t, statusMet, mc.Status)
	require.Contains(t, mc.Measured, "+2.5%")
	require.Equal(t, statusMet, targetByPrefix(t, ts, "S1 relay 30 Hz: delivery").Status)

	// The soak: 36/34 = 1.059 <= 1.10; every chaos connection documented;
	// +10,000 KiB against a bound of 100 x 5.1 MiB.
	require.Equal(t, statusMet, targetByPrefix(t, ts, "SOAK honest clients").Status)
	lat := targetByPrefix(t, ts, "Soak honest latency p99")
	require.Equal(t, statusMet, lat.Status)
	require.Equal(t, "1.059 (rounds 1.059–1.059)", lat.Measured)
	ch := targetByPrefix(t, ts, "Soak chaos clients")
	require.Equal(t, statusMet, ch.Status, ch.Margin)
	require.Equal(t, "3 rounds: 60,000 chaos connections, 213 finished, 0 undocumented, 75 still waiting at the end (not judged)", ch.Measured)
	mem := targetByPrefix(t, ts, "Soak relay memory")
	require.Equal(t, statusMet, mem.Status)
	require.Contains(t, mem.Required, "+512 MiB")
	require.Contains(t, mem.Measured, "39.1 MiB beside chaos, 29.3 MiB clean")
}

func TestTargetsFailuresAndGaps(t *testing.T) {
	t.Parallel()
	r := fakeResults(t)
	for i := range r.Runs {
		run := &r.Runs[i]
		switch {
		case run.Scenario == "s1" && run.System == refRelay && run.Round == 2:
			run.Report.Delivered -= 10 // loss in one round
			run.Report.OutOfOrder = 3
		case run.Scenario == "s2" && run.System == refRelay && run.Round == 3:
			run.Err = "client-sim: exit status 1"
		case run.Scenario == "s4" && run.Round == 1:
			run.Reach.Over.Refused503 = 400 // 28 refused some other way
			run.Reach.Over.OtherErrors = map[string]int64{"dial:reset": 28}
		case run.Scenario == "s4" && run.Round == 2:
			run.Reach.Over.Refused503, run.Reach.Over.Refused4002, run.Reach.Over.ServerFull = 400, 28, 20
		case run.Scenario == soakID && run.System == refRelay && run.Round == 1:
			// One burster closed with the wrong code, and the memory far
			// over the caps.
			p := &run.Report.Chaos.Personas[0]
			p.Documented, p.Undocumented = 46, 1
			p.Violations = []string{"burst: error:timeout+close:4004 after 2s: not closed with Error RATE_LIMITED and 4003"}
			run.Probe.HWMKiB = 900_000
		case run.Scenario == soakID && run.System == refRelay && run.Round == 2:
			run.Relay.ConnsOpen, run.Relay.ReleasedS = 3, -1
		case run.Scenario == soakID && run.System == refRelay && run.Round == 3:
			run.Report.Chaos.Personas[1].Finished, run.Report.Chaos.Personas[1].Documented = 0, 0
		}
	}
	// A scenario that did not run at all.
	var kept []Run
	for _, run := range r.Runs {
		if run.System != refNoAdmin {
			kept = append(kept, run)
		}
	}
	r.Runs = kept
	ts := evaluateTargets(r)
	d1 := targetByPrefix(t, ts, "S1 relay 30 Hz: delivery")
	require.Equal(t, statusMissed, d1.Status)
	require.Contains(t, d1.Margin, "short by 10 deliveries")
	require.Contains(t, d1.Margin, "3 out of order")
	d2 := targetByPrefix(t, ts, "S2 relay 30 Hz: delivery")
	require.Equal(t, statusMissed, d2.Status)
	require.Contains(t, d2.Margin, "1 of 3 runs failed")
	over := targetByPrefix(t, ts, "S4 past -max-connections")
	require.Equal(t, statusMissed, over.Status)
	require.Contains(t, over.Margin, "1256 of 1284 refusals were 503s")
	require.Contains(t, over.Margin, "8 closes 4002 without Error{SERVER_FULL} before them")
	require.Equal(t, statusNotRun, targetByPrefix(t, ts, "S1 metrics cost").Status)
	ch := targetByPrefix(t, ts, "Soak chaos clients")
	require.Equal(t, statusMissed, ch.Status)
	require.Contains(t, ch.Margin, "round 1: burst: 1 of 47 finished connections got an undocumented answer")
	require.Contains(t, ch.Margin, "round 2: 3 connections still open")
	require.Contains(t, ch.Margin, "round 3: trickle: no connection finished")
	mem := targetByPrefix(t, ts, "Soak relay memory")
	require.Equal(t, statusMissed, mem.Status)
	require.Equal(t, "1 round(s) over the bound", mem.Margin)

	// The failed S2 round drops out of its medians instead of counting
	// as zero.
	require.Equal(t, []float64{0.37, 0.37}, finite(r.byRound("s2", refRelay, figUsPerDelivery)))
}

func TestRenderAndPublish(t *testing.T) {
	t.Parallel()
	r := fakeResults(t)
	r.Micro = &MicroResult{Command: "go test -bench .", Benchmarks: []MicroBench{{Pkg: "github.com/tickrelay/tickrelay/room", Name: "BenchmarkTickBuild/players=8", Runs: 1,
		Metrics: []MicroMetric{{Unit: "ns/op", Median: 1400, Min: 1400, Max: 1400}}}}}
	r.Profiles = []Profile{{Scenario: "s1", System: refRelay, Seconds: 15, File: "bench/out/full/s1.pprof",
		Header: []string{"Duration: 15s"}, Flat: []ProfileRow{{Flat: "1s", FlatPct: "70%", SumPct: "70%", Cum: "1s", CumPct: "70%", Name: "syscall"}}}}

	md := renderMain(r)
	for _, want := range []string{
		"### Targets", "### S1 small rooms", "### S2 big rooms", "### S3 idle", "### S4 reach", "#### Projection to 1,000,000 connections",
		"### Metrics cost (issue 6)", "### CPU profiles of the relay", "`relay-30hz` / `baseline-imm`", "abc1234+dirty",
		"| `relay-30hz` | 3/3 | 100.000% | 0 / 0 |", "19,872 (limit − 128)",
		"### Side by side", "### S5 low load", "`relay-30hz` / `reference-30hz`", "`relay-30hz` / `centrifugo`",
		"| S1 small rooms | server µs/delivery | 2.02 | 1.90 | 25.00 | 4.60 | 1.063 (1.058–1.068) |",
		"| S3 idle | server KiB per connection | 2.50 | 1.00 | 60.00 | 33.00 | 2.500 | 0.042 | 0.076 |",
		"### Soak: S1 beside chaos clients", "beside them 100 chaos clients",
		"Chaos clients beside `relay-30hz`, 3 round(s) together: 300 clients, 60,000 connections; every finished chaos connection got its documented answer",
		"| `burst` | 39 | 180 | 141 | 0 | 39 | error:rate_limited+close:4003 141, unfinished 39 | rate_limited 2,700 | 1–33 | 0–0 |",
		"| `relay-30hz` | 1 | protocol_error 55, rate_limited 40, slow_consumer 30, slow_message 9 | http_400 56, timeout 20 | 0 after 0.2 s |",
		"| `relay-30hz-nochaos` | 1 | none | none | 0 after 0.2 s |",
		"| `relay-30hz` | 1 | 11.7 | 38.6 | 38.6 | 38.1 | 39.1 | 4 every 0.5 s |",
		"`relay-30hz` / `relay-30hz-nochaos`",
	} {
		require.Contains(t, md, want)
	}

	dir := t.TempDir()
	results := filepath.Join(dir, "RESULTS.md")
	handWritten := "# Results\n\n" + beginMain + "\nstale\n" + endMain + "\n\n## Analysis\n\nwritten by a person\n\n" + beginMicro + "\nstale micro\n" + endMicro + "\n\n## room micro-benchmarks\n\nalso by a person\n"
	require.NoError(t, os.WriteFile(results, []byte(handWritten), 0o644))
	p := Plan{ResultsFile: results, PlotsDir: filepath.Join(dir, "plots")}
	require.NoError(t, publish(r, p, false))
	b, err := os.ReadFile(results)
	require.NoError(t, err)
	doc := string(b)
	require.NotContains(t, doc, "stale")
	require.Contains(t, doc, "## Analysis\n\nwritten by a person\n")
	require.Contains(t, doc, "## room micro-benchmarks\n\nalso by a person\n")
	require.Contains(t, doc, "BenchmarkTickBuild/players=8")
	require.Contains(t, doc, "![S1 small rooms latency](plots/s1-latency.svg)")
	svg, err := os.ReadFile(filepath.Join(dir, "plots", "s1-latency.svg"))
	require.NoError(t, err)
	require.Contains(t, string(svg), "<svg")
	for _, sys := range []string{refRelay, refFloor, refCentrifugo, baseImm, base30} {
		require.Contains(t, string(svg), sys, "every system is on the chart")
	}
	_, err = os.Stat(filepath.Join(dir, "plots", "s3-latency.svg"))
	require.Error(t, err, "idle scenarios have no latency plot")

	// Rendering twice gives the same file: regeneration is stable.
	require.NoError(t, publish(r, p, false))
	b2, err := os.ReadFile(results)
	require.NoError(t, err)
	require.Equal(t, doc, string(b2))

	// Saved results render the same after a JSON round trip.
	js := filepath.Join(dir, "results.json")
	require.NoError(t, saveResults(r, js))
	back, err := loadResults(js)
	require.NoError(t, err)
	require.Equal(t, renderMain(r), renderMain(back), "render after reload")
}
