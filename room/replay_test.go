package room

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The circular replay ring against a plain list of what it should hold:
// pushes, acks, drops of the oldest and replays from any point, through
// many wraps and regrowths, and every frame's references returned.
func TestReplayRingMatchesAList(t *testing.T) {
	t.Parallel()
	pool := &outboundPool{}
	rng := rand.New(rand.NewPCG(7, 11))
	var q replayRing
	var model []*Outbound // what the ring must hold, oldest first
	var first, next uint64 = 1, 1
	var sent []*Outbound
	for step := range 20_000 {
		switch op := rng.IntN(10); {
		case op < 5: // a frame sent
			o := pool.get(1 + rng.IntN(300))
			o.buf = append(o.buf, make([]byte, 1+rng.IntN(300))...)
			q.push(next, o)
			o.Release() // the ring holds its own reference
			sent = append(sent, o)
			if len(model) == 0 {
				first = next
			}
			model = append(model, o)
			next++
		case op < 7 && len(model) > 0: // the client acknowledges some
			upTo := first + uint64(rng.IntN(len(model)+1)) - 1
			q.ack(upTo)
			dropped := int(upTo + 1 - first)
			model, first = model[dropped:], upTo+1
		case op < 8 && len(model) > 0: // over the bound: the oldest goes
			q.dropOldest()
			model, first = model[1:], first+1
		case op < 9: // a resume from a random point
			if len(model) == 0 {
				continue
			}
			from := first - 1 + uint64(rng.IntN(len(model)))
			frames, ok := q.since(from, next-1)
			require.True(t, ok, "step %d", step)
			require.Equal(t, model[from+1-first:], frames, "step %d: replay after %d", step, from)
			if first > 1 {
				_, ok := q.since(first-2, next-1)
				require.False(t, ok, "step %d: a frame already dropped is asked for", step)
			}
		default:
			if rng.IntN(50) == 0 {
				q.clear()
				model = nil
			}
		}
		require.Equal(t, len(model), q.len(), "step %d", step)
		bytes := 0
		for i, o := range model {
			require.Same(t, o, q.at(i), "step %d: frame %d", step, i)
			bytes += len(o.buf)
		}
		require.Equal(t, bytes, q.bytes, "step %d", step)
		if len(model) > 0 {
			require.Equal(t, first, q.first, "step %d", step)
		}
	}
	q.clear()
	for i, o := range sent {
		require.Zero(t, o.refs.Load(), "frame %d: a reference was kept", i)
	}
}
