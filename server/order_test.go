package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func joinReq(roomID string, reqID uint32, create bool) *pb.ClientMessage {
	return &pb.ClientMessage{RequestId: reqID, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: roomID, CreateIfMissing: create}}}
}

func leaveReq(reqID uint32) *pb.ClientMessage {
	return &pb.ClientMessage{RequestId: reqID, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}}
}

// sendBatch writes several envelopes as one TCP write (one WebSocket
// message each), so the relay reads them together.
func (c *wsClient) sendBatch(ms ...*pb.ClientMessage) {
	c.t.Helper()
	var buf []byte
	for _, m := range ms {
		b, err := proto.Marshal(m)
		require.NoError(c.t, err)
		buf = append(buf, clientFrame(true, opBinary, b, false)...)
	}
	// Straight to the socket: gorilla would write each message apart.
	require.NoError(c.t, c.conn.UnderlyingConn().SetWriteDeadline(time.Now().Add(testTimeout)))
	_, err := c.conn.UnderlyingConn().Write(buf)
	require.NoError(c.t, err)
}

// answer reads until the answer to request reqID (frames are skipped).
func (c *wsClient) answer(reqID uint32) *pb.ServerMessage {
	c.t.Helper()
	return c.readUntil(func(m *pb.ServerMessage) bool { return m.GetRequestId() == reqID && m.GetFrame() == nil })
}

// A connection's requests are processed in the order they are sent: a Join
// right behind a Leave (pipelined, without waiting for Left) always joins,
// and a Join sent on seeing Left always joins, even on another worker.
func TestOrderLeaveThenJoinAlwaysJoins(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, func(c *Config) { c.Room.Workers = 4 })
		c := dial(t, srv)
		id := uint32(1)
		require.NotNil(t, c.join("order-0", id))
		for i := 1; i <= 40; i++ {
			leave, join := id+1, id+2
			id += 2
			room := fmt.Sprint("order-", i)
			if i%2 == 0 {
				c.sendBatch(leaveReq(leave), joinReq(room, join, true)) // pipelined
			} else {
				c.send(leaveReq(leave))
				require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, c.answer(leave).GetLeft().GetReason())
				c.send(joinReq(room, join, true)) // on seeing Left
			}
			if i%2 == 0 {
				left := c.answer(leave)
				require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, left.GetLeft().GetReason(), "round %d: %v", i, left)
			}
			m := c.answer(join)
			require.Equal(t, room, m.GetJoined().GetRoomId(), "round %d: %v", i, m)
		}
	})
}

// A Join behind one that fails is tried after it, not refused because the
// first was still pending.
func TestOrderJoinBehindFailedJoin(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, nil)
		c := dial(t, srv)
		c.sendBatch(joinReq("nowhere", 1, false), joinReq("somewhere", 2, true), joinReq("third", 3, true))
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, c.answer(1).GetError().GetCode())
		require.Equal(t, "somewhere", c.answer(2).GetJoined().GetRoomId())
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM, c.answer(3).GetError().GetCode())
	})
}

// A player whose room an operator closes may join again as soon as it sees
// Left{ROOM_CLOSED}.
func TestOrderJoinAfterRoomClosed(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, func(c *Config) { c.Room.Workers = 4 })
		c := dial(t, srv)
		for i := range 30 {
			room := fmt.Sprint("closing-", i)
			require.NotNil(t, c.join(room, uint32(2*i+1)))
			require.NoError(t, srv.Rooms().CloseRoom(t.Context(), room, "test"))
			left := c.readUntil(func(m *pb.ServerMessage) bool { return m.GetLeft() != nil })
			require.Equal(t, pb.LeaveReason_LEAVE_REASON_ROOM_CLOSED, left.GetLeft().GetReason())
			c.send(joinReq(fmt.Sprint("next-", i), uint32(2*i+2), true))
			m := c.answer(uint32(2*i + 2))
			require.NotNil(t, m.GetJoined(), "round %d: %v", i, m)
			c.send(leaveReq(1000 + uint32(i)))
			require.NotNil(t, c.answer(1000+uint32(i)).GetLeft())
		}
	})
}
