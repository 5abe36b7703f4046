package room_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

func TestCongestionBacklogAndConflation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	latest := func(p string) { h.send(a, wire.SendView{Payload: []byte(p), Kind: 1, LatestOnly: true}) }
	normal := func(p string) { h.send(a, wire.SendView{Payload: []byte(p), Kind: 2}) }

	b.p.SetCongested(true)
	normal("n1")
	latest("v1")
	h.tick()
	latest("v2") // supersedes v1, already in the backlog
	normal("n2")
	h.tick()
	require.Zero(t, b.p.Len(), "a congested peer gets nothing")
	require.Equal(t, []string{"n1", "v1", "v2", "n2"}, payloads(deliveries(frames(t, c.p.Take()))))
	d, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Positive(t, d.Members[1].Backlog)
	require.Zero(t, d.Members[2].Backlog)

	// Drained: the backlog goes out first, in the current tick's frame.
	b.p.SetCongested(false)
	normal("n3")
	h.tick()
	fs := frames(t, b.p.Take())
	require.Len(t, fs, 1)
	require.Equal(t, []string{"n1", "v2", "n2", "n3"}, payloads(fs[0].GetDeliveries()))
	d, err = h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Zero(t, d.Members[1].Backlog)
}

func TestCongestedLatestOnlyStaysSmall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxBacklogBytes: 4096})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	b.p.SetCongested(true)
	for i := range 300 {
		h.send(a, wire.SendView{Payload: []byte(fmt.Sprintf("pos%03d", i)), Kind: 1, LatestOnly: true})
		h.send(a, wire.SendView{Payload: []byte("hp"), Kind: 2, LatestOnly: true})
		h.tick()
	}
	d, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Len(t, d.Members, 2, "superseded updates never make a slow consumer")
	require.Less(t, d.Members[1].Backlog, 100)
	b.p.SetCongested(false)
	h.tick()
	require.Equal(t, []string{"pos299", "hp"}, payloads(deliveries(frames(t, b.p.Take()))))
}

func TestBacklogSplitsIntoFrames(t *testing.T) {
	t.Parallel()
	const limit = 1024
	h := newHarness(t, room.Config{MaxFrameBytes: limit})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	b.p.SetCongested(true)
	var want []string
	for i := range 5 {
		for j := range 10 {
			p := fmt.Sprintf("%d-%d-%s", i, j, strings.Repeat("x", 90))
			want = append(want, p)
			h.send(a, text(p))
		}
		h.tick()
	}
	b.p.SetCongested(false)
	h.tick()
	msgs := b.p.Take()
	require.Greater(t, len(msgs), 4)
	for _, m := range msgs {
		require.LessOrEqual(t, proto.Size(m), limit)
		require.Equal(t, msgs[0].GetFrame().GetTick(), m.GetFrame().GetTick())
	}
	require.Equal(t, want, payloads(deliveries(frames(t, msgs))))
}

func TestSlowConsumerEviction(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxBacklogBytes: 1000})
	ms := h.room("r", 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	b.p.SetCongested(true)
	for range 5 {
		h.send(a, wire.SendView{Payload: make([]byte, 100), Kind: 1})
	}
	h.tick()
	require.Zero(t, b.p.Len())
	for range 6 {
		h.send(a, wire.SendView{Payload: make([]byte, 100), Kind: 1})
	}
	h.tick()

	// The explanation goes with the eviction: the transport sends it ahead
	// of anything still queued.
	require.Zero(t, b.p.Len())
	require.Equal(t, []room.EvictCause{room.EvictSlowConsumer}, b.p.Evictions())
	require.Contains(t, b.p.EvictionDetails()[0], "backlog of")
	require.EqualValues(t, 1, h.m.Stats().SlowConsumers)
	_, _, in := b.s.Clock()
	require.False(t, in)

	h.tick()
	evs := events(frames(t, c.p.Take()))
	require.Len(t, evs, 1)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, evs[0].GetType())
	require.Equal(t, b.id, evs[0].GetPlayerId())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_SLOW_CONSUMER, evs[0].GetReason())

	// The room goes on for the others.
	h.send(a, text("still here"))
	h.tick()
	require.Equal(t, []string{"still here"}, payloads(deliveries(frames(t, c.p.Take()))))
	d, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Len(t, d.Members, 2)

	// The seat is idle (the server would close the connection; nothing
	// stops it from joining again).
	b.p.SetCongested(false)
	h.join(b.s, b.p, &pb.Join{RoomId: "r"})
}

func TestSlowConsumerLastMemberClosesRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxBacklogBytes: 100})
	ms := h.room("r", 1, nil)
	a := ms[0]
	a.p.SetCongested(true)
	h.send(a, wire.SendView{Payload: make([]byte, 200), Kind: 1, Echo: true})
	h.tick()
	require.Equal(t, []room.EvictCause{room.EvictSlowConsumer}, a.p.Evictions())
	require.Zero(t, h.m.Stats().Rooms)
}

// A peer that turns congested between the split frames of one tick gets
// the rest later from its backlog, in order, and is evicted only when that
// backlog passes the limit.
func TestCongestionBetweenSplitFramesParksTheRest(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxFrameBytes: 1024})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	b.p.Take()
	var want []string
	for i := range 40 {
		p := fmt.Sprintf("%02d-%s", i, strings.Repeat("y", 90))
		want = append(want, p)
		h.send(a, wire.SendView{Payload: []byte(p), Kind: 1})
	}
	b.p.CongestAfter(1)
	h.tick()
	first := frames(t, b.p.Take())
	require.Len(t, first, 1, "one frame, then the peer is congested")
	got := payloads(first[0].GetDeliveries())
	require.Less(t, len(got), len(want))

	b.p.CongestAfter(0)
	b.p.SetCongested(false)
	h.tick()
	for _, f := range frames(t, b.p.Take()) {
		got = append(got, payloads(f.GetDeliveries())...)
	}
	require.Equal(t, want, got, "nothing lost, nothing reordered")
}

func TestCongestionBetweenSplitFramesEvictsPastTheBacklogLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxFrameBytes: 1024, MaxBacklogBytes: 2048})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	for range 60 {
		h.send(a, wire.SendView{Payload: []byte(strings.Repeat("z", 100)), Kind: 1})
	}
	b.p.CongestAfter(1)
	h.tick()
	require.Equal(t, []room.EvictCause{room.EvictSlowConsumer}, b.p.Evictions())
}
