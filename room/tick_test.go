package room_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/room/roomtest"
)

func TestTickRateChangeAtNextTick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	rate := 20
	require.NoError(t, h.m.UpdateRoom(t.Context(), "r", room.RoomUpdate{TickRate: &rate}))
	_, got, _ := b.s.Clock()
	require.Equal(t, 20, got)
	info, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Equal(t, 20, info.TickRate)

	// The change is announced in the next tick, at most one new period
	// after the last one.
	h.sync()
	h.clock.Advance(50 * time.Millisecond)
	h.sync()
	evs := events(frames(t, b.p.Take()))
	require.Len(t, evs, 1)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_TICK_RATE_CHANGED, evs[0].GetType())
	require.EqualValues(t, 20, evs[0].GetTickRate())
	a.p.Take()

	// From now on, one tick per 50 ms, numbered consecutively.
	prev, _, _ := b.s.Clock()
	for range 4 {
		h.send(a, text("x"))
		h.sync()
		h.clock.Advance(50 * time.Millisecond)
		h.sync()
		fs := frames(t, b.p.Take())
		require.Len(t, fs, 1)
		require.Equal(t, prev+1, fs[0].GetTick())
		prev = fs[0].GetTick()
	}
	info, err = h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Zero(t, info.Overruns, "a rate change is not an overrun")
}

type recordingObserver struct {
	mu       sync.Mutex
	lateness []time.Duration
}

func (o *recordingObserver) ObserveTick(lateness, duration time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lateness = append(o.lateness, lateness)
}

func (o *recordingObserver) max() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	var m time.Duration
	for _, l := range o.lateness {
		m = max(m, l)
	}
	return m
}

func TestOverrunSkipsTicks(t *testing.T) {
	t.Parallel()
	obs := &recordingObserver{}
	h := newHarness(t, room.Config{Observer: obs})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	h.send(a, text("x"))
	h.tick()
	t0 := frames(t, b.p.Take())[0].GetTick()
	before := h.m.Stats()

	// Five deadlines pass while the worker "sleeps": one tick runs, its
	// number jumps by five, no catch-up ticks.
	h.send(a, text("late"))
	h.sync()
	h.clock.Advance(5 * h.period)
	h.sync()
	fs := frames(t, b.p.Take())
	require.Len(t, fs, 1)
	require.Equal(t, t0+5, fs[0].GetTick())
	after := h.m.Stats()
	require.EqualValues(t, 1, after.Ticks-before.Ticks)
	require.EqualValues(t, 1, after.TickOverruns-before.TickOverruns)
	info, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.EqualValues(t, 1, info.Overruns)
	require.Greater(t, info.LastLateness, 4*h.period-time.Nanosecond)
	require.Equal(t, info.LastLateness, info.MaxLateness)
	require.Equal(t, info.MaxLateness, obs.max())

	// The schedule is back on its grid.
	h.send(a, text("y"))
	h.tick()
	fs = frames(t, b.p.Take())
	require.Len(t, fs, 1)
	require.Equal(t, t0+6, fs[0].GetTick())
	info, err = h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Less(t, info.LastLateness, h.period)
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{KeepAliveInterval: 250 * time.Millisecond})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	for range 10 {
		h.send(a, text("busy")) // b is busy; a is quiet
		h.tick()
	}
	fa := frames(t, a.p.Take())
	require.GreaterOrEqual(t, len(fa), 3)
	require.LessOrEqual(t, len(fa), 4)
	for i, f := range fa {
		require.Empty(t, f.GetDeliveries())
		require.Empty(t, f.GetEvents())
		if i > 0 {
			require.Greater(t, f.GetTick(), fa[i-1].GetTick())
		}
	}
	fb := frames(t, b.p.Take())
	require.Len(t, fb, 10, "no keep-alive on top of traffic")
}

func TestSwitchImmediateAndBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{AllowImmediate: true})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	h.send(a, text("pending"))
	zero := 0
	require.NoError(t, h.m.UpdateRoom(t.Context(), "r", room.RoomUpdate{TickRate: &zero}))
	h.sync()
	fs := frames(t, b.p.Take())
	require.Equal(t, []string{"pending"}, payloads(deliveries(fs)), "pending messages flush at once")
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_TICK_RATE_CHANGED, events(fs)[0].GetType())
	require.Zero(t, events(fs)[0].GetTickRate())
	_, rate, _ := b.s.Clock()
	require.Zero(t, rate)
	h.send(a, text("now"))
	h.sync()
	require.Equal(t, []string{"now"}, payloads(deliveries(frames(t, b.p.Take()))))

	ten := 10
	require.NoError(t, h.m.UpdateRoom(t.Context(), "r", room.RoomUpdate{TickRate: &ten}))
	h.send(a, text("batched"))
	h.sync()
	require.Zero(t, b.p.Len())
	h.tick()
	fs = frames(t, b.p.Take())
	require.Len(t, fs, 1)
	require.Equal(t, []string{"batched"}, payloads(fs[0].GetDeliveries()))
	require.EqualValues(t, 10, events(fs)[0].GetTickRate())
	info, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.False(t, info.Immediate)

	// Same rate again: nothing to announce.
	require.NoError(t, h.m.UpdateRoom(t.Context(), "r", room.RoomUpdate{TickRate: &ten}))
	h.tick()
	require.Zero(t, b.p.Len())
}

func TestUpdateRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxPlayersPerRoom: 50})
	h.room("r", 2, nil)
	ptr := func(v int) *int { return &v }
	for _, u := range []room.RoomUpdate{
		{TickRate: ptr(0)}, // immediate not allowed
		{TickRate: ptr(-1)},
		{TickRate: ptr(121)},
		{MaxPlayers: ptr(0)},
		{MaxPlayers: ptr(51)},
	} {
		require.ErrorIs(t, h.m.UpdateRoom(t.Context(), "r", u), room.ErrInvalidArgument)
	}
	require.ErrorIs(t, h.m.UpdateRoom(t.Context(), "nope", room.RoomUpdate{}), room.ErrRoomNotFound)
	require.ErrorIs(t, h.m.UpdateRoom(t.Context(), "bad id", room.RoomUpdate{}), room.ErrRoomNotFound)

	require.NoError(t, h.m.UpdateRoom(t.Context(), "r", room.RoomUpdate{MaxPlayers: ptr(2)}))
	s, p := h.seat()
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 3, Join: &pb.Join{RoomId: "r"}}))
	h.sync()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_FULL, p.Take()[0].GetError().GetCode())
	info, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Equal(t, 2, info.MaxPlayers)
}

// TestSystemClock runs a room on the real clock (Config.Clock nil): ticks
// come from a real timer.
func TestSystemClock(t *testing.T) {
	t.Parallel()
	m, err := room.New(room.Config{Workers: 1, DefaultTickRate: 100})
	require.NoError(t, err)
	defer m.Close()
	pa, pb_ := roomtest.NewPeer(0), roomtest.NewPeer(0)
	a, b := m.NewSeat(pa), m.NewSeat(pb_)
	require.NoError(t, m.Join(a, room.JoinRequest{Join: &pb.Join{RoomId: "real", CreateIfMissing: true}}))
	require.NoError(t, m.Join(b, room.JoinRequest{Join: &pb.Join{RoomId: "real"}}))
	require.Eventually(t, func() bool { return pb_.Len() == 1 }, 5*time.Second, time.Millisecond) // Joined
	v := text("tick tock")
	require.NoError(t, m.Send(a, 0, &v))
	require.Eventually(t, func() bool { return pb_.Len() == 2 }, 5*time.Second, time.Millisecond)
	require.Equal(t, "tick tock", string(pb_.Messages()[1].GetFrame().GetDeliveries()[0].GetPayload()))
	// Idle rooms sleep, so each further tick needs something to deliver.
	for i := 3; i <= 4; i++ {
		require.NoError(t, m.Send(a, 0, &v))
		require.Eventually(t, func() bool { return pb_.Len() == i }, 5*time.Second, time.Millisecond)
	}
	require.GreaterOrEqual(t, m.Stats().Ticks, uint64(3))
	require.NoError(t, m.Leave(a, 0))
	require.NoError(t, m.Leave(b, 0))
	require.Eventually(t, func() bool { return m.Stats().Rooms == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, pa.Err())
	require.NoError(t, pb_.Err())
}
