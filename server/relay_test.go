package server

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func isFrame(m *pb.ServerMessage) bool { return m.GetFrame() != nil }

func isPong(m *pb.ServerMessage) bool { return m.GetPong() != nil }

func pingMessage(reqID uint32) *pb.ClientMessage {
	return &pb.ClientMessage{RequestId: reqID, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 1}}}
}

// frameWithDeliveries reads frames until one carries deliveries.
func (c *wsClient) frameWithDeliveries() *pb.Frame {
	c.t.Helper()
	return c.readUntil(func(m *pb.ServerMessage) bool {
		return isFrame(m) && len(m.GetFrame().GetDeliveries()) > 0
	}).GetFrame()
}

func TestRelayRoomOfEightSendToAll(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, nil)
		const players = 8
		clients := make([]*wsClient, players)
		ids := make([]uint32, players)
		for i := range clients {
			clients[i] = dial(t, srv)
			joined := clients[i].join("eight", uint32(i+1))
			require.Equal(t, "eight", joined.GetRoomId())
			require.Len(t, joined.GetMembers(), i+1)
			ids[i] = joined.GetPlayerId()
		}
		require.Equal(t, players, len(uniq(ids)), "player ids are distinct")

		for i, c := range clients {
			c.sendPayload([]byte(fmt.Sprintf("from-%d", i)), nil, false)
		}
		for i, c := range clients {
			got := map[uint32]string{}
			var lastTick uint64
			for len(got) < players-1 {
				f := c.frameWithDeliveries()
				require.Greater(t, f.GetTick(), lastTick, "ticks increase")
				lastTick = f.GetTick()
				for _, d := range f.GetDeliveries() {
					require.NotEqual(t, ids[i], d.GetSender(), "no echo unless asked")
					_, dup := got[d.GetSender()]
					require.False(t, dup, "delivered once")
					got[d.GetSender()] = string(d.GetPayload())
				}
			}
			for j := range clients {
				if j != i {
					require.Equal(t, fmt.Sprintf("from-%d", j), got[ids[j]])
				}
			}
		}
	})
}

func uniq(ids []uint32) map[uint32]bool {
	m := map[uint32]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func TestRelayTargetsAndEcho(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, nil)
		a, b, c := dial(t, srv), dial(t, srv), dial(t, srv)
		a.join("targets", 1)
		idB := b.join("targets", 1).GetPlayerId()
		c.join("targets", 1)

		// To B only, with echo: A and B get it, C does not. Then a broadcast
		// shows C's stream skipped the targeted message (per-sender order).
		a.sendPayload([]byte("private"), []uint32{idB}, true)
		a.sendPayload([]byte("public"), nil, false)

		fa := a.frameWithDeliveries()
		require.Equal(t, "private", string(fa.GetDeliveries()[0].GetPayload()))

		var bGot []string
		for len(bGot) < 2 {
			for _, d := range b.frameWithDeliveries().GetDeliveries() {
				bGot = append(bGot, string(d.GetPayload()))
			}
		}
		require.Equal(t, []string{"private", "public"}, bGot)

		fc := c.frameWithDeliveries()
		require.Len(t, fc.GetDeliveries(), 1)
		require.Equal(t, "public", string(fc.GetDeliveries()[0].GetPayload()))
	})
}

func TestRelayPresenceOnLeaveAndDisconnect(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, func(c *Config) { c.Room.SeatGrace = -1 }) // a drop is a leave (resume has its own tests)
		a, b, c := dial(t, srv), dial(t, srv), dial(t, srv)
		idA := a.join("presence", 1).GetPlayerId()
		idB := b.join("presence", 1).GetPlayerId()
		idC := c.join("presence", 1).GetPlayerId()

		event := func(cl *wsClient, typ pb.RoomEventType, player uint32) *pb.RoomEvent {
			return cl.awaitEvent(typ, player)
		}
		require.NotNil(t, event(a, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, idB))

		// B leaves politely: it gets Left, the others a PLAYER_LEFT event.
		b.send(&pb.ClientMessage{RequestId: 9, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
		left := b.readUntil(func(m *pb.ServerMessage) bool { return m.GetLeft() != nil })
		require.Equal(t, uint32(9), left.GetRequestId())
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, left.GetLeft().GetReason())
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, event(c, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, idB).GetReason())

		// A (the host) drops its TCP connection: C sees it leave and becomes host.
		require.NoError(t, a.conn.UnderlyingConn().Close())
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_DISCONNECTED, event(c, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, idA).GetReason())
		require.NotNil(t, event(c, pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED, idC))
	})
}

func TestRelayErrorsAreAnswered(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, nil)
		c := dial(t, srv)

		// Send before joining: NOT_IN_ROOM with the request id.
		c.send(&pb.ClientMessage{RequestId: 5, Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("x")}}})
		m := c.read()
		require.Equal(t, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, m.GetError().GetCode())
		require.Equal(t, uint32(5), m.GetRequestId())

		// Join a room that does not exist without create_if_missing.
		c.send(&pb.ClientMessage{RequestId: 6, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "nope"}}})
		m = c.read()
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, m.GetError().GetCode())
		require.Equal(t, uint32(6), m.GetRequestId())

		// A tick rate outside the bounds is refused.
		c.send(&pb.ClientMessage{RequestId: 7, Body: &pb.ClientMessage_Join{Join: &pb.Join{
			Options: &pb.RoomOptions{TickRate: 100000}}}})
		m = c.read()
		require.Equal(t, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, m.GetError().GetCode())

		// Room full.
		c.send(&pb.ClientMessage{RequestId: 8, Body: &pb.ClientMessage_Join{Join: &pb.Join{
			RoomId: "tiny", CreateIfMissing: true, Options: &pb.RoomOptions{MaxPlayers: 1}}}})
		require.NotNil(t, c.read().GetJoined())
		d := dial(t, srv)
		d.send(&pb.ClientMessage{RequestId: 9, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "tiny"}}})
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_FULL, d.read().GetError().GetCode())

		// Already in a room.
		c.send(&pb.ClientMessage{RequestId: 10, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "other", CreateIfMissing: true}}})
		m = c.readUntil(func(m *pb.ServerMessage) bool { return m.GetError() != nil })
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM, m.GetError().GetCode())
	})
}

func TestRelayServerMadeRoomCodeAndPing(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, nil)
		a := dial(t, srv)
		joined := a.join("", 1)
		require.Len(t, joined.GetRoomId(), 6)
		require.NotContains(t, joined.GetRoomId(), "0")
		require.NotContains(t, joined.GetRoomId(), "O")
		require.EqualValues(t, 50, joined.GetTickRate())

		b := dial(t, srv)
		b.send(&pb.ClientMessage{RequestId: 2, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: joined.GetRoomId()}}})
		require.NotNil(t, b.readUntil(func(m *pb.ServerMessage) bool { return m.GetJoined() != nil }))

		a.send(&pb.ClientMessage{RequestId: 3, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 12345}}})
		pong := a.readUntil(func(m *pb.ServerMessage) bool { return m.GetPong() != nil })
		require.Equal(t, uint32(3), pong.GetRequestId())
		require.EqualValues(t, 12345, pong.GetPong().GetClientTime())
		require.NotZero(t, pong.GetPong().GetServerTime())
		require.EqualValues(t, 50, pong.GetPong().GetTickRate())
	})
}

func TestRelayImmediateRoom(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, nil)
		a, b := dial(t, srv), dial(t, srv)
		a.send(&pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Join{Join: &pb.Join{
			RoomId: "now", CreateIfMissing: true, Options: &pb.RoomOptions{Immediate: true}}}})
		joined := a.readUntil(func(m *pb.ServerMessage) bool { return m.GetJoined() != nil }).GetJoined()
		require.True(t, joined.GetImmediate())
		b.join("now", 2)
		for i := 0; i < 5; i++ {
			a.sendPayload([]byte{byte(i)}, nil, false)
		}
		var got []byte
		var lastTick uint64
		for len(got) < 5 {
			f := b.frameWithDeliveries()
			require.Greater(t, f.GetTick(), lastTick)
			lastTick = f.GetTick()
			for _, d := range f.GetDeliveries() {
				got = append(got, d.GetPayload()...)
			}
		}
		require.Equal(t, []byte{0, 1, 2, 3, 4}, got)
	})
}
