package room_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

// An idle room leaves the schedule; when it wakes, the ticks that passed
// while it slept are counted (tick x period stays a clock) without counting
// overruns, and its clock kept running meanwhile.
func TestIdleRoomSleepsAndKeepsTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]

	h.send(a, text("before"))
	h.tick()
	before := frames(t, b.p.Take())
	require.Len(t, before, 1)
	t0 := before[0].GetTick()

	ticksBefore := h.m.Stats().Ticks
	for range 10 {
		h.tick() // nothing to do: the room sleeps through these
	}
	require.Equal(t, ticksBefore, h.m.Stats().Ticks, "the room fell asleep after its last delivery")

	tick, rate, ok := a.s.Clock()
	require.True(t, ok)
	require.Equal(t, int(time.Second/h.period), rate)
	require.Equal(t, t0+10, tick, "the clock runs on while the room sleeps")
	info, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Equal(t, t0+10, info.Tick)

	h.send(a, text("after"))
	h.tick()
	after := frames(t, b.p.Take())
	require.Len(t, after, 1)
	require.Equal(t, t0+11, after[0].GetTick(), "ticks count the periods slept through")
	require.Equal(t, "after", payloads(after[0].GetDeliveries())[0])
	require.Zero(t, h.m.Stats().TickOverruns, "sleeping is not running late")
}

// A player joining a sleeping room learns the current tick.
func TestJoinWakesASleepingRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 1, nil)
	first, _, _ := ms[0].s.Clock()
	for range 5 {
		h.tick()
	}
	s, p := h.seat()
	joined := h.join(s, p, &pb.Join{RoomId: "r"})
	require.Equal(t, first+5, joined.GetTick())
}

// A room that falls asleep lets go of its members' emptied pending lists:
// an idle player holds no routing memory. The next event needs one again.
func TestSleepingRoomReleasesPendingLists(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil) // the joins queued events for the earlier members
	for range 3 {
		h.tick()
	}
	for i, m := range ms {
		require.Zero(t, h.m.PendingCap(m.s), "member %d of a sleeping room", i)
	}
	s, p := h.seat()
	h.join(s, p, &pb.Join{RoomId: "r"})
	require.NotZero(t, h.m.PendingCap(ms[0].s), "a new join is queued for the others")
	h.tick()
	for _, m := range ms {
		evs := events(frames(t, m.p.Take()))
		require.Len(t, evs, 1)
		require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, evs[0].GetType())
	}
}

// With keep-alives configured, rooms never sleep: the keep-alive frames
// are their reason to tick.
func TestKeepAliveRoomsDoNotSleep(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{KeepAliveInterval: time.Millisecond})
	ms := h.room("r", 1, nil)
	for range 3 {
		h.tick()
	}
	require.Len(t, frames(t, ms[0].p.Take()), 3)
}
