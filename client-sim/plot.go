package main

import (
	"errors"
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// writePlot draws the latency distribution (latency against percentile, on
// a "number of nines" axis) to path; the extension picks the format (.svg,
// .png, .pdf).
func writePlot(r result, path string) error {
	h := r.latency
	if h == nil || h.TotalCount() == 0 {
		return errors.New("plot: no latency recorded")
	}
	var pts plotter.XYs
	maxX := 0.0
	for _, b := range h.CumulativeDistribution() {
		if b.Quantile >= 100 {
			break // x would be infinite; the max is the last point below
		}
		if b.Count == 0 {
			continue // the iterator's starting point, below every sample
		}
		x := percentileX(b.Quantile)
		pts = append(pts, plotter.XY{X: x, Y: float64(b.ValueAt) / 1000})
		maxX = max(maxX, x)
	}
	pts = append(pts, plotter.XY{X: maxX + 0.25, Y: float64(h.Max()) / 1000})

	p := plot.New()
	p.Title.Text = fmt.Sprintf("Delivery latency: %d clients, rooms of %d, %g msg/s (%d deliveries)",
		r.Clients, r.RoomSize, r.Rate, h.TotalCount())
	p.X.Label.Text = "percentile"
	p.Y.Label.Text = "latency (ms)"
	p.Add(plotter.NewGrid())
	line, err := plotter.NewLine(pts)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	p.Add(line)
	var ticks []plot.Tick
	for _, pc := range []struct {
		v     float64
		label string
	}{{0, "0%"}, {50, "50%"}, {90, "90%"}, {99, "99%"}, {99.9, "99.9%"}, {99.99, "99.99%"}, {99.999, "99.999%"}} {
		if x := percentileX(pc.v); x <= maxX+0.25 {
			ticks = append(ticks, plot.Tick{Value: x, Label: pc.label})
		}
	}
	p.X.Tick.Marker = plot.ConstantTicks(ticks)
	p.X.Min = 0
	p.Y.Min = 0
	if err := p.Save(10*vg.Inch, 5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}
