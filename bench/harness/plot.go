package main

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"strconv"

	"github.com/HdrHistogram/hdrhistogram-go"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// percentileX maps a percentile to the latency plot's x axis: the number
// of nines (50% -> 0.3, 90% -> 1, 99% -> 2, 99.9% -> 3), as client-sim's
// own plot, which gives the tail room.
func percentileX(p float64) float64 {
	return -math.Log10(1 - p/100)
}

// curve is one system's latency distribution as plot points (x: nines,
// y: ms), ending with the maximum a quarter of a nine past the last point.
func curve(h *hdrhistogram.Histogram) plotter.XYs {
	var pts plotter.XYs
	maxX := 0.0
	// Five steps per halving of the distance to 100%: a smooth curve out
	// to the tail without thousands of points.
	for _, br := range h.CumulativeDistributionWithTicks(5) {
		if br.Quantile >= 100 {
			break
		}
		// Below the 10th percentile the log scale would spend most of the
		// chart's height on the fastest few deliveries.
		if br.Count == 0 || br.Quantile < 10 {
			continue
		}
		x := percentileX(br.Quantile)
		pts = append(pts, plotter.XY{X: x, Y: math.Max(float64(br.ValueAt)/1000, 0.001)})
		maxX = max(maxX, x)
	}
	return append(pts, plotter.XY{X: maxX + 0.25, Y: float64(h.Max()) / 1000})
}

// mergedLatency merges the latency histograms of every successful round of
// (scenario, system); nil when there are none.
func mergedLatency(r *Results, scenario, system string) (*hdrhistogram.Histogram, error) {
	var out *hdrhistogram.Histogram
	for _, run := range r.runsOf(scenario, system) {
		if !run.ok() {
			continue
		}
		h, err := run.Report.Latency()
		if err != nil {
			return nil, err
		}
		if h == nil {
			continue
		}
		if out == nil {
			out = h
		} else {
			out.Merge(h)
		}
	}
	return out, nil
}

// writeLatencyPlot draws every system of a scenario on one chart: latency
// (log scale) against percentile, all rounds merged per system.
func writeLatencyPlot(r *Results, sc Scenario, path string) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: delivery latency (%d round(s) merged per system)", sc.Title, r.Rounds)
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.TickerFunc(ticks125)
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Legend.Left = true
	maxX := 0.0
	lines := 0
	for i, sys := range sc.Systems {
		h, err := mergedLatency(r, sc.ID, sys)
		if err != nil {
			return fmt.Errorf("plot %s: %w", sc.ID, err)
		}
		if h == nil || h.TotalCount() == 0 {
			continue
		}
		pts := curve(h)
		maxX = max(maxX, pts[len(pts)-1].X)
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", sc.ID, err)
		}
		l.Color = plotutil.Color(i)
		// The three main systems solid, the variants dashed: seven lines
		// on one chart stay apart.
		l.Dashes = plotutil.Dashes(max(0, i-2))
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("%s (p99 %.1f ms)", sys, float64(h.ValueAtQuantile(99))/1000), l)
		lines++
	}
	if lines == 0 {
		return errors.New("plot: no latency recorded")
	}
	if sc.Load.Rate > 0 {
		// The latency target at 30 Hz: one tick + 5 ms at p99.
		ref := plotter.NewFunction(func(float64) float64 { return tickP99LimitMs })
		ref.Color = color.Gray{Y: 120}
		ref.Dashes = []vg.Length{vg.Points(2), vg.Points(3)}
		p.Add(ref)
		p.Legend.Add(fmt.Sprintf("30 Hz target p99 %.1f ms", tickP99LimitMs), ref)
	}
	var ticks []plot.Tick
	for _, pc := range []struct {
		v     float64
		label string
	}{{0, "0%"}, {50, "50%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {99.999, "99.999%"}, {99.9999, "99.9999%"}} {
		if x := percentileX(pc.v); x <= maxX {
			ticks = append(ticks, plot.Tick{Value: x, Label: pc.label})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min, p.X.Max = 0, maxX
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.Padding = vg.Points(2)
	if err := p.Save(11*vg.Inch, 5.5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// ticks125 labels a log axis at 1, 2, 5 x 10^n: plot.LogTicks labels only
// powers of ten, which leaves a 5-60 ms chart with a single label.
func ticks125(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			out = append(out, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
		}
	}
	return out
}
