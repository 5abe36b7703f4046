package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tickrelay/tickrelay/client-sim/procstat"
	"github.com/tickrelay/tickrelay/client-sim/report"
)

// Run is one scenario against one system in one round: a fresh server
// process, one client-sim run (several processes for S4), the figures.
type Run struct {
	Scenario string        `json:"scenario"`
	System   string        `json:"system"`
	Round    int           `json:"round"` // from 1
	Order    int           `json:"order"` // position within the round
	Start    time.Time     `json:"start"`
	WallS    float64       `json:"wall_s"`
	Report   report.Report `json:"report"`
	// Probe is the harness's own reading of the server's /proc, taken
	// around the client-sim process: a cross-check of -server-pid.
	Probe        Probe `json:"probe"`
	Scrapes      int64 `json:"scrapes,omitempty"`
	ScrapeErrors int64 `json:"scrape_errors,omitempty"`
	// Relay is the relay's own account of the run, from its /metrics once
	// client-sim has exited (relay systems with the admin API on).
	Relay *RelayFigures `json:"relay,omitempty"`
	Reach *ReachFigures `json:"reach,omitempty"`
	Err   string        `json:"error,omitempty"`
}

// RelayFigures are counters the relay keeps of a run, read from GET
// /metrics after client-sim exited.
type RelayFigures struct {
	// Closes is tickrelay_server_closes_total by cause (the names of the
	// close-code table: rate_limited, slow_consumer, slow_message, ...).
	Closes map[string]float64 `json:"closes,omitempty"`
	// HandshakeFailures is tickrelay_handshake_failures_total by reason.
	HandshakeFailures map[string]float64 `json:"handshake_failures,omitempty"`
	// ConnsOpen is tickrelay_connections_open once every client is gone:
	// 0 when the relay let every connection go; ReleasedS how long after
	// client-sim's exit it read 0 (-1: not within releaseWait).
	ConnsOpen float64 `json:"conns_open"`
	ReleasedS float64 `json:"released_s"`
	// Cluster is every tickrelay_cluster_*_total counter of a cluster node
	// (link gaps by direction as link_gaps_total{direction}), summed over
	// the nodes: what went wrong between them.
	Cluster map[string]float64 `json:"cluster,omitempty"`
}

// Probe is what the harness read from /proc itself.
type Probe struct {
	RSSBeforeKiB int64   `json:"rss_before_kib"` // just before client-sim started
	CPUWholeS    float64 `json:"cpu_whole_s"`    // server CPU over the whole client-sim process
	SimWallS     float64 `json:"sim_wall_s"`
	RSSEndKiB    int64   `json:"rss_end_kib"` // after client-sim exited
	HWMKiB       int64   `json:"hwm_kib"`
	// WindowUserS and WindowSysS split the server's CPU into user and
	// kernel time over client-sim's measured window as its progress lines
	// show it (first "measure" line to the first line after them: each up
	// to a second late), for the kernel's share; zero when not seen.
	WindowUserS float64 `json:"window_user_s,omitempty"`
	WindowSysS  float64 `json:"window_sys_s,omitempty"`
	// MachineBusyCores is the whole machine's busy CPU (/proc/stat: all
	// but idle and iowait) over the same window, in cores: server,
	// client-sim and whatever else ran; zero when not seen.
	MachineBusyCores float64 `json:"machine_busy_cores,omitempty"`
	// Check is empty when client-sim's -server-pid figures agree with
	// these, else what disagreed.
	Check string `json:"check,omitempty"`
	// RSSTimelineKiB is the server's RSS every RSSEveryS seconds from
	// client-sim's start to its exit; RSSPeakKiB its largest value.
	RSSEveryS      float64 `json:"rss_every_s,omitempty"`
	RSSTimelineKiB []int64 `json:"rss_timeline_kib,omitempty"`
	RSSPeakKiB     int64   `json:"rss_peak_kib,omitempty"`
}

// ok says whether the run produced figures.
func (r Run) ok() bool { return r.Err == "" }

// bins are the binaries a run uses. A server binary that could not be
// built is "", with the reason in missing (by kind).
type bins struct {
	relay, baseline, reference, centrifugo, sim string
	nats                                        string // the cluster systems' NATS server
	missing                                     map[string]string
}

// binOf is the server binary of sys.
func (b bins) binOf(sys System) string {
	switch sys.Kind {
	case kindBaseline:
		return b.baseline
	case kindReference:
		return b.reference
	case kindCentrifugo:
		return b.centrifugo
	}
	return b.relay
}

// harness runs a Plan.
type harness struct {
	proc   procstat.Reader
	root   string
	plan   Plan
	procs  *procSet
	bins   bins
	outDir string
	logDir string
	runDir string
	log    io.Writer
	res    *Results
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.log, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// runScenario runs sc against each of its systems, Rounds times, in the
// order A B C A B C ... with the starting system rotated each round, so
// that no system always runs first (after a pause) or last.
func (h *harness) runScenario(ctx context.Context, sc Scenario) error {
	for round := 1; round <= h.plan.Rounds; round++ {
		n := len(sc.Systems)
		for k := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := sc.Systems[(k+round-1)%n]
			sys, err := systemByName(name)
			if err != nil {
				return err
			}
			var run Run
			if sc.Reach {
				run = h.runReach(ctx, sc, sys, round, k)
			} else {
				run = h.runOne(ctx, sc, sys, round, k)
			}
			h.res.Runs = append(h.res.Runs, run)
			h.saveRun(run)
			h.logf("%s round %d/%d %-18s %s", sc.ID, round, h.plan.Rounds, sys.Name, runSummary(run))
			if ctx.Err() != nil {
				return ctx.Err()
			}
			sleepCtx(ctx, h.plan.Settle)
		}
	}
	return nil
}

// runSummary is one progress line.
func runSummary(r Run) string {
	if !r.ok() {
		return "FAILED: " + firstLine(r.Err)
	}
	rep := r.Report
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d joined", rep.Connected, rep.Clients)
	if rep.Expected > 0 {
		fmt.Fprintf(&b, ", delivered %.4f%%, p50 %.1f ms, p99 %.1f ms", 100*deliveryRatio(r), rep.LatencyMs.P50, rep.LatencyMs.P99)
	}
	if s := rep.Server; s != nil {
		fmt.Fprintf(&b, ", server %.2f cores", s.Cores)
		if rep.Delivered > 0 {
			fmt.Fprintf(&b, " %.2f µs/delivery", s.CPUUsPerDelivery)
		}
		fmt.Fprintf(&b, ", %.2f KiB/conn", s.KiBPerConnection)
	}
	fmt.Fprintf(&b, ", client %.2f cores", rep.ClientCores)
	if len(rep.Errors) > 0 {
		fmt.Fprintf(&b, ", errors %v", rep.Errors)
	}
	if r.Probe.Check != "" {
		fmt.Fprintf(&b, ", PROBE CHECK: %s", r.Probe.Check)
	}
	return b.String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// runOne is a regular run: server up, client-sim with -server-pid, server
// down.
func (h *harness) runOne(ctx context.Context, sc Scenario, sys System, round, order int) Run {
	tag := fmt.Sprintf("%s-%s-r%d", sc.ID, sys.Name, round)
	run := Run{Scenario: sc.ID, System: sys.Name, Round: round, Order: order, Start: time.Now()}
	defer func() { run.WallS = time.Since(run.Start).Seconds() }()
	sr, err := h.serveAndSim(ctx, sc, sys, tag, nil)
	run.Report, run.Probe, run.Relay = sr.rep, sr.probe, sr.relay
	if sr.scr != nil {
		run.Scrapes, run.ScrapeErrors = sr.scr.ok.Load(), sr.scr.failed.Load()
	}
	if err != nil {
		run.Err = err.Error()
	}
	return run
}

// simRun is what serveAndSim measured.
type simRun struct {
	rep   report.Report
	probe Probe
	scr   *scraper
	relay *RelayFigures
}

// rssEvery is how often the harness reads the server's RSS during a run.
const rssEvery = 500 * time.Millisecond

// releaseWait bounds the wait for the relay to let every connection go
// once client-sim has exited (its close timeout is 3 s).
const releaseWait = 10 * time.Second

// serveAndSim starts sys, runs client-sim against it with -server-pid and
// the harness's own /proc readings around it, and stops the server. during,
// if not nil, runs alongside client-sim (profiles).
func (h *harness) serveAndSim(ctx context.Context, sc Scenario, sys System, tag string, during func(ctx context.Context, srv *server)) (simRun, error) {
	var out simRun
	probe := &out.probe
	extra := sc.serverArgsFor(sys)
	srv, err := h.startServer(ctx, sys, tag, extra)
	if err != nil {
		return out, err
	}
	defer srv.stop()
	// A scenario's extra flags are shown with the scenario; the command of
	// record is the system's own, unless no other scenario ran it.
	if _, seen := h.res.Commands["server "+sys.Name]; len(extra) == 0 || !seen {
		h.res.Commands["server "+sys.Name] = commandLine(h.bins.binOf(sys), srv.args)
		if srv.nats != nil {
			h.res.Commands["nats-server "+sys.Name] = commandLine(h.bins.nats, srv.natsArgs)
		}
	}
	// A freshly started Go runtime is still growing its heap for a moment:
	// let it settle so that "RSS before" is the idle server, not start-up.
	sleepCtx(ctx, 300*time.Millisecond)
	pids := srv.pids()
	rss0, _, err := sumMemory(h.proc, pids)
	if err != nil {
		return out, err
	}
	probe.RSSBeforeKiB = rss0
	if addrs := srv.adminAddrs(); len(addrs) > 0 {
		out.scr = startScraper(ctx, time.Second, addrs...)
		defer out.scr.stop()
	}
	cpu0, err := sumCPU(h.proc, pids)
	if err != nil {
		return out, err
	}
	t0 := time.Now()
	args := h.simArgs(sc, sys, srv.urls(), tag, serverPIDArgs(pids, srv.nats))
	h.res.Commands["client-sim "+sc.ID+" "+sys.Name] = commandLine(h.bins.sim, args)
	simCtx, cancel := context.WithTimeout(ctx, simTimeout(sc.Load))
	defer cancel()
	split := &cpuSplit{pids: pids, proc: h.proc}
	rss := startRSSSampler(h.proc, pids, rssEvery)
	defer rss.stop()
	p, err := h.procs.spawn(simCtx, "client-sim "+tag, h.bins.sim, args, filepath.Join(h.logDir, tag+"-sim.log"), split.onLine)
	if err != nil {
		return out, err
	}
	duringDone := make(chan struct{})
	if during != nil {
		go func() {
			defer close(duringDone)
			during(simCtx, srv)
		}()
	} else {
		close(duringDone)
	}
	werr := p.wait(simCtx)
	<-duringDone // it may still be talking to the server: keep it up until then
	cpu1, cerr := sumCPU(h.proc, pids)
	probe.SimWallS = time.Since(t0).Seconds()
	probe.CPUWholeS = cpu1.Sub(cpu0).Total().Seconds()
	probe.RSSEveryS = rssEvery.Seconds()
	probe.RSSTimelineKiB, probe.RSSPeakKiB = rss.stop()
	if rss, hwm, err := sumMemory(h.proc, pids); err == nil {
		probe.RSSEndKiB, probe.HWMKiB = rss, hwm
	}
	out.scr.stop()
	if werr != nil {
		return out, werr
	}
	if cerr != nil {
		return out, fmt.Errorf("server died during the run: %w", cerr)
	}
	if addrs := srv.adminAddrs(); len(addrs) > 0 && ctx.Err() == nil {
		out.relay = relayFiguresOf(ctx, addrs)
	}
	rep, err := report.ReadFile(filepath.Join(h.runDir, tag+".json"))
	out.rep = rep
	if err != nil {
		return out, err
	}
	probe.WindowUserS, probe.WindowSysS, probe.MachineBusyCores = split.result()
	probe.Check = checkProbe(rep, *probe)
	return out, nil
}

// relayFiguresOf is relayFigures summed over a cluster's nodes (one node:
// its own); nil when any node's /metrics cannot be read.
func relayFiguresOf(ctx context.Context, adminAddrs []string) *RelayFigures {
	var sum *RelayFigures
	for _, addr := range adminAddrs {
		f := relayFigures(ctx, addr)
		if f == nil {
			return nil
		}
		if sum == nil {
			sum = f
			continue
		}
		sum.add(*f)
	}
	return sum
}

// add sums another node's figures into f: counts add up, the release is
// the slowest node's (-1 if any node did not release).
func (f *RelayFigures) add(o RelayFigures) {
	f.Closes = addCounts(f.Closes, o.Closes)
	f.HandshakeFailures = addCounts(f.HandshakeFailures, o.HandshakeFailures)
	f.Cluster = addCounts(f.Cluster, o.Cluster)
	f.ConnsOpen += o.ConnsOpen
	if f.ReleasedS < 0 || o.ReleasedS < 0 {
		f.ReleasedS = -1
	} else {
		f.ReleasedS = max(f.ReleasedS, o.ReleasedS)
	}
}

func addCounts(a, b map[string]float64) map[string]float64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = map[string]float64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

// serverPIDArgs are client-sim's flags for sampling the server: the
// first relay process with -server-pid, a cluster's other nodes with
// -server-pids (summed into the server's figures) and its NATS server
// with -broker-pid (reported apart).
func serverPIDArgs(pids []int, nats *proc) []string {
	args := []string{"-server-pid", strconv.Itoa(pids[0])}
	if len(pids) > 1 {
		var more []string
		for _, p := range pids[1:] {
			more = append(more, strconv.Itoa(p))
		}
		args = append(args, "-server-pids", strings.Join(more, ","))
	}
	if nats != nil {
		args = append(args, "-broker-pid", strconv.Itoa(nats.pid()))
	}
	return args
}

// sumCPU is the CPU of pids added up (a cluster's nodes).
func sumCPU(proc procstat.Reader, pids []int) (procstat.CPU, error) {
	var sum procstat.CPU
	for _, pid := range pids {
		c, err := proc.CPU(pid)
		if err != nil {
			return sum, err
		}
		sum.User += c.User
		sum.System += c.System
	}
	return sum, nil
}

// sumMemory is the RSS and VmHWM of pids added up (each process's own
// peak: their sum bounds the peak of the sum from above).
func sumMemory(proc procstat.Reader, pids []int) (rss, hwm int64, err error) {
	for _, pid := range pids {
		m, err := proc.Memory(pid)
		if err != nil {
			return 0, 0, err
		}
		rss += m.RSSKiB
		hwm += m.HWMKiB
	}
	return rss, hwm, nil
}

// relayFigures reads the relay's own counters once every client is gone,
// waiting (up to releaseWait) for its connections_open gauge to reach 0;
// nil when /metrics cannot be read.
func relayFigures(ctx context.Context, adminAddr string) *RelayFigures {
	start := time.Now()
	for {
		body, err := scrapeNow(ctx, adminAddr)
		if err != nil {
			return nil
		}
		f := &RelayFigures{ReleasedS: time.Since(start).Seconds()}
		f.Closes, _ = labelled(body, "tickrelay_server_closes_total", "cause")
		f.HandshakeFailures, _ = labelled(body, "tickrelay_handshake_failures_total", "reason")
		f.Cluster, _ = counters(body, "tickrelay_cluster_")
		open, ok, _ := gauge(body, "tickrelay_connections_open")
		if !ok {
			return nil
		}
		f.ConnsOpen = open
		if open == 0 {
			return f
		}
		if time.Since(start) > releaseWait || ctx.Err() != nil {
			f.ReleasedS = -1
			return f
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// rssSampler reads a process's RSS every period on its own goroutine.
type rssSampler struct {
	quit chan struct{}
	done chan struct{}
	kib  []int64 // owned by the goroutine until done
	once sync.Once
}

func startRSSSampler(proc procstat.Reader, pids []int, every time.Duration) *rssSampler {
	s := &rssSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, _, err := sumMemory(proc, pids); err == nil {
				s.kib = append(s.kib, rss)
			}
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the samples and their peak. Safe to
// call more than once.
func (s *rssSampler) stop() (kib []int64, peak int64) {
	s.once.Do(func() { close(s.quit) })
	<-s.done
	for _, v := range s.kib {
		peak = max(peak, v)
	}
	return s.kib, peak
}

// cpuSplit samples the server's user and kernel CPU when client-sim's
// progress lines enter the measured window and when they leave it: the
// first later line that is not a "measure" progress line ("drain", or
// "close" and the summary when the drain took under a second).
type cpuSplit struct {
	pids           []int // summed
	proc           procstat.Reader
	mu             sync.Mutex
	started, ended bool
	c0, c1         procstat.CPU
	m0, m1         procstat.MachineCPU
	t0, t1         time.Time
}

// onLine runs on the goroutine copying client-sim's output.
func (c *cpuSplit) onLine(line string) {
	measuring := strings.Contains(line, "] measure ")
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case measuring && !c.started:
		if cpu, err := sumCPU(c.proc, c.pids); err == nil {
			c.c0, c.started = cpu, true
			c.m0, _ = c.proc.MachineCPU()
			c.t0 = time.Now()
		}
	case !measuring && c.started && !c.ended:
		if cpu, err := sumCPU(c.proc, c.pids); err == nil {
			c.c1, c.ended = cpu, true
			c.m1, _ = c.proc.MachineCPU()
			c.t1 = time.Now()
		}
	}
}

// result is the server's user and kernel CPU seconds over the window and
// the machine's busy cores then.
func (c *cpuSplit) result() (user, sys, machineCores float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || !c.ended {
		return 0, 0, 0
	}
	d := c.c1.Sub(c.c0)
	if wall := c.t1.Sub(c.t0).Seconds(); wall > 0 && c.m1.Total > 0 && c.m0.Total > 0 {
		machineCores = c.m1.Sub(c.m0).Busy.Seconds() / wall
	}
	return d.User.Seconds(), d.System.Seconds(), machineCores
}

// simArgs is client-sim's command line for one run: the scenario file, the
// mode's overrides and the system's needs, then extra (later flags win).
func (h *harness) simArgs(sc Scenario, sys System, url, tag string, extra []string) []string {
	// Relative to the repository root, the children's working directory,
	// so that the recorded command lines are the ones to type.
	args := []string{"-scenario", sc.File, "-url", url, "-json", filepath.Join(h.runDir, tag+".json")}
	args = append(args, sc.overrideArgs()...)
	args = append(args, sys.SimArgs...)
	return append(args, extra...)
}

// simTimeout bounds one client-sim process generously: connecting,
// warm-up, window, drain and closing.
func simTimeout(l Load) time.Duration {
	connect := 60 * time.Second
	if l.Ramp > 0 {
		connect += time.Duration(float64(l.Clients) / l.Ramp * float64(time.Second))
	}
	return connect + l.Warmup + l.Duration + l.Drain + 60*time.Second
}

// hwmSlackKiB is how far an earlier VmHWM read may exceed a later one (see
// checkProbe).
const hwmSlackKiB = 512

// checkProbe compares client-sim's -server-pid figures with the harness's
// own readings. They are not taken at the same instants, so the checks are
// the ones that must hold whatever the timing: the RSS before connecting is
// the same idle server read a few milliseconds apart, and CPU in the
// measured window cannot exceed CPU over the whole client-sim process.
func checkProbe(rep report.Report, p Probe) string {
	s := rep.Server
	if s == nil {
		return "client-sim reported no server figures"
	}
	var problems []string
	if d := math.Abs(float64(s.RSSBeforeKiB - p.RSSBeforeKiB)); d > max(2048, 0.1*float64(p.RSSBeforeKiB)) {
		problems = append(problems, fmt.Sprintf("RSS before: client-sim %d KiB, harness %d KiB", s.RSSBeforeKiB, p.RSSBeforeKiB))
	}
	// /proc times are in 10 ms ticks: allow two.
	if s.CPUS > p.CPUWholeS+0.02 {
		problems = append(problems, fmt.Sprintf("window CPU %.2fs > whole-run CPU %.2fs", s.CPUS, p.CPUWholeS))
	}
	// VmHWM is the larger of the kept high-water mark and the current RSS,
	// and Linux updates the mark only when RSS is about to go down
	// (fs/proc/task_mmu.c, task_mem: "such snapshots can always be
	// inconsistent"); the current RSS it reads is a per-CPU counter sum
	// that can be off by a few hundred KiB. So an earlier read may exceed a
	// later one by that much; the check is for a different process or a
	// unit error, which are far larger.
	if s.HWMKiB > 0 && p.HWMKiB > 0 && s.HWMKiB > p.HWMKiB+hwmSlackKiB {
		problems = append(problems, fmt.Sprintf("HWM: client-sim %d KiB > harness's later %d KiB", s.HWMKiB, p.HWMKiB))
	}
	return strings.Join(problems, "; ")
}

func (h *harness) saveRun(r Run) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return
	}
	tag := fmt.Sprintf("%s-%s-r%d", r.Scenario, r.System, r.Round)
	_ = os.WriteFile(filepath.Join(h.runDir, tag+".run.json"), b, 0o644)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// deliveryRatio is delivered/expected; 1 when nothing was expected.
func deliveryRatio(r Run) float64 {
	if r.Report.Expected == 0 {
		return 1
	}
	return float64(r.Report.Delivered) / float64(r.Report.Expected)
}
