package main

import (
	"math"
	"slices"
)

// median of the finite values in vs; NaN when there are none. Rounds that
// have no value for a figure (a failed run, an idle run's µs per delivery)
// are NaN and skipped rather than counted as zero.
func median(vs []float64) float64 {
	fin := finite(vs)
	if len(fin) == 0 {
		return math.NaN()
	}
	slices.Sort(fin)
	n := len(fin)
	if n%2 == 1 {
		return fin[n/2]
	}
	return (fin[n/2-1] + fin[n/2]) / 2
}

// minMax of the finite values in vs; NaN, NaN when there are none.
func minMax(vs []float64) (lo, hi float64) {
	fin := finite(vs)
	if len(fin) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(fin), slices.Max(fin)
}

func finite(vs []float64) []float64 {
	out := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

// ratio is a/b, NaN when either is missing or b is zero.
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return math.NaN()
	}
	return a / b
}

// pairedRatios divides num[i] by den[i]: the ratio of two systems measured
// in the same round, which is the only comparison the harness makes (the
// load on a shared machine changes between rounds, much less between two
// neighbouring runs). The slices are indexed by round.
func pairedRatios(num, den []float64) []float64 {
	n := min(len(num), len(den))
	out := make([]float64, n)
	for i := range n {
		out[i] = ratio(num[i], den[i])
	}
	return out
}

// Spread is a figure over rounds: the median and the range.
type Spread struct {
	Median, Min, Max float64
	N                int // finite values
}

func spreadOf(vs []float64) Spread {
	lo, hi := minMax(vs)
	return Spread{Median: median(vs), Min: lo, Max: hi, N: len(finite(vs))}
}
