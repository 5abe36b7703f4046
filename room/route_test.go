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
	"github.com/tickrelay/tickrelay/room/roomtest"
)

func TestRouting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 4, nil)
	a, b, c, d := ms[0], ms[1], ms[2], ms[3]
	send := func(payload string, targets []uint32, echo bool) {
		h.send(a, wire.SendView{Payload: []byte(payload), Kind: 7, Targets: targets, Echo: echo})
	}
	send("all", nil, false)
	send("all+echo", nil, true)
	send("to c", []uint32{c.id}, false)
	send("to b,d dup", []uint32{b.id, d.id, b.id, d.id}, false)
	send("unknown", []uint32{99, 1000}, false)
	send("to c+echo", []uint32{c.id}, true)
	send("self target", []uint32{a.id}, false)
	send("self target+echo", []uint32{a.id, a.id}, true)
	h.tick()

	got := func(m member) []string {
		ds := deliveries(frames(t, m.p.Take()))
		for _, dl := range ds {
			require.Equal(t, a.id, dl.GetSender())
			require.EqualValues(t, 7, dl.GetKind())
		}
		return payloads(ds)
	}
	require.Equal(t, []string{"all+echo", "to c+echo", "self target+echo"}, got(a))
	require.Equal(t, []string{"all", "all+echo", "to b,d dup"}, got(b))
	require.Equal(t, []string{"all", "all+echo", "to c", "to c+echo"}, got(c))
	require.Equal(t, []string{"all", "all+echo", "to b,d dup"}, got(d))

	s := h.m.Stats()
	require.EqualValues(t, 8, s.MessagesIn)
	info, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.EqualValues(t, 8, info.MessagesIn)
	require.EqualValues(t, 3+3+4+3, info.Deliveries)
}

func TestBatchingOneFramePerTick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	var lastTick uint64
	for round := range 3 {
		for i := range 5 {
			h.send(a, text(fmt.Sprintf("a%d-%d", round, i)))
			h.send(b, text(fmt.Sprintf("b%d-%d", round, i)))
		}
		before := h.m.Stats()
		h.tick()
		after := h.m.Stats()
		require.EqualValues(t, 3, after.Frames-before.Frames, "one frame per recipient")
		require.EqualValues(t, 20, after.Deliveries-before.Deliveries)
		require.EqualValues(t, 1, after.Ticks-before.Ticks)

		fc := frames(t, c.p.Take())
		require.Len(t, fc, 1)
		require.Greater(t, fc[0].GetTick(), lastTick)
		lastTick = fc[0].GetTick()
		var fromA, fromB []string
		for _, dl := range fc[0].GetDeliveries() {
			if dl.GetSender() == a.id {
				fromA = append(fromA, string(dl.GetPayload()))
			} else {
				fromB = append(fromB, string(dl.GetPayload()))
			}
		}
		for i := range 5 {
			require.Equal(t, fmt.Sprintf("a%d-%d", round, i), fromA[i], "per-sender order")
			require.Equal(t, fmt.Sprintf("b%d-%d", round, i), fromB[i], "per-sender order")
		}
		fa := frames(t, a.p.Take())
		require.Len(t, fa, 1)
		require.Len(t, fa[0].GetDeliveries(), 5)
		require.Equal(t, lastTick, fa[0].GetTick())
		tick, _, _ := c.s.Clock()
		require.Equal(t, lastTick, tick)
	}
	// Nothing addressed: nothing delivered.
	h.tick()
	require.Zero(t, c.p.Len())
}

func TestFrameSplitting(t *testing.T) {
	t.Parallel()
	const limit = 1024
	h := newHarness(t, room.Config{MaxFrameBytes: limit})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	var want []string
	for i := range 40 {
		p := fmt.Sprintf("%03d%s", i, strings.Repeat("x", 97))
		want = append(want, p)
		h.send(a, text(p))
	}
	h.tick()
	msgs := b.p.Take()
	require.Greater(t, len(msgs), 3)
	tick := msgs[0].GetFrame().GetTick()
	for _, m := range msgs {
		require.LessOrEqual(t, proto.Size(m), limit)
		require.Equal(t, tick, m.GetFrame().GetTick(), "split frames share the tick")
	}
	require.Equal(t, want, payloads(deliveries(frames(t, msgs))))

	// A payload that cannot fit one frame is refused; the largest that can
	// goes out whole.
	v := wire.SendView{Payload: make([]byte, limit), Kind: 1}
	require.ErrorIs(t, h.m.Send(a.s, 0, &v), room.ErrMessageTooLarge)
	v.Payload = make([]byte, limit-50)
	require.NoError(t, h.m.Send(a.s, 0, &v))
	h.tick()
	msgs = b.p.Take()
	require.Len(t, msgs, 1)
	require.LessOrEqual(t, proto.Size(msgs[0]), limit)
}

func TestImmediateMode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{AllowImmediate: true})
	a, pa := h.seat()
	j := h.join(a, pa, &pb.Join{RoomId: "fast", CreateIfMissing: true, Options: &pb.RoomOptions{Immediate: true}})
	require.True(t, j.GetImmediate())
	require.Zero(t, j.GetTickRate())
	b, pbb := h.seat()
	h.join(b, pbb, &pb.Join{RoomId: "fast"})
	h.sync()
	evs := events(frames(t, pa.Take())) // flushed without any tick
	require.Len(t, evs, 1)

	var last uint64
	for i := range 3 {
		v := text(fmt.Sprint(i))
		require.NoError(t, h.m.Send(a, 0, &v))
		h.sync() // no clock advance: immediate rooms do not wait for ticks
		fs := frames(t, pbb.Take())
		require.Len(t, fs, 1)
		require.Equal(t, []string{fmt.Sprint(i)}, payloads(fs[0].GetDeliveries()))
		require.Greater(t, fs[0].GetTick(), last, "flush counter")
		last = fs[0].GetTick()
		tick, rate, in := b.Clock()
		require.True(t, in)
		require.Zero(t, rate)
		require.Equal(t, last, tick)
	}
	info, err := h.m.Room(t.Context(), "fast")
	require.NoError(t, err)
	require.True(t, info.Immediate)
	require.Zero(t, info.TickRate)

	// Ticks of the housekeeping schedule send nothing in a quiet room.
	h.tick()
	h.tick()
	require.Zero(t, pbb.Len())
}

// TestImmediateBurstSharesFrame drives the worker by hand so that a burst
// of sends is drained in one batch.
func TestImmediateBurstSharesFrame(t *testing.T) {
	t.Parallel()
	m, err := room.NewManual(room.Config{Workers: 1, AllowImmediate: true, Clock: roomtest.NewClock(testStart)})
	require.NoError(t, err)
	defer m.Close()
	pa, pb_ := roomtest.NewPeer(0), roomtest.NewPeer(0)
	a, b := m.NewSeat(pa), m.NewSeat(pb_)
	require.NoError(t, m.Join(a, room.JoinRequest{Join: &pb.Join{RoomId: "r", CreateIfMissing: true, Options: &pb.RoomOptions{Immediate: true}}}))
	require.NoError(t, m.Join(b, room.JoinRequest{Join: &pb.Join{RoomId: "r"}}))
	m.Step()
	pa.Take()
	pb_.Take()
	for i := range 10 {
		v := text(fmt.Sprint(i))
		require.NoError(t, m.Send(a, 0, &v))
	}
	m.Step()
	fs := frames(t, pb_.Take())
	require.Len(t, fs, 1)
	require.Len(t, fs[0].GetDeliveries(), 10)
	require.NoError(t, pa.Err())
	require.NoError(t, pb_.Err())
}

func TestInboxOverload(t *testing.T) {
	t.Parallel()
	m, err := room.NewManual(room.Config{Workers: 1, InboxCapacity: 4, Clock: roomtest.NewClock(testStart)})
	require.NoError(t, err)
	defer m.Close()
	p := roomtest.NewPeer(0)
	s := m.NewSeat(p)
	require.NoError(t, m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "r", CreateIfMissing: true}}))
	v := text("x")
	for range 4 {
		require.NoError(t, m.Send(s, 0, &v))
	}
	err = m.Send(s, 0, &v)
	require.ErrorIs(t, err, room.ErrOverloaded)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_OVERLOADED, room.ErrorCode(err))
	require.EqualValues(t, 1, m.Stats().MessagesDropped)
	// Control commands are never refused.
	require.NoError(t, m.Leave(s, 0))
	m.Step()
	require.EqualValues(t, 4, m.Stats().MessagesIn)
	require.NoError(t, m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "r", CreateIfMissing: true}}))
	require.NoError(t, m.Send(s, 0, &v), "the inbox has room again")
}

func TestLatestOnlyConflation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	latest := func(m member, kind uint32, p string) {
		h.send(m, wire.SendView{Payload: []byte(p), Kind: kind, LatestOnly: true})
	}
	normal := func(m member, p string) { h.send(m, wire.SendView{Payload: []byte(p), Kind: 2}) }

	// Drops are counted as the worker routes, which may be before tick():
	// take the snapshot before sending.
	before := h.m.Stats().MessagesDropped
	latest(a, 1, "pos1")
	normal(a, "n1")
	latest(a, 1, "pos2")
	normal(a, "n2")
	latest(a, 3, "other kind")
	latest(b, 1, "b pos") // another sender: not conflated with a's
	latest(a, 1, "pos3")
	h.tick()
	got := payloads(deliveries(frames(t, c.p.Take())))
	// The newest pos goes at the end, after everything a sent before it; a's
	// own order is kept.
	require.Equal(t, []string{"n1", "n2", "other kind", "b pos", "pos3"}, got)
	require.EqualValues(t, 2, h.m.Stats().MessagesDropped-before, "pos1 and pos2, counted once each (not per recipient)")
	require.Equal(t, []string{"n1", "n2", "other kind", "pos3"}, payloads(deliveries(frames(t, b.p.Take()))))

	// Conflation only within a tick.
	latest(a, 1, "t1")
	h.tick()
	latest(a, 1, "t2")
	h.tick()
	require.Equal(t, []string{"t1", "t2"}, payloads(deliveries(frames(t, b.p.Take()))))
	c.p.Take()

	// An update to other recipients supersedes nothing: both go out, in
	// order.
	h.send(a, wire.SendView{Payload: []byte("v1"), Kind: 9, LatestOnly: true})
	h.send(a, wire.SendView{Payload: []byte("v2"), Kind: 9, LatestOnly: true, Targets: []uint32{b.id}})
	h.tick()
	require.Equal(t, []string{"v1", "v2"}, payloads(deliveries(frames(t, b.p.Take()))))
	require.Equal(t, []string{"v1"}, payloads(deliveries(frames(t, c.p.Take()))))

	// The same targets: superseded.
	h.send(a, wire.SendView{Payload: []byte("w1"), Kind: 9, LatestOnly: true, Targets: []uint32{b.id}})
	h.send(a, wire.SendView{Payload: []byte("w2"), Kind: 9, LatestOnly: true, Targets: []uint32{b.id}})
	h.tick()
	require.Equal(t, []string{"w2"}, payloads(deliveries(frames(t, b.p.Take()))))
	require.Empty(t, c.p.Take())
}

// TestBroadcastLogPerRecipient checks the frames built from a room's
// broadcast log against the order every recipient must see: broadcasts
// and targeted messages of several senders interleaved in routing order,
// a member's own broadcasts left out (echoed ones kept), a superseded
// latest-only update skipped, and the same for a congested member (its
// messages held back, then delivered in order) and for a tick that splits
// over several frames.
func TestBroadcastLogPerRecipient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxFrameBytes: 1024})
	ms := h.room("r", 4, nil)
	a, b, c, d := ms[0], ms[1], ms[2], ms[3]
	send := func(from member, payload string, targets []uint32, echo, latest bool) {
		h.send(from, wire.SendView{Payload: []byte(payload), Kind: 3, Targets: targets, Echo: echo, LatestOnly: latest})
	}
	d.p.SetCongested(true)
	send(a, "a1", nil, false, false)
	send(b, "b1 to c,d", []uint32{c.id, d.id}, false, false)
	send(b, "b2", nil, false, false)
	send(a, "a-pos1", nil, false, true) // superseded by a-pos2
	send(c, "c1 echo", nil, true, false)
	send(a, "a2 to c", []uint32{c.id}, false, false)
	send(b, "b3", nil, false, false)
	send(a, "a-pos2", nil, false, true)
	send(c, "c2 to a", []uint32{a.id}, false, false)
	h.tick()
	got := func(m member) []string { return payloads(deliveries(frames(t, m.p.Take()))) }
	require.Equal(t, []string{"b2", "c1 echo", "b3", "c2 to a"}, got(a))
	require.Equal(t, []string{"a1", "c1 echo", "a-pos2"}, got(b))
	require.Equal(t, []string{"a1", "b1 to c,d", "b2", "c1 echo", "a2 to c", "b3", "a-pos2"}, got(c))
	require.Empty(t, d.p.Take(), "congested: held back")
	d.p.SetCongested(false)
	h.tick()
	require.Equal(t, []string{"a1", "b1 to c,d", "b2", "c1 echo", "b3", "a-pos2"}, got(d))

	// A tick larger than a frame: split, in order, every frame within
	// the limit, the recipient's own messages still left out.
	var want []string
	for i := range 30 {
		from, to := a, []uint32(nil)
		if i%3 == 1 {
			from = b
		}
		if i%5 == 2 {
			to = []uint32{c.id}
		}
		p := fmt.Sprintf("%02d-%s", i, strings.Repeat("y", 90))
		if from != c && (to == nil || to[0] == c.id) {
			want = append(want, p)
		}
		send(from, p, to, false, false)
	}
	h.tick()
	msgs := c.p.Take()
	require.Greater(t, len(msgs), 1)
	for _, m := range msgs {
		require.LessOrEqual(t, proto.Size(m), 1024)
	}
	require.Equal(t, want, payloads(deliveries(frames(t, msgs))))
}
