package main

import (
	"sort"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// Latencies are recorded in microseconds in histograms of the report's
// shape (report.NewHistogram).
func newHist() *hdrhistogram.Histogram { return report.NewHistogram() }

func clampUs(us int64) int64 { return report.ClampMicros(us) }

// histShard is one of a fixed set of latency histograms. Receivers are
// spread over the shards, so recording costs one uncontended lock per frame
// instead of a global lock per delivery, and memory stays at a few shards'
// worth (~140 KB each) instead of one histogram per receiver.
type histShard struct {
	mu   sync.Mutex
	hist *hdrhistogram.Histogram // guarded by mu
}

// merged returns the sum of all shards.
func mergeShards(shards []*histShard) *hdrhistogram.Histogram {
	out := newHist()
	for _, s := range shards {
		s.mu.Lock()
		out.Merge(s.hist)
		s.mu.Unlock()
	}
	return out
}

// seqWindow is how far back duplicate detection reaches, in sequence
// numbers per sender: 1,024 messages, 51 s at 20 msg/s. An older message can
// only be counted as out of order.
const seqWindow = 1024

// seqTrack follows one sender's sequence numbers at one receiver: the
// highest seen and a ring bitmap of the seqWindow numbers up to it.
type seqTrack struct {
	max  uint64
	seen [seqWindow / 64]uint64
}

// observe records seq and says whether it was a duplicate or came after a
// higher one (out of order). Sequence numbers start at 1.
func (s *seqTrack) observe(seq uint64) (dup, outOfOrder bool) {
	switch {
	case seq > s.max:
		if seq-s.max >= seqWindow {
			clear(s.seen[:])
		} else {
			for q := s.max + 1; q < seq; q++ {
				s.clearBit(q)
			}
		}
		s.max = seq
		s.setBit(seq)
		return false, false
	case s.max-seq >= seqWindow:
		return false, true
	case s.bit(seq):
		return true, false
	default:
		s.setBit(seq)
		return false, true
	}
}

func (s *seqTrack) bit(q uint64) bool { return s.seen[(q%seqWindow)/64]&(1<<(q%64)) != 0 }
func (s *seqTrack) setBit(q uint64)   { s.seen[(q%seqWindow)/64] |= 1 << (q % 64) }
func (s *seqTrack) clearBit(q uint64) { s.seen[(q%seqWindow)/64] &^= 1 << (q % 64) }

// errorCounts counts errors by kind ("dial:refused", "join:room_full",
// "disconnect:4000", ...). Errors are rare: one mutex is enough.
type errorCounts struct {
	mu sync.Mutex
	m  map[string]int64
}

func (e *errorCounts) add(kind string) {
	e.mu.Lock()
	if e.m == nil {
		e.m = make(map[string]int64)
	}
	e.m[kind]++
	e.mu.Unlock()
}

func (e *errorCounts) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

func (e *errorCounts) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, v := range e.m {
		n += v
	}
	return n
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
