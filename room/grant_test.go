package room_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

func prefixGrant(prefix string) *room.Grant {
	return &room.Grant{
		UserID:     "user-" + prefix,
		AllowsRoom: func(id string) bool { return strings.HasPrefix(id, prefix) },
		Create:     true,
	}
}

// answer syncs the workers and returns the seat's last message.
func (h *harness) answer(p interface{ Take() []*pb.ServerMessage }) *pb.ServerMessage {
	h.t.Helper()
	h.sync()
	msgs := p.Take()
	require.NotEmpty(h.t, msgs)
	return msgs[len(msgs)-1]
}

func TestGrantAdmitsRoomsCreatesAndBoundsOptions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{DefaultTickRate: 60, MaxTickRate: 120})
	s, p := h.seat()
	p.Addr = netip.MustParseAddr("203.0.113.9") // before the seat's first Join

	// A room the token does not admit: refused before any room is looked up.
	err := h.m.Join(s, room.JoinRequest{RequestID: 1, Grant: prefixGrant("match-"), Join: &pb.Join{RoomId: "lobby", CreateIfMissing: true}})
	require.ErrorIs(t, err, room.ErrUnauthorized)
	require.Equal(t, room.ReasonRoomNotAllowed, room.ErrorReason(err))
	require.Equal(t, pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, room.ErrorCode(err))

	// A server-made code needs a token that names no rooms.
	err = h.m.Join(s, room.JoinRequest{Grant: prefixGrant("match-"), Join: &pb.Join{}})
	require.Equal(t, room.ReasonRoomNotAllowed, room.ErrorReason(err))
	err = h.m.Join(s, room.JoinRequest{Grant: &room.Grant{AnyRoom: true}, Join: &pb.Join{}})
	require.Equal(t, room.ReasonCreateNotAllowed, room.ErrorReason(err))

	// Options above the token's bounds are refused; defaults are lowered.
	g := prefixGrant("match-")
	g.MaxTickRate, g.MaxPlayers = 30, 4
	err = h.m.Join(s, room.JoinRequest{Grant: g, Join: &pb.Join{RoomId: "match-1", CreateIfMissing: true, Options: &pb.RoomOptions{TickRate: 90}}})
	require.Equal(t, room.ReasonOptionNotAllowed, room.ErrorReason(err))
	g.Metadata = map[string]string{"rank": "gold"}
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 2, Grant: g, Join: &pb.Join{
		RoomId: "match-1", CreateIfMissing: true, PlayerMetadata: map[string]string{"rank": "forged", "skin": "red"},
	}}))
	j := h.answer(p).GetJoined()
	require.NotNil(t, j)
	require.EqualValues(t, 30, j.GetTickRate(), "the default rate lowered to the token's bound")
	require.EqualValues(t, 4, j.GetMaxPlayers())
	require.Equal(t, "user-match-", j.GetMembers()[0].GetUserId())
	require.Equal(t, map[string]string{"rank": "gold", "skin": "red"}, j.GetMembers()[0].GetMetadata(), "the backend's keys win")
	d, err := h.m.Room(t.Context(), "match-1")
	require.NoError(t, err)
	require.Equal(t, "user-match-", d.Members[0].UserID)
	require.Equal(t, "203.0.113.9", d.Members[0].Address.String())

	// A token without create may join an existing room, not make one.
	s2, p2 := h.seat()
	noCreate := prefixGrant("match-")
	noCreate.Create = false
	require.NoError(t, h.m.Join(s2, room.JoinRequest{RequestID: 3, Grant: noCreate, Join: &pb.Join{RoomId: "match-2", CreateIfMissing: true}}))
	e := h.answer(p2).GetError()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, e.GetCode())
	require.Equal(t, room.ReasonCreateNotAllowed, e.GetReason())
	require.Equal(t, []pb.ErrorCode{pb.ErrorCode_ERROR_CODE_UNAUTHORIZED}, p2.Refusals(), "the transport is told, to count it")
	require.NoError(t, h.m.Join(s2, room.JoinRequest{RequestID: 4, Grant: noCreate, Join: &pb.Join{RoomId: "match-1"}}))
	require.NotNil(t, h.answer(p2).GetJoined())
}

func TestConcealRoomsAnswersNotFoundForFullRooms(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{ConcealRooms: true})
	h.room("r", 2, &pb.RoomOptions{MaxPlayers: 2})
	s, p := h.seat()
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 7, Join: &pb.Join{RoomId: "r"}}))
	e := h.answer(p).GetError()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, e.GetCode(), "a full room looks like no room")
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 8, Join: &pb.Join{RoomId: "nothing"}}))
	e2 := h.answer(p).GetError()
	require.Equal(t, e.GetCode(), e2.GetCode())
	require.Equal(t, []pb.ErrorCode{pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND}, p.Refusals())
}
