package room_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/room/roomtest"
)

func TestRoomsAndRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{Workers: 3})
	for _, id := range []string{"c", "a", "b", "d", "e"} {
		h.room(id, 1, &pb.RoomOptions{Metadata: map[string]string{"id": id}})
	}
	h.room("b", 1, nil)
	infos, err := h.m.Rooms(t.Context())
	require.NoError(t, err)
	require.Len(t, infos, 5)
	for i, id := range []string{"a", "b", "c", "d", "e"} {
		require.Equal(t, id, infos[i].ID)
		require.Equal(t, id, infos[i].Metadata["id"])
		require.Equal(t, testRate, infos[i].TickRate)
		require.False(t, infos[i].CreatedAt.Before(testStart))
		require.Positive(t, infos[i].Tick)
	}
	require.Equal(t, 2, infos[1].Players)

	d, err := h.m.Room(t.Context(), "b")
	require.NoError(t, err)
	require.Equal(t, "b", d.ID)
	require.EqualValues(t, 1, d.Host)
	require.Len(t, d.Members, 2)
	require.EqualValues(t, 2, d.Members[1].PlayerID)
	require.Equal(t, testStart.Add(5*h.period), d.Members[1].JoinedAt, "joined after five rooms ticked once each")

	_, err = h.m.Room(t.Context(), "zzz")
	require.ErrorIs(t, err, room.ErrRoomNotFound)
	_, err = h.m.Room(t.Context(), "")
	require.ErrorIs(t, err, room.ErrRoomNotFound)
}

func TestKick(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil)
	a, b, c := ms[0], ms[1], ms[2]
	h.send(a, text("before kick"))
	require.NoError(t, h.m.Kick(t.Context(), "r", b.id, "be nice"))
	msgs := b.p.Take()
	require.Len(t, msgs, 2)
	require.Equal(t, []string{"before kick"}, payloads(msgs[0].GetFrame().GetDeliveries()))
	left := msgs[1].GetLeft()
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_KICKED, left.GetReason())
	require.Equal(t, "be nice", left.GetMessage())
	require.Equal(t, "r", left.GetRoomId())
	require.Equal(t, []room.EvictCause{room.EvictKicked}, b.p.Evictions())
	_, _, in := b.s.Clock()
	require.False(t, in)

	h.tick()
	evs := events(frames(t, c.p.Take()))
	require.Len(t, evs, 1)
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_KICKED, evs[0].GetReason())
	require.Equal(t, b.id, evs[0].GetPlayerId())

	require.ErrorIs(t, h.m.Kick(t.Context(), "r", b.id, ""), room.ErrPlayerNotFound)
	require.ErrorIs(t, h.m.Kick(t.Context(), "nope", 1, ""), room.ErrRoomNotFound)
	require.ErrorIs(t, h.m.Kick(t.Context(), "bad id!", 1, ""), room.ErrRoomNotFound)

	// Kicking the host moves the host; invalid UTF-8 in reasons is sanitised.
	a.p.Take()
	require.NoError(t, h.m.Kick(t.Context(), "r", a.id, "\xff"))
	require.Equal(t, "\uFFFD", a.p.Take()[0].GetLeft().GetMessage())
	h.tick()
	evs = events(frames(t, c.p.Take()))
	require.Len(t, evs, 2)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED, evs[1].GetType())
	require.Equal(t, c.id, evs[1].GetPlayerId())
}

func TestKickRacingLeave(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	for range 50 {
		ms := h.room("r", 2, nil)
		b := ms[1]
		require.NoError(t, h.m.Leave(b.s, 42))
		err := h.m.Kick(t.Context(), "r", b.id, "")
		if err != nil {
			require.ErrorIs(t, err, room.ErrPlayerNotFound)
		}
		h.sync()
		// Either way the seat ends idle with exactly one answer to its
		// Leave request.
		answers := 0
		for _, m := range b.p.Take() {
			if m.GetRequestId() == 42 {
				answers++
			}
		}
		require.Equal(t, 1, answers)
		require.NoError(t, h.m.Join(b.s, room.JoinRequest{Join: &pb.Join{RoomId: "r"}}))
		require.NoError(t, h.m.CloseRoom(t.Context(), "r", ""))
		h.sync()
		for _, m := range ms {
			m.p.Take()
		}
	}
}

func TestCloseRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil)
	h.send(ms[0], text("last words"))
	require.NoError(t, h.m.CloseRoom(t.Context(), "r", "maintenance"))
	for i, m := range ms {
		msgs := m.p.Take()
		require.NotEmpty(t, msgs)
		if i > 0 {
			require.Equal(t, []string{"last words"}, payloads(msgs[0].GetFrame().GetDeliveries()))
		}
		left := msgs[len(msgs)-1].GetLeft()
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_ROOM_CLOSED, left.GetReason())
		require.Equal(t, "maintenance", left.GetMessage())
		require.Empty(t, m.p.Evictions(), "connections stay open")
	}
	_, err := h.m.Room(t.Context(), "r")
	require.ErrorIs(t, err, room.ErrRoomNotFound)
	require.Zero(t, h.m.Stats().Players)
	require.Zero(t, h.m.Stats().Rooms)
	require.ErrorIs(t, h.m.CloseRoom(t.Context(), "r", ""), room.ErrRoomNotFound)
	require.ErrorIs(t, h.m.CloseRoom(t.Context(), "", ""), room.ErrRoomNotFound)
	// The seats are free to join again.
	h.join(ms[0].s, ms[0].p, &pb.Join{RoomId: "r", CreateIfMissing: true})
}

func TestDraining(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 1, nil)
	h.m.SetDraining(true)
	s, p := h.seat()
	err := h.m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "r"}})
	require.ErrorIs(t, err, room.ErrDraining)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_DRAINING, room.ErrorCode(err))
	h.send(ms[0], text("members are unaffected"))
	h.m.SetDraining(false)
	h.join(s, p, &pb.Join{RoomId: "r"})
}

func TestStats(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{Workers: 2})
	a := h.room("x", 2, nil)
	b := h.room("y", 3, nil)
	before := h.m.Stats()
	require.Equal(t, 2, before.Rooms)
	require.Equal(t, 5, before.Players)
	h.send(a[0], text("1"))
	h.send(b[0], text("2"))
	h.send(b[1], text("3"))
	h.tick()
	s := h.m.Stats()
	require.EqualValues(t, 3, s.MessagesIn-before.MessagesIn)
	require.EqualValues(t, 1+2+2, s.Deliveries-before.Deliveries)
	require.EqualValues(t, 1+3, s.Frames-before.Frames)
	require.EqualValues(t, 2, s.Ticks-before.Ticks)
	require.Positive(t, s.FrameBytes-before.FrameBytes)
}

func TestClosedManager(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 2, nil)
	h.m.Close()
	ctx := t.Context()
	s, _ := h.seat()
	require.ErrorIs(t, h.m.Join(s, room.JoinRequest{Join: &pb.Join{}}), room.ErrClosed)
	v := text("x")
	require.ErrorIs(t, h.m.Send(ms[0].s, 0, &v), room.ErrClosed)
	require.ErrorIs(t, h.m.Leave(ms[0].s, 0), room.ErrClosed)
	h.m.Disconnect(ms[1].s)
	_, err := h.m.Rooms(ctx)
	require.ErrorIs(t, err, room.ErrClosed)
	_, err = h.m.Room(ctx, "r")
	require.ErrorIs(t, err, room.ErrClosed)
	require.ErrorIs(t, h.m.UpdateRoom(ctx, "r", room.RoomUpdate{}), room.ErrClosed)
	require.ErrorIs(t, h.m.CloseRoom(ctx, "r", ""), room.ErrClosed)
	require.ErrorIs(t, h.m.Kick(ctx, "r", 1, ""), room.ErrClosed)
	require.ErrorIs(t, h.m.Sync(), room.ErrClosed)
	require.Equal(t, 1, h.m.Stats().Rooms)
}

func TestAdminContext(t *testing.T) {
	t.Parallel()
	// Workers that never run: every admin call waits until its context ends.
	m, err := room.NewManual(room.Config{Workers: 2, Clock: roomtest.NewClock(testStart)})
	require.NoError(t, err)
	defer m.Close()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = m.Rooms(canceled)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, m.Kick(canceled, "r", 1, ""), context.Canceled)

	short, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	_, err = m.Room(short, "r")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = m.Rooms(short)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
