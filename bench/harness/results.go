package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// Results is everything a harness invocation measured. It is saved as JSON
// (bench/out/<mode>/results.json) so that the report can be rendered again
// (-render FILE) without running anything.
type Results struct {
	Mode       string            `json:"mode"`
	Rounds     int               `json:"rounds"`
	Scenarios  []Scenario        `json:"scenarios"`
	Env        Env               `json:"env"`
	Started    time.Time         `json:"started"`
	Finished   time.Time         `json:"finished"`
	LoadStart  string            `json:"load_start"`
	LoadEnd    string            `json:"load_end"`
	Invocation string            `json:"invocation"`
	Builds     []string          `json:"builds"`
	Commands   map[string]string `json:"commands"`
	Runs       []Run             `json:"runs"`
	Profiles   []Profile         `json:"profiles,omitempty"`
	Micro      *MicroResult      `json:"micro,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
	PlotFiles  map[string]string `json:"plot_files,omitempty"` // scenario -> path relative to the results file
}

// Env describes the machine and the code measured.
type Env struct {
	NProc         int    `json:"nproc"`
	CPUModel      string `json:"cpu_model"`
	Kernel        string `json:"kernel"`
	MemTotalKiB   int64  `json:"mem_total_kib"`
	OpenFileLimit string `json:"open_file_limit"`
	GoVersion     string `json:"go_version"`
	Commit        string `json:"commit"`
	// Sysctl holds the kernel settings the S4 projection depends on.
	Sysctl map[string]string `json:"sysctl,omitempty"`
}

func saveResults(r *Results, path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

func loadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("results %s: %w", path, err)
	}
	// Judge the stored raw figures by the rules of this harness, which may
	// be newer than the one that took them.
	for i := range r.Runs {
		run := &r.Runs[i]
		if run.Reach != nil && run.Reach.Over != nil {
			if run.Reach.Over.Errors == nil {
				run.Reach.Over.restoreErrors()
			}
			run.Reach.Over.classify()
		}
		if run.Probe.Check != "" && run.Report.Server != nil {
			run.Probe.Check = checkProbe(run.Report, run.Probe)
		}
	}
	return &r, nil
}

func (r *Results) scenario(id string) (Scenario, bool) {
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s, true
		}
	}
	return Scenario{}, false
}

// byRound returns f of each round's run of (scenario, system), indexed by
// round-1; NaN for a round that failed or did not run.
func (r *Results) byRound(scenario, system string, f func(Run) float64) []float64 {
	out := make([]float64, r.Rounds)
	for i := range out {
		out[i] = math.NaN()
	}
	for _, run := range r.Runs {
		if run.Scenario == scenario && run.System == system && run.ok() && run.Round >= 1 && run.Round <= r.Rounds {
			out[run.Round-1] = f(run)
		}
	}
	return out
}

// runsOf returns the runs of (scenario, system), failed ones included.
func (r *Results) runsOf(scenario, system string) []Run {
	var out []Run
	for _, run := range r.Runs {
		if run.Scenario == scenario && run.System == system {
			out = append(out, run)
		}
	}
	return out
}

// Figures of one run; NaN where the run has none (no deliveries, no server
// figures).
var (
	figDelivery = func(r Run) float64 {
		if r.Report.Expected == 0 {
			return math.NaN()
		}
		return deliveryRatio(r)
	}
	figP50  = func(r Run) float64 { return latencyOrNaN(r, r.Report.LatencyMs.P50) }
	figP99  = func(r Run) float64 { return latencyOrNaN(r, r.Report.LatencyMs.P99) }
	figP999 = func(r Run) float64 { return latencyOrNaN(r, r.Report.LatencyMs.P999) }
	figMax  = func(r Run) float64 { return latencyOrNaN(r, r.Report.LatencyMs.Max) }
	figCore = func(r Run) float64 {
		if r.Report.Server == nil {
			return math.NaN()
		}
		return r.Report.Server.Cores
	}
	figUsPerDelivery = func(r Run) float64 {
		if r.Report.Server == nil || r.Report.Delivered == 0 {
			return math.NaN()
		}
		return r.Report.Server.CPUUsPerDelivery
	}
	figRSSBefore = func(r Run) float64 { return serverKiB(r, func(s *report.Server) int64 { return s.RSSBeforeKiB }) }
	figRSSJoin   = func(r Run) float64 { return serverKiB(r, func(s *report.Server) int64 { return s.RSSAfterJoinKiB }) }
	figRSSEnd    = func(r Run) float64 { return serverKiB(r, func(s *report.Server) int64 { return s.RSSEndKiB }) }
	figKiBConn   = func(r Run) float64 {
		if r.Report.Server == nil || r.Report.Connected == 0 {
			return math.NaN()
		}
		return r.Report.Server.KiBPerConnection
	}
	// figSysShare is the kernel's part of the server's CPU (stime over
	// utime+stime) in the measured window.
	figSysShare = func(r Run) float64 {
		total := r.Probe.WindowUserS + r.Probe.WindowSysS
		if total <= 0 {
			return math.NaN()
		}
		return r.Probe.WindowSysS / total
	}
	// figKernelUs is the kernel part of the server's µs per delivery.
	figKernelUs    = func(r Run) float64 { return figUsPerDelivery(r) * figSysShare(r) }
	figClientCores = func(r Run) float64 { return r.Report.ClientCores }
	// figMachineCores is the whole machine's busy cores over the window.
	figMachineCores = func(r Run) float64 {
		if r.Probe.MachineBusyCores <= 0 {
			return math.NaN()
		}
		return r.Probe.MachineBusyCores
	}
	figSendLagP99 = func(r Run) float64 { return r.Report.SendLagMs.P99 }
)

func latencyOrNaN(r Run, v float64) float64 {
	if r.Report.Delivered == 0 {
		return math.NaN()
	}
	return v
}

func serverKiB(r Run, f func(*report.Server) int64) float64 {
	if r.Report.Server == nil {
		return math.NaN()
	}
	return float64(f(r.Report.Server))
}
