package room_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

func TestReconfigureAppliesToNewRoomsOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{DefaultTickRate: 30})
	old := h.room("old", 1, nil)
	_ = old
	require.NoError(t, h.m.Reconfigure(t.Context(), room.Config{DefaultTickRate: 60, MaxTickRate: 90}, false))
	s, p := h.seat()
	joined := h.join(s, p, &pb.Join{RoomId: "new", CreateIfMissing: true})
	require.EqualValues(t, 60, joined.GetTickRate())

	// The new bounds apply to joins and admin updates.
	s2, _ := h.seat()
	err := h.m.Join(s2, room.JoinRequest{Join: &pb.Join{Options: &pb.RoomOptions{TickRate: 100}}})
	require.ErrorIs(t, err, room.ErrInvalidArgument)
	over := 95
	require.ErrorIs(t, h.m.UpdateRoom(t.Context(), "old", room.RoomUpdate{TickRate: &over}), room.ErrInvalidArgument)

	d, err := h.m.Room(t.Context(), "old")
	require.NoError(t, err)
	require.Equal(t, 30, d.TickRate, "existing rooms keep their rate")
}

func TestReconfigureMovesExistingRoomsWhenAsked(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{DefaultTickRate: 30, AllowImmediate: true})
	h.room("a", 1, nil)
	h.room("b", 1, &pb.RoomOptions{TickRate: 45})
	h.room("now", 1, &pb.RoomOptions{Immediate: true})
	require.NoError(t, h.m.Reconfigure(t.Context(), room.Config{DefaultTickRate: 20, AllowImmediate: true}, true))
	h.sync()
	for id, want := range map[string]int{"a": 20, "b": 20, "now": 0} {
		d, err := h.m.Room(t.Context(), id)
		require.NoError(t, err)
		require.Equal(t, want, d.TickRate, id)
	}
}

func TestReconfigureRejectsInvalidConfigAndKeepsTheOld(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{DefaultTickRate: 30})
	err := h.m.Reconfigure(t.Context(), room.Config{MinTickRate: 50, MaxTickRate: 10}, false)
	require.ErrorIs(t, err, room.ErrInvalidArgument)
	s, p := h.seat()
	require.EqualValues(t, 30, h.join(s, p, &pb.Join{RoomId: "x", CreateIfMissing: true}).GetTickRate())
}

func TestTickPresetsByRoomMetadata(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{DefaultTickRate: 30, TickPresets: []room.TickPreset{
		{Key: "mode", Value: "ranked", Rate: 60},
		{Key: "mode", Value: "lobby", Rate: 5},
	}})
	create := func(id string, opts *pb.RoomOptions) uint32 {
		s, p := h.seat()
		return h.join(s, p, &pb.Join{RoomId: id, CreateIfMissing: true, Options: opts}).GetTickRate()
	}
	require.EqualValues(t, 60, create("r1", &pb.RoomOptions{Metadata: map[string]string{"mode": "ranked"}}))
	require.EqualValues(t, 5, create("r2", &pb.RoomOptions{Metadata: map[string]string{"mode": "lobby"}}))
	require.EqualValues(t, 30, create("r3", &pb.RoomOptions{Metadata: map[string]string{"mode": "casual"}}))
	require.EqualValues(t, 45, create("r4", &pb.RoomOptions{TickRate: 45, Metadata: map[string]string{"mode": "ranked"}}),
		"an explicit rate wins over a preset")

	_, err := room.New(room.Config{TickPresets: []room.TickPreset{{Key: "mode", Value: "x", Rate: 5000}}})
	require.ErrorIs(t, err, room.ErrInvalidArgument)
}
