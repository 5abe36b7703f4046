package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// ReachFigures are S4's own figures, read by the harness (several client-sim
// processes share one server, so no single -server-pid view is complete).
type ReachFigures struct {
	HoldProcs int `json:"hold_procs"`
	Attempted int `json:"attempted"` // hold-phase clients
	Held      int `json:"held"`      // of which joined
	// JoinS runs from starting the first hold process to the last one
	// reporting every client joined; JoinRate = Held / JoinS.
	JoinS    float64 `json:"join_s"`
	JoinRate float64 `json:"join_rate"`

	RSSBeforeKiB  int64 `json:"rss_before_kib"`
	RSSHeldKiB    int64 `json:"rss_held_kib"`    // right after the last join
	RSSSettledKiB int64 `json:"rss_settled_kib"` // after the settle
	RSSEndKiB     int64 `json:"rss_end_kib"`
	HWMKiB        int64 `json:"hwm_kib"`
	// KiBPerConn is (RSS held - RSS before) / Held, client-sim's definition.
	KiBPerConn        float64 `json:"kib_per_conn"`
	KiBPerConnSettled float64 `json:"kib_per_conn_settled"`
	SettleS           float64 `json:"settle_s"`
	IdleCores         float64 `json:"idle_cores"` // server CPU over the settle

	// The kernel's side: /proc/meminfo Slab before and after the joins.
	// Both ends of every loopback connection live on this host, so the
	// per-socket figure divides by 2 x Held (and includes whatever else the
	// machine allocated meanwhile: an estimate, not a measurement of one
	// socket).
	SlabBeforeKiB      int64   `json:"slab_before_kib"`
	SlabHeldKiB        int64   `json:"slab_held_kib"`
	KernelKiBPerSocket float64 `json:"kernel_kib_per_socket"`
	TCPSlabObjBytes    int     `json:"tcp_slab_obj_bytes,omitempty"`
	SockInodeObjBytes  int     `json:"sock_inode_obj_bytes,omitempty"`

	OpenFileLimit int `json:"open_file_limit"` // the server's soft RLIMIT_NOFILE
	// MaxConnections is the relay's limit as observed: held + accepted
	// when the over-limit phase ran (the default is the open-file limit
	// minus a reserve the relay chooses; the harness does not assume it).
	MaxConnections int `json:"max_connections,omitempty"`

	Over *OverLimit `json:"over_limit,omitempty"`
	// HoldErrors are the hold processes' errors; HoldDrops counts those
	// that mean a held connection was lost (disconnect:*, left:*).
	HoldErrors map[string]int64 `json:"hold_errors,omitempty"`
	HoldDrops  int64            `json:"hold_drops"`
}

// OverLimit is the attempt past the relay's -max-connections.
type OverLimit struct {
	Attempted int `json:"attempted"`
	// Errors are the extra process's errors as client-sim reported them;
	// the counts below are derived from them (classify).
	Errors     map[string]int64 `json:"errors"`
	Refused503 int64            `json:"refused_503"`
	Accepted   int              `json:"accepted"`
	// Refused4002: upgraded, then closed with 4002 (server full) and a
	// reason, as the relay answers near its limit so that a browser can
	// read why (docs/PROTOCOL.md); client-sim's disconnect:4002.
	Refused4002 int64 `json:"refused_4002"`
	// ServerFull counts the Error{SERVER_FULL} that must come before each
	// of those closes (client-sim's server_error:server_full).
	ServerFull  int64            `json:"server_full"`
	OtherErrors map[string]int64 `json:"other_errors,omitempty"`
	// The relay's own gauges while the extra process held what it got.
	ConnsOpen float64 `json:"conns_open"` // -1: not read
	Players   float64 `json:"players"`
}

// runReach is S4: HoldProcs client-sim processes connect HoldClients idle
// clients between them as fast as they can, one loopback source address
// each; the server's memory is read before and after; then, for the relay,
// one more process tries to open OverLimit connections past its limit while
// the others hold theirs, and must be refused with 503. Its steps: hold,
// settle, over the limit, collect.
func (h *harness) runReach(ctx context.Context, sc Scenario, sys System, round, order int) (run Run) {
	tag := fmt.Sprintf("%s-%s-r%d", sc.ID, sys.Name, round)
	run = Run{Scenario: sc.ID, System: sys.Name, Round: round, Order: order, Start: time.Now()}
	defer func() { run.WallS = time.Since(run.Start).Seconds() }()
	fail := func(err error) Run {
		run.Err = err.Error()
		return run
	}
	srv, err := h.startServer(ctx, sys, tag, sc.serverArgsFor(sys))
	if err != nil {
		return fail(err)
	}
	defer srv.stop()
	h.res.Commands["server "+sys.Name] = commandLine(h.bins.binOf(sys), srv.args)
	sleepCtx(ctx, 300*time.Millisecond)
	pid := srv.pid()
	rf := &ReachFigures{HoldProcs: sc.HoldProcs, Attempted: sc.HoldClients, HoldErrors: map[string]int64{}}
	run.Reach = rf
	if rf.OpenFileLimit, err = h.proc.OpenFileLimit(pid); err != nil {
		return fail(err)
	}
	mem, err := h.proc.Memory(pid)
	if err != nil {
		return fail(err)
	}
	rf.RSSBeforeKiB = mem.RSSKiB
	if mi, err := h.proc.Meminfo(); err == nil {
		rf.SlabBeforeKiB = mi.SlabKiB
	}
	var scr *scraper
	if srv.adminAddr != "" {
		scr = startScraper(ctx, time.Second, srv.adminAddr)
		defer scr.stop()
	}

	simCtx, cancel := context.WithTimeout(ctx, simTimeout(sc.Load)+time.Minute)
	defer cancel()
	t0 := time.Now()
	holds, err := h.reachHold(simCtx, sc, sys, srv, tag, rf)
	defer func() {
		for _, p := range holds {
			p.stop()
		}
	}()
	if err != nil {
		return fail(fmt.Errorf("hold phase: %w", err))
	}
	idle := h.reachSettle(ctx, sc, pid, rf)

	// Over the limit: the relay only (the other servers have no limit of
	// their own and would meet EMFILE in accept instead).
	if sys.Kind == kindRelay && sc.OverLimit > 0 {
		over, err := h.overLimit(simCtx, sc, sys, srv, tag, rf)
		if err != nil {
			return fail(fmt.Errorf("over-limit phase: %w", err))
		}
		rf.Over = over
		rf.MaxConnections = sc.HoldClients + over.Accepted
	}

	merged, err := h.reachCollect(simCtx, holds, tag, pid, rf)
	if err != nil {
		return fail(err)
	}
	// The table's server columns for this run come from the harness's reads.
	merged.Server = &report.Server{
		PID: pid, CPUS: idle.Seconds(), Cores: rf.IdleCores,
		RSSBeforeKiB: rf.RSSBeforeKiB, RSSAfterJoinKiB: rf.RSSHeldKiB, RSSEndKiB: rf.RSSEndKiB,
		HWMKiB: rf.HWMKiB, KiBPerConnection: rf.KiBPerConn,
	}
	run.Report = merged
	run.Probe = Probe{RSSBeforeKiB: rf.RSSBeforeKiB, RSSEndKiB: rf.RSSEndKiB, HWMKiB: rf.HWMKiB, SimWallS: time.Since(t0).Seconds()}
	if scr != nil {
		scr.stop()
		run.Scrapes, run.ScrapeErrors = scr.ok.Load(), scr.failed.Load()
	}
	return run
}

// reachHold starts the hold processes, HoldClients idle clients between
// them, one source address each, and returns once every one has joined its
// clients, with the server's memory and the kernel's slab read at that
// moment. The processes are returned even on error, for the caller to stop.
func (h *harness) reachHold(ctx context.Context, sc Scenario, sys System, srv *server, tag string, rf *ReachFigures) ([]*proc, error) {
	var holds []*proc
	var joined []chan struct{}
	t0 := time.Now()
	for i := range sc.HoldProcs {
		n := sc.HoldClients / sc.HoldProcs
		if i == sc.HoldProcs-1 {
			n = sc.HoldClients - n*(sc.HoldProcs-1)
		}
		ptag := fmt.Sprintf("%s-p%d", tag, i+1)
		args := h.simArgs(sc, sys, srv.url, ptag, []string{"-clients", strconv.Itoa(n), "-local-addrs", fmt.Sprintf("127.0.0.%d", i+1)})
		if i == 0 {
			h.res.Commands["client-sim "+sc.ID+" "+sys.Name] = fmt.Sprintf("%d x (%s), -local-addrs 127.0.0.1 ... 127.0.0.%d", sc.HoldProcs, commandLine(h.bins.sim, args), sc.HoldProcs)
		}
		ch := make(chan struct{}, 1)
		p, err := h.procs.spawn(ctx, "client-sim "+ptag, h.bins.sim, args, filepath.Join(h.logDir, ptag+"-sim.log"), onJoined(ch))
		if err != nil {
			return holds, err
		}
		holds = append(holds, p)
		joined = append(joined, ch)
	}
	if err := waitJoined(ctx, joined, holds, 90*time.Second); err != nil {
		return holds, err
	}
	rf.JoinS = time.Since(t0).Seconds()
	if m, err := h.proc.Memory(srv.pid()); err == nil {
		rf.RSSHeldKiB = m.RSSKiB
	}
	if mi, err := h.proc.Meminfo(); err == nil {
		rf.SlabHeldKiB = mi.SlabKiB
	}
	return holds, nil
}

// reachSettle waits while every connection is held (client-sim holds for
// warmup + duration after its joins) and reads the server's idle CPU and
// its memory after the settle. It returns the CPU used over the settle.
func (h *harness) reachSettle(ctx context.Context, sc Scenario, pid int, rf *ReachFigures) time.Duration {
	cpu0, _ := h.proc.CPU(pid)
	settle := min(sc.Load.Warmup, 5*time.Second)
	sleepCtx(ctx, settle)
	cpu1, _ := h.proc.CPU(pid)
	used := cpu1.Sub(cpu0).Total()
	rf.SettleS = settle.Seconds()
	rf.IdleCores = used.Seconds() / settle.Seconds()
	if m, err := h.proc.Memory(pid); err == nil {
		rf.RSSSettledKiB = m.RSSKiB
	}
	return used
}

// reachCollect waits for the hold processes to finish, merges their
// reports and derives the per-connection figures.
func (h *harness) reachCollect(ctx context.Context, holds []*proc, tag string, pid int, rf *ReachFigures) (report.Report, error) {
	var reps []report.Report
	for i, p := range holds {
		if err := p.wait(ctx); err != nil {
			return report.Report{}, err
		}
		rep, err := report.ReadFile(filepath.Join(h.runDir, fmt.Sprintf("%s-p%d.json", tag, i+1)))
		if err != nil {
			return report.Report{}, err
		}
		reps = append(reps, rep)
	}
	if m, err := h.proc.Memory(pid); err == nil {
		rf.RSSEndKiB, rf.HWMKiB = m.RSSKiB, m.HWMKiB
	}
	merged, err := report.Merge(reps)
	if err != nil {
		return report.Report{}, err
	}
	rf.Held = merged.Connected
	if rf.JoinS > 0 {
		rf.JoinRate = float64(rf.Held) / rf.JoinS
	}
	if rf.Held > 0 {
		rf.KiBPerConn = float64(rf.RSSHeldKiB-rf.RSSBeforeKiB) / float64(rf.Held)
		rf.KiBPerConnSettled = float64(rf.RSSSettledKiB-rf.RSSBeforeKiB) / float64(rf.Held)
		if rf.SlabHeldKiB > 0 && rf.SlabBeforeKiB > 0 {
			rf.KernelKiBPerSocket = float64(rf.SlabHeldKiB-rf.SlabBeforeKiB) / float64(2*rf.Held)
		}
	}
	rf.TCPSlabObjBytes = h.proc.SlabObjectSize("TCP")
	rf.SockInodeObjBytes = h.proc.SlabObjectSize("sock_inode_cache")
	for k, v := range merged.Errors {
		rf.HoldErrors[k] = v
		if strings.HasPrefix(k, "disconnect:") || strings.HasPrefix(k, "left:") {
			rf.HoldDrops += v
		}
	}
	return merged, nil
}

// overLimit runs one more client-sim process with (open-file limit - held)
// + OverLimit clients from its own source address: more than the relay can
// take whatever reserve below its open-file limit it keeps, so at least
// OverLimit of them must be refused. It reads the relay's gauges while the
// process holds what it was given, and returns the tally.
func (h *harness) overLimit(ctx context.Context, sc Scenario, sys System, srv *server, tag string, rf *ReachFigures) (*OverLimit, error) {
	if rf.OpenFileLimit <= sc.HoldClients {
		return nil, fmt.Errorf("open-file limit %d leaves no room past %d held connections", rf.OpenFileLimit, sc.HoldClients)
	}
	o := &OverLimit{Attempted: rf.OpenFileLimit - sc.HoldClients + sc.OverLimit, ConnsOpen: -1, Players: -1}
	ptag := tag + "-over"
	args := h.simArgs(sc, sys, srv.url, ptag, []string{
		"-clients", strconv.Itoa(o.Attempted), "-local-addrs", fmt.Sprintf("127.0.0.%d", sc.HoldProcs+1),
		// A steady pace rather than a burst: each refused connection holds
		// one of the relay's spare descriptors until its 503 is written.
		"-ramp", "1000", "-warmup", "1s", "-duration", "2s",
	})
	h.res.Commands["client-sim "+sc.ID+" over-limit"] = commandLine(h.bins.sim, args)
	joined := make(chan struct{}, 1)
	p, err := h.procs.spawn(ctx, "client-sim "+ptag, h.bins.sim, args, filepath.Join(h.logDir, ptag+"-sim.log"), onJoined(joined))
	if err != nil {
		return nil, err
	}
	if err := waitJoined(ctx, []chan struct{}{joined}, []*proc{p}, 60*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	if srv.adminAddr != "" {
		if body, err := scrapeNow(ctx, srv.adminAddr); err == nil {
			if v, ok, _ := gauge(body, "tickrelay_connections_open"); ok {
				o.ConnsOpen = v
			}
			if v, ok, _ := gauge(body, "tickrelay_players"); ok {
				o.Players = v
			}
		}
	}
	if err := p.wait(ctx); err != nil {
		return nil, err
	}
	rep, err := report.ReadFile(filepath.Join(h.runDir, ptag+".json"))
	if err != nil {
		return nil, err
	}
	o.Accepted = rep.Connected
	o.Errors = rep.Errors
	o.classify()
	return o, nil
}

// classify sorts the extra process's errors into refusals and the rest.
// client-sim counts a refused upgrade three times: the Error it read
// (server_error:server_full), the close (disconnect:4002) and its Join
// failing because of that close (join:closed_4002, or join:closed when the
// Join saw the connection end before the close code was known). One
// refusal is one close; the Errors and the failed Joins that go with the
// closes are not other errors.
func (o *OverLimit) classify() {
	o.OtherErrors = maps.Clone(o.Errors)
	take := func(key string, most int64) int64 {
		n := min(o.OtherErrors[key], most)
		if o.OtherErrors[key] -= n; o.OtherErrors[key] == 0 {
			delete(o.OtherErrors, key)
		}
		return n
	}
	o.Refused503 = take("dial:http_503", math.MaxInt64)
	o.Refused4002 = take("disconnect:4002", math.MaxInt64)
	o.ServerFull = take("server_error:server_full", o.Refused4002)
	joins := take("join:closed_4002", o.Refused4002)
	take("join:closed", o.Refused4002-joins)
}

// restoreErrors rebuilds Errors for a results.json written before the
// harness kept them (up to 12f153d): there, Refused503 and Refused4002 were
// client-sim's dial:http_503 and join:closed_4002, and OtherErrors all its
// other errors.
func (o *OverLimit) restoreErrors() {
	o.Errors = maps.Clone(o.OtherErrors)
	if o.Errors == nil {
		o.Errors = map[string]int64{}
	}
	if o.Refused503 > 0 {
		o.Errors["dial:http_503"] += o.Refused503
	}
	if o.Refused4002 > 0 {
		o.Errors["join:closed_4002"] += o.Refused4002
	}
}

// onJoined watches client-sim's stderr for its "N/M joined in Xs" line.
func onJoined(ch chan<- struct{}) func(string) {
	return func(line string) {
		if strings.Contains(line, " joined in ") {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// waitJoined waits until every process has signalled on its channel; a
// process that exits without having signalled, ctx or timeout end the wait
// with an error.
func waitJoined(ctx context.Context, joined []chan struct{}, procs []*proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	done := make([]bool, len(procs))
	for {
		left := 0
		for i, p := range procs {
			if done[i] {
				continue
			}
			select {
			case <-joined[i]:
				done[i] = true
				continue
			default:
			}
			if p.exited() {
				// Its line may have come with its last bytes.
				select {
				case <-joined[i]:
					done[i] = true
					continue
				default:
				}
				return fmt.Errorf("%s exited before joining: %w", p.name, errors.Join(p.exitErr(), errors.New(p.log.String())))
			}
			left++
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d client-sim processes not joined after %s", left, len(procs), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
