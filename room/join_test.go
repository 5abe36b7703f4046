package room_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		cfg   room.Config
		field string
	}{
		{room.Config{Workers: -1}, "Workers"},
		{room.Config{Workers: 5000}, "Workers"},
		{room.Config{MinTickRate: 50, MaxTickRate: 10}, "MinTickRate"},
		{room.Config{DefaultTickRate: 200}, "DefaultTickRate"},
		{room.Config{MaxTickRate: 5000}, "MaxTickRate"},
		{room.Config{DefaultMaxPlayers: 50, MaxPlayersPerRoom: 10}, "DefaultMaxPlayers"},
		{room.Config{MaxFrameBytes: 100}, "MaxFrameBytes"},
		{room.Config{MaxBacklogBytes: -5}, "MaxBacklogBytes"},
		{room.Config{InboxCapacity: -1}, "InboxCapacity"},
		{room.Config{Headroom: 100}, "Headroom"},
		{room.Config{MaxMetadataBytes: -1}, "MaxMetadataBytes"},
		{room.Config{KeepAliveInterval: -time.Second}, "KeepAliveInterval"},
		{room.Config{KeepAliveInterval: time.Microsecond}, "KeepAliveInterval"},
	}
	for _, c := range cases {
		m, err := room.New(c.cfg)
		require.ErrorIs(t, err, room.ErrInvalidArgument, "%+v", c.cfg)
		require.Contains(t, err.Error(), "Config."+c.field)
		require.Nil(t, m)
	}
	m, err := room.New(room.Config{})
	require.NoError(t, err)
	m.Close()
	m.Close() // idempotent
}

func TestErrorCodes(t *testing.T) {
	t.Parallel()
	for err, code := range map[error]pb.ErrorCode{
		room.ErrRoomFull:        pb.ErrorCode_ERROR_CODE_ROOM_FULL,
		room.ErrRoomNotFound:    pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND,
		room.ErrNotInRoom:       pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM,
		room.ErrAlreadyInRoom:   pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM,
		room.ErrInvalidArgument: pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT,
		room.ErrRoomLimit:       pb.ErrorCode_ERROR_CODE_ROOM_LIMIT_REACHED,
		room.ErrDraining:        pb.ErrorCode_ERROR_CODE_DRAINING,
		room.ErrOverloaded:      pb.ErrorCode_ERROR_CODE_OVERLOADED,
		room.ErrMessageTooLarge: pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE,
		room.ErrClosed:          pb.ErrorCode_ERROR_CODE_INTERNAL,
	} {
		require.Equal(t, code, room.ErrorCode(err), "%v", err)
	}
}

func TestJoinWithServerCode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{Workers: 3, MaxPlayersPerRoom: 4})
	seen := map[string]bool{}
	for range 60 {
		s, p := h.seat()
		j := h.join(s, p, &pb.Join{PlayerMetadata: map[string]string{"name": "x"}})
		code := j.GetRoomId()
		require.Len(t, code, 6)
		for _, c := range code {
			require.Contains(t, "23456789ABCDEFGHJKMNPQRSTUVWXYZ", string(c))
		}
		require.False(t, seen[code], "code %s reused", code)
		seen[code] = true
		require.EqualValues(t, 1, j.GetPlayerId())
		require.EqualValues(t, 1, j.GetHostId())
		require.EqualValues(t, testRate, j.GetTickRate())
		require.EqualValues(t, 4, j.GetMaxPlayers(), "DefaultMaxPlayers follows a lower MaxPlayersPerRoom")
		require.Len(t, j.GetMembers(), 1)
		require.Equal(t, "x", j.GetMembers()[0].GetMetadata()["name"])
	}
	require.Equal(t, 60, h.m.Stats().Rooms)
	require.Equal(t, 60, h.m.Stats().Players)
}

func TestJoinCreateIfMissingAndOptions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	a, pa := h.seat()
	opts := &pb.RoomOptions{MaxPlayers: 3, TickRate: 20, Metadata: map[string]string{"map": "dust"}}
	j := h.join(a, pa, &pb.Join{RoomId: "lobby", CreateIfMissing: true, Options: opts, PlayerMetadata: map[string]string{"n": "a"}})
	require.Equal(t, "lobby", j.GetRoomId())
	require.EqualValues(t, 20, j.GetTickRate())
	require.EqualValues(t, 3, j.GetMaxPlayers())
	require.Equal(t, "dust", j.GetRoomMetadata()["map"])
	require.False(t, j.GetImmediate())

	// A second joiner's options are ignored; the room exists already.
	b, pb_ := h.seat()
	j = h.join(b, pb_, &pb.Join{RoomId: "lobby", CreateIfMissing: true, Options: &pb.RoomOptions{TickRate: 5}, PlayerMetadata: map[string]string{"n": "b"}})
	require.EqualValues(t, 2, j.GetPlayerId())
	require.EqualValues(t, 1, j.GetHostId())
	require.EqualValues(t, 20, j.GetTickRate())
	require.Len(t, j.GetMembers(), 2)
	require.EqualValues(t, 1, j.GetMembers()[0].GetPlayerId())
	require.Equal(t, "a", j.GetMembers()[0].GetMetadata()["n"])
	require.Equal(t, "b", j.GetMembers()[1].GetMetadata()["n"])

	tick, rate, in := b.Clock()
	require.True(t, in)
	require.Equal(t, 20, rate)
	require.Equal(t, j.GetTick(), tick)
}

func TestJoinAsyncErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxRooms: 2})

	expectError := func(p interface {
		Take() []*pb.ServerMessage
	}, reqID uint32, code pb.ErrorCode) {
		t.Helper()
		msgs := p.Take()
		require.Len(t, msgs, 1)
		require.Equal(t, reqID, msgs[0].GetRequestId())
		require.Equal(t, code, msgs[0].GetError().GetCode(), "%v", msgs[0])
		require.NotEmpty(t, msgs[0].GetError().GetMessage())
	}

	s, p := h.seat()
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 5, Join: &pb.Join{RoomId: "nope"}}))
	h.sync()
	expectError(p, 5, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND)
	_, _, in := s.Clock()
	require.False(t, in)

	// Full: max players 1.
	h.join(s, p, &pb.Join{RoomId: "solo", CreateIfMissing: true, Options: &pb.RoomOptions{MaxPlayers: 1}})
	s2, p2 := h.seat()
	require.NoError(t, h.m.Join(s2, room.JoinRequest{RequestID: 6, Join: &pb.Join{RoomId: "solo"}}))
	h.sync()
	expectError(p2, 6, pb.ErrorCode_ERROR_CODE_ROOM_FULL)

	// Room limit: two rooms exist after this one.
	h.join(s2, p2, &pb.Join{RoomId: "second", CreateIfMissing: true})
	s3, p3 := h.seat()
	require.NoError(t, h.m.Join(s3, room.JoinRequest{RequestID: 7, Join: &pb.Join{}}))
	h.sync()
	expectError(p3, 7, pb.ErrorCode_ERROR_CODE_ROOM_LIMIT_REACHED)
	require.NoError(t, h.m.Join(s3, room.JoinRequest{RequestID: 8, Join: &pb.Join{RoomId: "third", CreateIfMissing: true}}))
	h.sync()
	expectError(p3, 8, pb.ErrorCode_ERROR_CODE_ROOM_LIMIT_REACHED)

	// The failed seat is idle again: it can join an existing room.
	j := h.join(s3, p3, &pb.Join{RoomId: "second"})
	require.EqualValues(t, 2, j.GetPlayerId())
	require.Equal(t, 2, h.m.Stats().Rooms)
}

func TestJoinSyncErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{MaxMetadataBytes: 16, MaxPlayersPerRoom: 10, MinTickRate: 5, MaxTickRate: 60})
	s, p := h.seat()
	invalid := []*pb.Join{
		{RoomId: strings.Repeat("a", 65)},
		{RoomId: "bad id"},
		{RoomId: "bad/id"},
		{RoomId: "héllo"},
		{Options: &pb.RoomOptions{TickRate: 4}},
		{Options: &pb.RoomOptions{TickRate: 61}},
		{Options: &pb.RoomOptions{TickRate: 1 << 31}},
		{Options: &pb.RoomOptions{Immediate: true}},
		{Options: &pb.RoomOptions{MaxPlayers: 11}},
		{PlayerMetadata: map[string]string{"k": strings.Repeat("v", 16)}},
		{Options: &pb.RoomOptions{Metadata: map[string]string{"key": strings.Repeat("v", 14)}}},
		{PlayerMetadata: map[string]string{"k": "\xff"}},
		nil,
	}
	for _, j := range invalid {
		err := h.m.Join(s, room.JoinRequest{Join: j})
		require.ErrorIs(t, err, room.ErrInvalidArgument, "%v", j)
		require.Equal(t, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, room.ErrorCode(err))
	}
	require.ErrorIs(t, h.m.Join(nil, room.JoinRequest{Join: &pb.Join{}}), room.ErrInvalidArgument)

	h.m.SetDraining(true)
	require.ErrorIs(t, h.m.Join(s, room.JoinRequest{Join: &pb.Join{}}), room.ErrDraining)
	h.m.SetDraining(false)

	// Valid edge values, and the seat is idle after every failure.
	h.join(s, p, &pb.Join{RoomId: strings.Repeat("a", 64), CreateIfMissing: true,
		Options: &pb.RoomOptions{TickRate: 60, MaxPlayers: 10}, PlayerMetadata: map[string]string{"k": strings.Repeat("v", 15)}})
	require.ErrorIs(t, h.m.Join(s, room.JoinRequest{Join: &pb.Join{}}), room.ErrAlreadyInRoom)

	// Leave in progress: the seat is busy (the caller holds the Join and
	// retries when the peer is told Ready).
	require.NoError(t, h.m.Leave(s, 1))
	require.ErrorIs(t, h.m.Join(s, room.JoinRequest{Join: &pb.Join{}}), room.ErrSeatBusy)
	require.ErrorIs(t, h.m.Leave(s, 2), room.ErrNotInRoom)
	readies := p.Readies()
	h.sync()
	msgs := p.Take()
	require.Len(t, msgs, 1)
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, msgs[0].GetLeft().GetReason())
	require.Greater(t, p.Readies(), readies, "the peer is told when the seat settles")
	require.NoError(t, h.m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "again", CreateIfMissing: true}}))
	h.sync()
	require.NotNil(t, p.Take()[0].GetJoined())
	require.EqualValues(t, 1, msgs[0].GetRequestId())
}

func TestSendAndLeaveOutsideRoom(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	s, _ := h.seat()
	v := text("x")
	require.ErrorIs(t, h.m.Send(s, 1, &v), room.ErrNotInRoom)
	require.ErrorIs(t, h.m.Leave(s, 1), room.ErrNotInRoom)
	require.ErrorIs(t, h.m.Send(nil, 1, &v), room.ErrInvalidArgument)
	require.ErrorIs(t, h.m.Send(s, 1, nil), room.ErrInvalidArgument)
	require.ErrorIs(t, h.m.Leave(nil, 1), room.ErrInvalidArgument)
	h.m.Disconnect(nil) // no panic
}

func TestPipelinedRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 1, nil)
	a := ms[0]

	// Join + Send pipelined: the send is routed after the join.
	b, pb_ := h.seat()
	require.NoError(t, h.m.Join(b, room.JoinRequest{RequestID: 1, Join: &pb.Join{RoomId: "r"}}))
	v := text("hello")
	require.NoError(t, h.m.Send(b, 2, &v))
	h.tick()
	require.Equal(t, []string{"hello"}, payloads(deliveries(frames(t, a.p.Take()))))
	require.NotNil(t, pb_.Take()[0].GetJoined())

	// Join of a missing room + Send pipelined: Error for both requests.
	c, pc := h.seat()
	require.NoError(t, h.m.Join(c, room.JoinRequest{RequestID: 3, Join: &pb.Join{RoomId: "missing"}}))
	err := h.m.Send(c, 4, &v)
	h.sync()
	msgs := pc.Take()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, msgs[0].GetError().GetCode())
	require.EqualValues(t, 3, msgs[0].GetRequestId())
	if err == nil { // accepted while joining: answered by the worker
		require.Len(t, msgs, 2)
		require.Equal(t, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, msgs[1].GetError().GetCode())
		require.EqualValues(t, 4, msgs[1].GetRequestId())
	} else {
		require.ErrorIs(t, err, room.ErrNotInRoom)
	}

	// Join + Leave pipelined: Joined then Left; the others see both.
	d, pd := h.seat()
	require.NoError(t, h.m.Join(d, room.JoinRequest{RequestID: 5, Join: &pb.Join{RoomId: "r"}}))
	require.NoError(t, h.m.Leave(d, 6))
	h.tick()
	msgs = pd.Take()
	require.Len(t, msgs, 2)
	require.EqualValues(t, 5, msgs[0].GetRequestId())
	require.NotNil(t, msgs[0].GetJoined())
	require.EqualValues(t, 6, msgs[1].GetRequestId())
	require.Equal(t, "r", msgs[1].GetLeft().GetRoomId())
	evs := events(frames(t, a.p.Take()))
	require.Len(t, evs, 2)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, evs[0].GetType())
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, evs[1].GetType())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, evs[1].GetReason())

	// Join of a missing room + Leave pipelined: Error, then Error NOT_IN_ROOM.
	e, pe := h.seat()
	require.NoError(t, h.m.Join(e, room.JoinRequest{RequestID: 7, Join: &pb.Join{RoomId: "missing"}}))
	require.NoError(t, h.m.Leave(e, 8))
	h.sync()
	msgs = pe.Take()
	require.Len(t, msgs, 2)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, msgs[0].GetError().GetCode())
	require.Equal(t, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, msgs[1].GetError().GetCode())
	require.EqualValues(t, 8, msgs[1].GetRequestId())
	require.NoError(t, h.m.Join(e, room.JoinRequest{Join: &pb.Join{RoomId: "r"}}))
}

func TestSendBeforeLeaveIsRelayed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	h.send(a, text("bye"))
	require.NoError(t, h.m.Leave(a.s, 9))
	v := text("late")
	require.ErrorIs(t, h.m.Send(a.s, 10, &v), room.ErrNotInRoom)
	h.tick()
	fs := frames(t, b.p.Take())
	require.Equal(t, []string{"bye"}, payloads(deliveries(fs)))
	require.Len(t, events(fs), 2) // PLAYER_LEFT, HOST_CHANGED
}

func TestLeaverGetsWhatWasAddressedToIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	h.send(a, text("for b"))
	require.NoError(t, h.m.Leave(b.s, 3))
	h.sync()
	msgs := b.p.Take()
	require.Len(t, msgs, 2)
	require.Equal(t, []string{"for b"}, payloads(msgs[0].GetFrame().GetDeliveries()))
	require.NotNil(t, msgs[1].GetLeft())
}

func TestPresenceAndHostMigration(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 1, nil)
	a := ms[0]
	b, pb_ := h.seat()
	j := h.join(b, pb_, &pb.Join{RoomId: "r", PlayerMetadata: map[string]string{"name": "bob"}})
	h.tick()
	evs := events(frames(t, a.p.Take()))
	require.Len(t, evs, 1)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, evs[0].GetType())
	require.Equal(t, j.GetPlayerId(), evs[0].GetPlayerId())
	require.Equal(t, "bob", evs[0].GetMetadata()["name"])
	require.Empty(t, pb_.Take(), "the joiner gets no event about itself")

	c, pc := h.seat()
	h.join(c, pc, &pb.Join{RoomId: "r"})
	h.tick()
	a.p.Take()
	pb_.Take()

	// The host (a) leaves: b, the oldest remaining, becomes host.
	require.NoError(t, h.m.Leave(a.s, 1))
	h.tick()
	for _, p := range []interface {
		Take() []*pb.ServerMessage
	}{pb_, pc} {
		evs := events(frames(t, p.Take()))
		require.Len(t, evs, 2)
		require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, evs[0].GetType())
		require.Equal(t, a.id, evs[0].GetPlayerId())
		require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED, evs[1].GetType())
		require.Equal(t, j.GetPlayerId(), evs[1].GetPlayerId())
	}
	d, err := h.m.Room(t.Context(), "r")
	require.NoError(t, err)
	require.Equal(t, j.GetPlayerId(), d.Host)

	// A non-host leaving changes no host.
	require.NoError(t, h.m.Leave(c, 2))
	h.tick()
	evs = events(frames(t, pb_.Take()))
	require.Len(t, evs, 1)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, evs[0].GetType())
}

func TestPlayerIDsAndRoomLifetime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 3, nil)
	require.Equal(t, []uint32{1, 2, 3}, []uint32{ms[0].id, ms[1].id, ms[2].id})
	require.NoError(t, h.m.Leave(ms[1].s, 0))
	h.sync()
	require.Equal(t, room.ErrAlreadyInRoom, h.m.Join(ms[0].s, room.JoinRequest{Join: &pb.Join{RoomId: "r"}}))
	j := h.join(ms[1].s, ms[1].p, &pb.Join{RoomId: "r"})
	require.EqualValues(t, 4, j.GetPlayerId(), "player ids are never reused in a room's life")

	for _, m := range ms {
		require.NoError(t, h.m.Leave(m.s, 0))
	}
	h.sync()
	_, err := h.m.Room(t.Context(), "r")
	require.ErrorIs(t, err, room.ErrRoomNotFound)
	require.Zero(t, h.m.Stats().Rooms)
	require.Zero(t, h.m.Stats().Players)

	// A new room of the same id starts a new life.
	j = h.join(ms[0].s, ms[0].p, &pb.Join{RoomId: "r", CreateIfMissing: true})
	require.EqualValues(t, 1, j.GetPlayerId())
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms := h.room("r", 2, nil)
	a, b := ms[0], ms[1]
	h.send(a, text("never seen by b"))
	h.m.Disconnect(b.s)
	h.m.Disconnect(b.s) // idempotent
	h.sync()
	b.p.Close() // any call from now on is an error (checked at cleanup)
	h.tick()
	h.tick()
	evs := events(frames(t, a.p.Take()))
	require.Len(t, evs, 1)
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_DISCONNECTED, evs[0].GetReason())
	require.Equal(t, b.id, evs[0].GetPlayerId())
	v := text("x")
	require.ErrorIs(t, h.m.Send(b.s, 1, &v), room.ErrClosed)
	require.ErrorIs(t, h.m.Join(b.s, room.JoinRequest{Join: &pb.Join{}}), room.ErrClosed)
	require.ErrorIs(t, h.m.Leave(b.s, 1), room.ErrClosed)
	_, _, in := b.s.Clock()
	require.False(t, in)

	// An idle seat disconnects without any command.
	c, pc := h.seat()
	h.m.Disconnect(c)
	pc.Close()
}

func TestDisconnectJoiningSeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	for range 20 {
		s, p := h.seat()
		require.NoError(t, h.m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "x", CreateIfMissing: true}}))
		h.m.Disconnect(s)
		p.Close()
	}
	h.sync()
	require.Zero(t, h.m.Stats().Players)
	require.Zero(t, h.m.Stats().Rooms)
	_, err := h.m.Room(t.Context(), "x")
	require.ErrorIs(t, err, room.ErrRoomNotFound)
}
