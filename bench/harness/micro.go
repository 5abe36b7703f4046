package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// microPackages are the packages whose Go benchmarks go into the report:
// frame decode/encode and upgrade (server/wsproto), tick build (room), and
// the wire helpers.
var microPackages = []string{"./room/", "./server/...", "./proto/wire/"}

// MicroResult is the Go micro-benchmark table.
type MicroResult struct {
	Command    string       `json:"command"`
	Benchmarks []MicroBench `json:"benchmarks"`
	// NoBenchmarks lists packages that ran but have none.
	NoBenchmarks []string `json:"no_benchmarks,omitempty"`
	Err          string   `json:"error,omitempty"`
}

// MicroBench is one benchmark over its -count runs.
type MicroBench struct {
	Pkg     string        `json:"pkg"`
	Name    string        `json:"name"` // without the -GOMAXPROCS suffix
	Runs    int           `json:"runs"`
	Metrics []MicroMetric `json:"metrics"` // in the order go test prints them
}

// MicroMetric is one unit of a benchmark (ns/op, B/op, custom ones).
type MicroMetric struct {
	Unit   string  `json:"unit"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func (h *harness) runMicro(ctx context.Context) *MicroResult {
	args := []string{"test", "-run", "^$", "-bench", ".", "-benchmem",
		"-count", strconv.Itoa(h.plan.MicroCount), "-benchtime", h.plan.MicroBenchtime}
	args = append(args, microPackages...)
	res := &MicroResult{Command: "go " + quoteArgs(args)}
	out, err := runCapture(ctx, h.root, "go", args...)
	_ = os.WriteFile(filepath.Join(h.outDir, "micro.txt"), []byte(out), 0o644)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.Benchmarks, res.NoBenchmarks = parseBenchOutput(out)
	return res
}

// parseBenchOutput reads `go test -bench` output: "pkg:" lines name the
// package of the benchmark lines that follow; "ok <pkg>" lines for
// packages that printed no "pkg:" line mean no benchmarks.
func parseBenchOutput(out string) ([]MicroBench, []string) {
	type key struct{ pkg, name string }
	values := map[key]map[string][]float64{}
	units := map[key][]string{}
	var order []key
	seen := map[string]bool{}
	var none []string
	pkg := ""
	scanLines(out, func(line string) {
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg: "))
			seen[pkg] = true
		case strings.HasPrefix(line, "ok "):
			f := strings.Fields(line)
			if len(f) >= 2 && !seen[f[1]] {
				none = append(none, f[1])
			}
		case strings.HasPrefix(line, "Benchmark"):
			f := strings.Fields(line)
			// Name, iterations, then value/unit pairs.
			if len(f) < 4 || len(f)%2 != 0 {
				return
			}
			if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
				return
			}
			k := key{pkg, trimProcs(f[0])}
			if values[k] == nil {
				values[k] = map[string][]float64{}
				order = append(order, k)
			}
			for i := 2; i+1 < len(f); i += 2 {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					continue
				}
				u := f[i+1]
				if !slices.Contains(units[k], u) {
					units[k] = append(units[k], u)
				}
				values[k][u] = append(values[k][u], v)
			}
		}
	})
	var res []MicroBench
	for _, k := range order {
		b := MicroBench{Pkg: k.pkg, Name: k.name}
		for _, u := range units[k] {
			vs := values[k][u]
			lo, hi := minMax(vs)
			b.Metrics = append(b.Metrics, MicroMetric{Unit: u, Median: median(vs), Min: lo, Max: hi})
			b.Runs = max(b.Runs, len(vs))
		}
		res = append(res, b)
	}
	return res, none
}

// trimProcs drops the "-2" GOMAXPROCS suffix go test adds to names.
func trimProcs(name string) string {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name
	}
	if _, err := strconv.Atoi(name[i+1:]); err != nil {
		return name
	}
	return name[:i]
}

// metric returns the benchmark's figure in unit, ok false when absent.
func (b MicroBench) metric(unit string) (MicroMetric, bool) {
	for _, m := range b.Metrics {
		if m.Unit == unit {
			return m, true
		}
	}
	return MicroMetric{}, false
}

func quoteArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " ^$*?'\"\\|&;<>()") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func fmtBenchValue(v float64) string {
	switch {
	case v == math.Trunc(v):
		return commas(v, 0)
	case v >= 1000:
		return commas(v, 0)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
