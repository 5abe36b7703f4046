package room_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

// sendBurst sends n numbered messages of size bytes from m (as held back by
// the transport when heldBack is set) and runs the tick. It returns how many
// the receiver got and the RATE_LIMITED answers the sender got.
func sendBurst(h *harness, from, to member, n, size int, heldBack bool) (delivered int, limited []*pb.Error) {
	h.t.Helper()
	for i := range n {
		p := make([]byte, size)
		copy(p, fmt.Sprint(i))
		v := text("")
		v.Payload = p
		if heldBack {
			require.NoError(h.t, h.m.SendHeldBack(from.s, 0, &v))
		} else {
			h.send(from, v)
		}
	}
	h.tick()
	got := payloads(deliveries(frames(h.t, to.p.Take())))
	for i, p := range got {
		require.Equal(h.t, fmt.Sprint(i), string(p[:len(fmt.Sprint(i))]), "the first ones, in order")
	}
	for _, msg := range from.p.Take() {
		if e := msg.GetError(); e != nil {
			require.Equal(h.t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, e.GetCode())
			require.Positive(h.t, e.GetRetryAfterMs())
			limited = append(limited, e)
		}
	}
	return len(got), limited
}

// budgetRoom is a room of two on a harness made with cfg: a sender and a
// receiver.
func budgetRoom(t *testing.T, cfg room.Config, opts *pb.RoomOptions) (h *harness, from, to member) {
	t.Helper()
	h = newHarness(t, cfg)
	ms := h.room("budget", 2, opts)
	return h, ms[0], ms[1]
}

// A sender's tick budget is a bucket refilled by one tick's budget per tick.
// A message takes at most one tick's budget, so a sender bursting while it
// reads its frames adds one budget per tick; messages the transport held
// back (read at once when the client's frames drained) may take a second
// tick's, borrowed from the next tick. Past it messages are dropped,
// counted, and the sender is told once per tick.
func TestSenderTickBudget(t *testing.T) {
	t.Parallel()
	t.Run("messages", func(t *testing.T) {
		t.Parallel()
		h, from, to := budgetRoom(t, room.Config{Workers: 1, SenderTickMessages: 3}, nil)

		got, limited := sendBurst(h, from, to, 10, 1, false)
		require.Equal(t, 3, got, "one tick's budget")
		require.Len(t, limited, 1, "told once per tick")
		require.EqualValues(t, 7, h.m.Stats().OverBudget)
		got, limited = sendBurst(h, from, to, 10, 1, false)
		require.Equal(t, 3, got, "and one per tick, however long it bursts")
		require.Len(t, limited, 1)

		h.tick() // quiet
		got, limited = sendBurst(h, from, to, 10, 1, true)
		require.Equal(t, 6, got, "held back: two ticks' budget")
		require.Len(t, limited, 1)
		got, _ = sendBurst(h, from, to, 10, 1, false)
		require.Zero(t, got, "the second tick was borrowed from this one")
		got, _ = sendBurst(h, from, to, 10, 1, false)
		require.Equal(t, 3, got, "then the budget is back")
		got, _ = sendBurst(h, from, to, 10, 1, true)
		require.Equal(t, 6, got, "held back right after a full tick: the bucket refilled by one tick")
		require.EqualValues(t, 7+7+4+10+7+4, h.m.Stats().OverBudget)
	})
	t.Run("bytes", func(t *testing.T) {
		t.Parallel()
		h, from, to := budgetRoom(t, room.Config{Workers: 1, MaxFrameBytes: 64 << 10, SenderTickBytes: 4 << 10}, nil)

		got, limited := sendBurst(h, from, to, 10, 1<<10, false)
		require.Equal(t, 4, got, "one tick's bytes")
		require.Len(t, limited, 1)
		h.tick()
		got, _ = sendBurst(h, from, to, 10, 1<<10, true)
		require.Equal(t, 8, got, "held back: two ticks' bytes")
		h.tick()
		got, limited = sendBurst(h, from, to, 1, 4<<10, false)
		require.Equal(t, 1, got, "a message as large as the budget fits")
		require.Empty(t, limited)
	})
	t.Run("immediate room", func(t *testing.T) {
		// An immediate room's tick counts flushes, which only routed
		// messages cause: a sender refused there must not wait for one.
		t.Parallel()
		h, from, to := budgetRoom(t, room.Config{Workers: 1, AllowImmediate: true, MaxFrameBytes: 64 << 10, SenderTickBytes: 4 << 10}, &pb.RoomOptions{Immediate: true})

		got, limited := sendBurst(h, from, to, 1, 8<<10, true)
		require.Equal(t, 1, got, "held back: two ticks' bytes in one flush")
		require.Empty(t, limited)
		got, limited = sendBurst(h, from, to, 1, 1<<10, false)
		require.Equal(t, 1, got, "after the flush the budget is back: nothing borrowed from a flush that may never come")
		require.Empty(t, limited)
	})
	t.Run("reload lowering the budget", func(t *testing.T) {
		t.Parallel()
		h, from, to := budgetRoom(t, room.Config{Workers: 1, SenderTickMessages: 100}, nil)

		got, _ := sendBurst(h, from, to, 10, 1, false)
		require.Equal(t, 10, got)
		require.NoError(t, h.m.Reconfigure(context.Background(), room.Config{DefaultTickRate: testRate, SenderTickMessages: 3}, false))
		got, _ = sendBurst(h, from, to, 10, 1, false)
		require.Zero(t, got, "the tick after, what it spent counts against the new budget, up to one tick's")
		got, _ = sendBurst(h, from, to, 10, 1, false)
		require.Equal(t, 3, got, "then the new budget, not ticks of refusals paying off the old spending")
	})
}
