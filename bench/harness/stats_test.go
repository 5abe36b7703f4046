package main

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{nan, 5, 1, nan}, 3},      // failed rounds are skipped, not zeros
		{[]float64{1, math.Inf(1), 2}, 1.5}, // so are infinities
	} {
		require.Equal(t, c.want, median(c.in), "median(%v)", c.in)
	}
	require.True(t, math.IsNaN(median(nil)))
	require.True(t, math.IsNaN(median([]float64{nan, nan})))

	in := []float64{3, 1, 2}
	median(in)
	require.Equal(t, []float64{3, 1, 2}, in, "median must not reorder its input")
}

func TestMinMaxAndSpread(t *testing.T) {
	t.Parallel()
	lo, hi := minMax([]float64{2, math.NaN(), -1, 7})
	require.Equal(t, -1.0, lo)
	require.Equal(t, 7.0, hi)
	lo, hi = minMax(nil)
	require.True(t, math.IsNaN(lo) && math.IsNaN(hi))

	s := spreadOf([]float64{0.3, math.NaN(), 0.2, 0.4})
	require.Equal(t, Spread{Median: 0.3, Min: 0.2, Max: 0.4, N: 3}, s)
}

func TestPairedRatios(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	// Round 2 of the denominator failed, round 3 of the numerator has a
	// zero denominator: neither may turn into a figure.
	got := pairedRatios([]float64{2, 3, 4, 9}, []float64{4, nan, 0})
	require.Len(t, got, 3)
	require.Equal(t, 0.5, got[0])
	require.True(t, math.IsNaN(got[1]))
	require.True(t, math.IsNaN(got[2]))
	// The median of per-round ratios, not the ratio of medians.
	require.Equal(t, 0.5, median(pairedRatios([]float64{1, 10, 100}, []float64{2, 20, 100})))
}
