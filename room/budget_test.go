package room_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

// sendBurst sends n numbered messages of size bytes from m and runs the tick.
// It returns what the receiver got and the RATE_LIMITED answers m got.
func sendBurst(h *harness, from, to member, n, size int) (delivered int, limited []*pb.Error) {
	h.t.Helper()
	for i := range n {
		p := make([]byte, size)
		copy(p, fmt.Sprint(i))
		v := text("")
		v.Payload = p
		h.send(from, v)
	}
	h.tick()
	delivered = len(deliveries(frames(h.t, to.p.Take())))
	for _, msg := range from.p.Take() {
		if e := msg.GetError(); e != nil {
			require.Equal(h.t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, e.GetCode())
			require.Positive(h.t, e.GetRetryAfterMs())
			limited = append(limited, e)
		}
	}
	return delivered, limited
}

// A sender's tick budget is a bucket two ticks deep, refilled by one tick's
// budget per tick: after a quiet tick it may add twice its budget to one
// tick (what a client whose input was held back sends at its own pace and
// the relay then reads at once); sustained, one budget per tick. Past the
// bucket messages are dropped, counted, and the sender is told once per
// tick.
func TestSenderTickBudgetIsABucketTwoTicksDeep(t *testing.T) {
	t.Parallel()
	t.Run("messages", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, room.Config{Workers: 1, SenderTickMessages: 3})
		ms := h.room("budget", 2, nil)
		from, to := ms[0], ms[1]

		got, limited := sendBurst(h, from, to, 10, 1)
		require.Equal(t, 6, got, "a fresh sender's bucket is full: two ticks' budget")
		require.Len(t, limited, 1, "told once per tick")
		require.EqualValues(t, 4, h.m.Stats().OverBudget)

		got, limited = sendBurst(h, from, to, 10, 1)
		require.Equal(t, 3, got, "right after a full tick: one tick's refill")
		require.Len(t, limited, 1)

		got, limited = sendBurst(h, from, to, 2, 1)
		require.Equal(t, 2, got)
		require.Empty(t, limited)
		got, limited = sendBurst(h, from, to, 10, 1)
		require.Equal(t, 4, got, "what the tick before left unused carries over, up to the bucket")
		require.Len(t, limited, 1)

		h.tick() // a quiet tick
		h.tick()
		got, limited = sendBurst(h, from, to, 10, 1)
		require.Equal(t, 6, got, "quiet ticks refill the bucket, but no deeper than two ticks")
		require.Len(t, limited, 1)
		require.EqualValues(t, 4+7+6+4, h.m.Stats().OverBudget)
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, room.Config{Workers: 1, MaxFrameBytes: 64 << 10, SenderTickBytes: 4 << 10})
		ms := h.room("budget", 2, nil)
		from, to := ms[0], ms[1]

		got, limited := sendBurst(h, from, to, 10, 1<<10)
		require.Equal(t, 8, got, "two ticks' bytes")
		require.Len(t, limited, 1)
		got, _ = sendBurst(h, from, to, 10, 1<<10)
		require.Equal(t, 4, got, "then one tick's")
		got, limited = sendBurst(h, from, to, 1, 4<<10)
		require.Equal(t, 1, got, "a message as large as the budget fits after a tick")
		require.Empty(t, limited)
	})
}
