// Command harness is tickrelay's benchmark harness: `make bench` (full, ~30
// minutes, writes bench/RESULTS.md and bench/plots/) and `make bench-quick`
// (under 2 minutes, writes bench/out/quick.md). It builds the relay, the
// baseline relay and client-sim, runs the load scenarios of
// /work/shared/scenarios.md (bench/scenarios/*.yaml) against each system in
// turn, A B A B..., each server in a fresh process, and reports medians,
// same-round ratios, the targets, latency plots, CPU profiles and
// the Go micro-benchmarks.
//
// Only the regions between the harness markers of the results file are
// rewritten; hand-written analysis around them survives regeneration.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/client-sim/procstat"
)

func main() {
	os.Exit(mainWithArgs(os.Args[1:], os.Stderr))
}

type options struct {
	mode      string
	rounds    int
	scenarios string
	systems   string
	results   string
	plots     string
	out       string
	render    string
	micro     bool
	profile   bool
	plotExt   string
	set       map[string]bool // flags given explicitly
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("harness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mode, "mode", "quick", "full (make bench: 3 rounds, every system, writes bench/RESULTS.md) or quick (make bench-quick: 1 round, relay vs baseline-30hz, short runs, writes bench/out/quick.md)")
	fs.IntVar(&o.rounds, "rounds", 0, "rounds per scenario (0: the mode's, full 3, quick 1)")
	fs.StringVar(&o.scenarios, "scenarios", "", "comma-separated scenarios to run: s1,s2,s3,s4,s5 (default: the mode's; quick leaves out s4 and s5)")
	fs.StringVar(&o.systems, "systems", "", "comma-separated systems to run in every scenario instead of the mode's: "+systemNames())
	fs.StringVar(&o.results, "results", "", "results markdown file (default: the mode's)")
	fs.StringVar(&o.plots, "plots", "", "directory for the latency plots (default: the mode's)")
	fs.StringVar(&o.out, "out", "", "directory for raw reports, logs, profiles and binaries (default bench/out/<mode>)")
	fs.StringVar(&o.render, "render", "", "only render this results.json again into the results file and plots; run nothing")
	fs.StringVar(&o.plotExt, "plot-format", "svg", "latency plot format: svg (committed), png or pdf")
	fs.BoolVar(&o.micro, "micro", false, "run the Go micro-benchmarks (default: full mode only)")
	fs.BoolVar(&o.profile, "profile", false, "take CPU profiles of the relay in S1 and S2 (default: full mode only)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.mode != "full" && o.mode != "quick" {
		return o, fmt.Errorf("-mode must be full or quick, not %q", o.mode)
	}
	switch o.plotExt {
	case "svg", "png", "pdf":
	default:
		return o, fmt.Errorf("-plot-format must be svg, png or pdf, not %q", o.plotExt)
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	return o, nil
}

func systemNames() string {
	var names []string
	for _, s := range allSystems {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// planFor builds the plan of o.
func planFor(o options) (Plan, error) {
	p := quickPlan()
	if o.mode == "full" {
		p = fullPlan()
	}
	if o.rounds > 0 {
		p.Rounds = o.rounds
	}
	if o.set["micro"] {
		p.Micro = o.micro
	}
	if o.set["profile"] {
		p.Profile = o.profile
	}
	if o.results != "" {
		p.ResultsFile = o.results
	}
	if o.plots != "" {
		p.PlotsDir = o.plots
	}
	if o.out != "" {
		p.OutDir = o.out
	}
	p.PlotFormat = o.plotExt
	scen := splitList(o.scenarios)
	if len(scen) == 0 {
		scen = defaultScenarios(p.Mode)
	}
	if err := p.filter(scen, splitList(o.systems)); err != nil {
		return p, err
	}
	return p, nil
}

func mainWithArgs(args []string, stderr io.Writer) (code int) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "harness: %v\n", err)
		return 2
	}
	cwd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(stderr, "harness: %v\n", err)
		return 1
	}
	root, err := findRoot(cwd)
	if err != nil {
		fmt.Fprintf(stderr, "harness: %v\n", err)
		return 1
	}
	plan, err := planFor(o)
	if err != nil {
		fmt.Fprintf(stderr, "harness: %v\n", err)
		return 2
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(root, p)
	}
	plan.ResultsFile, plan.PlotsDir, plan.OutDir = abs(plan.ResultsFile), abs(plan.PlotsDir), abs(plan.OutDir)

	if o.render != "" {
		res, err := loadResults(o.render)
		if err == nil {
			resummarize(context.Background(), root, filepath.Dir(o.render), res)
			err = publish(res, plan, true)
		}
		if err != nil {
			fmt.Fprintf(stderr, "harness: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "harness: rendered %s into %s\n", o.render, plan.ResultsFile)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	procs := newProcSet(root)
	// Whatever happens (error, signal, panic), no server or client-sim
	// outlives the harness.
	defer procs.killAll()
	defer func() {
		if p := recover(); p != nil {
			procs.killAll()
			panic(p)
		}
	}()

	proc, err := procstat.New()
	if err != nil {
		fmt.Fprintf(stderr, "harness: %v\n", err)
		return 1
	}
	h := &harness{proc: proc, root: root, plan: plan, procs: procs, log: stderr, outDir: plan.OutDir,
		logDir: filepath.Join(plan.OutDir, "logs"), runDir: filepath.Join(plan.OutDir, "runs")}
	if err := h.run(ctx, args); err != nil {
		fmt.Fprintf(stderr, "harness: %v\n", err)
		return 1
	}
	return 0
}

// run executes the plan and publishes the results. An interrupted run
// keeps what it measured in bench/out but does not touch the results file.
func (h *harness) run(ctx context.Context, args []string) error {
	p := h.plan
	if err := p.load(h.root); err != nil {
		return err
	}
	h.plan = p
	for _, d := range []string{h.outDir, h.logDir, h.runDir, filepath.Join(h.outDir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("out dir: %w", err)
		}
	}
	invocation := map[string]string{"full": "make bench", "quick": "make bench-quick"}[p.Mode]
	if extra := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "-mode" || a == p.Mode || a == "-mode="+p.Mode }); len(extra) > 0 {
		invocation = "go run ./bench/harness " + strings.Join(args, " ")
	}
	h.res = &Results{
		Mode: p.Mode, Rounds: p.Rounds, Scenarios: p.Scenarios, Started: time.Now(),
		LoadStart: h.proc.LoadAvg(), Invocation: invocation, Commands: map[string]string{}, PlotFiles: map[string]string{},
	}
	h.res.Env = environment(ctx, h.root, h.proc)
	h.logf("tickrelay harness, mode %s: %d round(s), scenarios %s; about %s; load average %s; commit %s",
		p.Mode, p.Rounds, scenarioIDs(p.Scenarios), p.estimate().Round(time.Minute), h.res.LoadStart, h.res.Env.Commit)

	var err error
	withCentrifugo := p.uses(refCentrifugo)
	if withCentrifugo {
		h.logf("building Centrifugo %s from its module (minutes the first time)...", centrifugoVersion)
	}
	withNATS := p.usesCluster()
	if withNATS {
		h.logf("building nats-server %s from its module...", natsVersion)
	}
	h.bins, h.res.Builds, err = build(ctx, h.root, filepath.Join(h.outDir, "bin"), withCentrifugo, withNATS)
	if err != nil {
		return err
	}
	h.logf("built %s, %s, %s, %s", h.bins.relay, h.bins.baseline, h.bins.reference, h.bins.sim)
	if withCentrifugo {
		if h.bins.centrifugo == "" {
			note := h.bins.missing[kindCentrifugo] + "; its runs fail, everything else runs."
			h.logf("WARNING: %s", note)
			h.res.Notes = append(h.res.Notes, note)
		} else {
			h.logf("built %s", h.bins.centrifugo)
		}
	}

	if withNATS {
		if h.bins.nats == "" {
			note := h.bins.missing[kindNATS] + "; the cluster's runs fail, everything else runs."
			h.logf("WARNING: %s", note)
			h.res.Notes = append(h.res.Notes, note)
		} else {
			h.logf("built %s", h.bins.nats)
		}
	}

	if p.Micro {
		h.logf("Go micro-benchmarks (%d runs of %s each)...", p.MicroCount, p.MicroBenchtime)
		h.res.Micro = h.runMicro(ctx)
		if h.res.Micro.Err != "" {
			h.logf("micro-benchmarks failed: %s", firstLine(h.res.Micro.Err))
		}
	}
	for _, sc := range p.Scenarios {
		if err := h.runScenario(ctx, sc); err != nil {
			break
		}
		if p.Profile && (sc.ID == "s1" || sc.ID == "s2") && slices.Contains(sc.Systems, refRelay) && ctx.Err() == nil {
			sys, _ := systemByName(refRelay)
			h.logf("%s: profiling %s...", sc.ID, refRelay)
			pr := h.runProfile(ctx, sc, sys)
			if pr.Err != "" {
				h.logf("%s profile failed: %s", sc.ID, firstLine(pr.Err))
			}
			h.res.Profiles = append(h.res.Profiles, pr)
			sleepCtx(ctx, p.Settle)
		}
	}
	h.res.Finished = time.Now()
	h.res.LoadEnd = h.proc.LoadAvg()

	resultsJSON := filepath.Join(h.outDir, "results.json")
	if err := saveResults(h.res, resultsJSON); err != nil {
		return err
	}
	if ctx.Err() != nil {
		partial := p
		partial.ResultsFile = filepath.Join(h.outDir, "partial.md")
		partial.PlotsDir = filepath.Join(h.outDir, "partial-plots")
		_ = publish(h.res, partial, false)
		return fmt.Errorf("interrupted: partial results in %s and %s; %s left untouched", resultsJSON, partial.ResultsFile, p.ResultsFile)
	}
	if err := publish(h.res, p, false); err != nil {
		return err
	}
	for _, t := range evaluateTargets(h.res) {
		h.logf("target %-7s %s: %s %s", t.Status, t.What, t.Measured, t.Margin)
	}
	h.logf("wrote %s (raw data in %s), load average now %s", p.ResultsFile, h.outDir, h.res.LoadEnd)
	return nil
}

// resummarize reruns `go tool pprof` on profiles saved next to a rendered
// results.json (with the relay binary of that run), so that a change in
// how profiles are summarised needs no new run. Profiles whose files are
// gone keep their saved summary.
func resummarize(ctx context.Context, root, outDir string, res *Results) {
	bin := filepath.Join(outDir, "bin", "tickrelay")
	for i := range res.Profiles {
		pr := &res.Profiles[i]
		if pr.Err != "" || pr.File == "" {
			continue
		}
		file := filepath.Join(root, pr.File)
		if _, err := os.Stat(file); err != nil {
			continue
		}
		if _, err := os.Stat(bin); err != nil {
			continue
		}
		fresh := Profile{}
		if summarizeProfile(ctx, root, bin, file, &fresh) == nil {
			pr.Header, pr.Flat, pr.Cum = fresh.Header, fresh.Flat, fresh.Cum
		}
	}
}

func scenarioIDs(scs []Scenario) string {
	var ids []string
	for _, s := range scs {
		ids = append(ids, s.ID)
	}
	return strings.Join(ids, ",")
}

// publish draws the plots and writes the results file: the generated
// regions of an existing file are replaced, a missing file is created.
func publish(res *Results, p Plan, rendering bool) error {
	if err := os.MkdirAll(p.PlotsDir, 0o755); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	res.PlotFiles = map[string]string{}
	for _, sc := range res.Scenarios {
		if sc.Load.Rate == 0 {
			continue
		}
		path := filepath.Join(p.PlotsDir, sc.ID+"-latency."+cmp.Or(p.PlotFormat, "svg"))
		if err := writeLatencyPlot(res, sc, path); err != nil {
			res.Notes = appendOnce(res.Notes, fmt.Sprintf("No %s plot: %v.", sc.ID, err))
			continue
		}
		rel, err := filepath.Rel(filepath.Dir(p.ResultsFile), path)
		if err != nil {
			rel = path
		}
		res.PlotFiles[sc.ID] = filepath.ToSlash(rel)
	}
	doc := ""
	if b, err := os.ReadFile(p.ResultsFile); err == nil {
		doc = string(b)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("results: %w", err)
	} else if res.Mode != "full" || rendering {
		doc = "# tickrelay benchmark: scratch output\n\nWritten by `make bench-quick` (or the harness with custom flags); not committed. The committed figures are in bench/RESULTS.md.\n"
	}
	doc, err := replaceRegion(doc, beginMain, endMain, renderMain(res))
	if err != nil {
		return err
	}
	if res.Micro != nil {
		if doc, err = replaceRegion(doc, beginMicro, endMicro, renderMicro(res.Micro, res.Env)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.ResultsFile), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(p.ResultsFile, []byte(doc), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

func appendOnce(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
