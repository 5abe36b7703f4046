package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSeqTrack(t *testing.T) {
	t.Parallel()
	type obs struct {
		seq           uint64
		dup, outOfOrd bool
	}
	var s seqTrack
	for i, o := range []obs{
		{1, false, false},
		{2, false, false},
		{2, true, false},  // duplicate of the latest
		{5, false, false}, // 3 and 4 skipped (late, or lost)
		{3, false, true},  // late: out of order
		{3, true, false},  // and now a duplicate
		{1, true, false},  // an old duplicate inside the window
		{4, false, true},
		{5000, false, false}, // a jump past the whole window clears it
		{4999, false, true},
		{5000 - seqWindow, false, true}, // too old to tell: counted as out of order only
		{5001, false, false},
	} {
		dup, ooo := s.observe(o.seq)
		require.Equal(t, o.dup, dup, "step %d (seq %d): dup", i, o.seq)
		require.Equal(t, o.outOfOrd, ooo, "step %d (seq %d): out of order", i, o.seq)
	}
}

func TestSeqTrackRingReuse(t *testing.T) {
	t.Parallel()
	// Going round the ring many times must never report a false duplicate.
	var s seqTrack
	for q := uint64(1); q < 10*seqWindow; q++ {
		dup, ooo := s.observe(q)
		require.False(t, dup || ooo, "seq %d", q)
	}
	dup, _ := s.observe(10*seqWindow - 1)
	require.True(t, dup)
}
