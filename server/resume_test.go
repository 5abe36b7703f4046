package server

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// drop ends the client's TCP connection with a reset, no WebSocket Close:
// what the relay sees when a phone loses its network.
func (c *wsClient) drop() {
	c.t.Helper()
	if tc, ok := c.conn.NetConn().(*net.TCPConn); ok {
		require.NoError(c.t, tc.SetLinger(0))
	}
	_ = c.conn.NetConn().Close()
}

// frames reads Frames until one holds a delivery with payload want,
// checking that their seqs are contiguous from *seq, and returns the
// payloads read.
func (c *wsClient) framesUntil(seq *uint64, want string) []string {
	c.t.Helper()
	var got []string
	for {
		f := c.read().GetFrame()
		if f == nil {
			continue
		}
		require.Equal(c.t, *seq+1, f.GetSeq(), "frame seqs are contiguous")
		*seq = f.GetSeq()
		c.events = append(c.events, f.GetEvents()...)
		for _, d := range f.GetDeliveries() {
			got = append(got, string(d.GetPayload()))
			if string(d.GetPayload()) == want {
				return got
			}
		}
	}
}

func (c *wsClient) resume(rid uint32, roomID string, player uint32, token []byte, lastSeq uint64) *pb.Resumed {
	c.t.Helper()
	c.send(&pb.ClientMessage{RequestId: rid, Body: &pb.ClientMessage_Resume{Resume: &pb.Resume{
		RoomId: roomID, PlayerId: player, Token: token, LastSeq: lastSeq,
	}}})
	m := c.readUntil(func(m *pb.ServerMessage) bool { return m.GetRequestId() == rid })
	require.NotNil(c.t, m.GetResumed(), "want Resumed, got %v", m)
	return m.GetResumed()
}

// A gorilla/websocket client drops its connection mid-game and resumes on a
// new one: the relay replays exactly the frames after the last one it
// acknowledged, with contiguous seqs, and the room saw it away and back.
func TestResumeOverTheWire(t *testing.T) {
	forEachPath(t, func(t *testing.T, start startFunc) {
		srv := start(t, nil)
		a := dial(t, srv)
		a.join("wire", 1)
		b := dial(t, srv)
		jb := b.join("wire", 1)
		require.Len(t, jb.GetResumeToken(), 32)
		require.EqualValues(t, 15000, jb.GetSeatGraceMs())
		a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, jb.GetPlayerId())

		var seq uint64
		for i := range 3 {
			a.sendPayload(fmt.Appendf(nil, "seen-%d", i), nil, false)
		}
		require.Equal(t, []string{"seen-0", "seen-1", "seen-2"}, b.framesUntil(&seq, "seen-2"))
		// An ack alone, in an envelope without a body: not answered.
		b.send(&pb.ClientMessage{Ack: seq})

		b.drop()
		a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, jb.GetPlayerId())
		for i := range 3 {
			a.sendPayload(fmt.Appendf(nil, "missed-%d", i), nil, true)
		}
		// Echoed to a in the tick that framed them for b too: they are in
		// b's replay ring now.
		a.readUntil(func(m *pb.ServerMessage) bool {
			ds := m.GetFrame().GetDeliveries()
			return len(ds) > 0 && string(ds[len(ds)-1].GetPayload()) == "missed-2"
		})

		b2 := dial(t, srv)
		res := b2.resume(7, "wire", jb.GetPlayerId(), jb.GetResumeToken(), seq)
		require.True(t, res.GetRecovered(), "%v", res)
		require.Equal(t, seq+1, res.GetReplayFrom())
		require.Len(t, res.GetNewToken(), 32)
		require.Equal(t, []string{"missed-0", "missed-1", "missed-2"}, b2.framesUntil(&seq, "missed-2"))
		require.Equal(t, res.GetReplayTo(), seq, "the missed frames were replayed, not sent anew")
		a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_BACK, jb.GetPlayerId())

		// The game goes on over the new connection, both ways.
		a.sendPayload([]byte("after"), nil, false)
		require.Equal(t, []string{"after"}, b2.framesUntil(&seq, "after"))
		b2.sendPayload([]byte("from-b"), nil, false)
		a.readUntil(func(m *pb.ServerMessage) bool {
			for _, d := range m.GetFrame().GetDeliveries() {
				if bytes.Equal(d.GetPayload(), []byte("from-b")) {
					return true
				}
			}
			return false
		})
	})
}

// Every way a Resume can be refused, over real sockets: each answered with
// a Resumed saying why, counted in the metrics, and none harms the seat it
// names or the room.
func TestResumeRefusals(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := dial(t, srv)
	ja := a.join("refusals", 1)
	b := dial(t, srv)
	jb := b.join("refusals", 1)
	a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, jb.GetPlayerId())
	b.drop()
	a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, jb.GetPlayerId())

	garbage := bytes.Repeat([]byte{7}, 32)
	cases := []struct {
		name    string
		roomID  string
		player  uint32
		token   []byte
		lastSeq uint64
		want    pb.ResumeFailure
		seated  bool // a new seat comes with the answer
	}{
		{"garbage token", "refusals", jb.GetPlayerId(), garbage, 0, pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN, false},
		{"short token", "refusals", jb.GetPlayerId(), []byte("x"), 0, pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN, false},
		{"another player's token", "refusals", jb.GetPlayerId(), ja.GetResumeToken(), 0, pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN, false},
		{"unknown room", "nowhere", jb.GetPlayerId(), jb.GetResumeToken(), 0, pb.ResumeFailure_RESUME_FAILURE_ROOM_GONE, false},
		{"unknown player", "refusals", 99, jb.GetResumeToken(), 0, pb.ResumeFailure_RESUME_FAILURE_SEAT_EXPIRED, true},
		{"frames never sent", "refusals", jb.GetPlayerId(), jb.GetResumeToken(), 1 << 40, pb.ResumeFailure_RESUME_FAILURE_TOO_OLD, true},
	}
	for i, tc := range cases {
		c := dial(t, srv)
		res := c.resume(uint32(i+1), tc.roomID, tc.player, tc.token, tc.lastSeq)
		require.False(t, res.GetRecovered(), tc.name)
		require.Equal(t, tc.want, res.GetFailure(), tc.name)
		require.Equal(t, tc.seated, res.GetSnapshot() != nil, "%s: %v", tc.name, res)
		if tc.want == pb.ResumeFailure_RESUME_FAILURE_TOO_OLD {
			require.Equal(t, jb.GetPlayerId(), res.GetSnapshot().GetPlayerId(), "the seat is kept, resynced")
		}
		c.drop()
	}

	// A Resume on a connection that is in a room already.
	a.send(&pb.ClientMessage{RequestId: 50, Body: &pb.ClientMessage_Resume{Resume: &pb.Resume{
		RoomId: "refusals", PlayerId: jb.GetPlayerId(), Token: jb.GetResumeToken(),
	}}})
	m := a.readUntil(func(m *pb.ServerMessage) bool { return m.GetRequestId() == 50 })
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM, m.GetError().GetCode(), "%v", m)

	admin := newAdminClient(t, srv, "")
	// The worker publishes its counters at the end of its round, just
	// after the answers it sent in it: wait for the last one's.
	var body []byte
	require.Eventually(t, func() bool {
		_, body = admin.do("GET", "/metrics", "")
		return strings.Contains(string(body), `tickrelay_resumes_total{result="too_old"} 1`)
	}, testTimeout, 5*time.Millisecond)
	require.Contains(t, string(body), `tickrelay_resumes_total{result="bad_token"} 3`)
	require.Contains(t, string(body), `tickrelay_resumes_total{result="room_gone"} 1`)
	require.Contains(t, string(body), `tickrelay_resumes_total{result="seat_expired"} 1`)
	require.Contains(t, string(body), `tickrelay_resumes_total{result="too_old"} 1`)
}

// The seat of a player that does not come back within the grace is given
// up: the others see it leave with SEAT_EXPIRED, and a late Resume is told
// so, with a new seat in the room.
func TestResumeAfterTheGrace(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.Room.SeatGrace = 200 * time.Millisecond })
	a := dial(t, srv)
	a.join("grace", 1)
	b := dial(t, srv)
	jb := b.join("grace", 1)
	require.EqualValues(t, 200, jb.GetSeatGraceMs())
	b.drop()
	a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, jb.GetPlayerId())
	ev := a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, jb.GetPlayerId())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_SEAT_EXPIRED, ev.GetReason())

	b2 := dial(t, srv)
	res := b2.resume(1, "grace", jb.GetPlayerId(), jb.GetResumeToken(), 0)
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_SEAT_EXPIRED, res.GetFailure())
	require.NotNil(t, res.GetSnapshot())
	require.NotEqual(t, jb.GetPlayerId(), res.GetSnapshot().GetPlayerId())
	a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, res.GetSnapshot().GetPlayerId())
}

// A client that closes properly (WebSocket Close, no Leave) meant to go:
// its seat is still kept, since a client cannot tell a tab reload from a
// goodbye; a Leave is the way to give up the seat at once.
func TestLeaveGivesUpTheSeatAtOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	a := dial(t, srv)
	a.join("bye", 1)
	b := dial(t, srv)
	jb := b.join("bye", 1)
	b.send(&pb.ClientMessage{RequestId: 2, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	ev := a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, jb.GetPlayerId())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, ev.GetReason())
	require.NoError(t, b.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "")))
	b2 := dial(t, srv)
	res := b2.resume(1, "bye", jb.GetPlayerId(), jb.GetResumeToken(), 0)
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_SEAT_EXPIRED, res.GetFailure())
}

// A connection the relay fails for the client's own doing gives its seat up
// at once; one whose network failed keeps it for the grace.
func TestClientFaultCloseForfeitsTheSeat(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		srv := startServer(t, func(c *Config) { c.Room.DefaultMaxPlayers = 3 })
		a := dial(t, srv)
		a.join("fault", 1)
		b := dial(t, srv)
		jb := b.join("fault", 1)
		c := dial(t, srv)
		jc := c.join("fault", 1)

		// b breaks the protocol: a Text message (1003) forfeits its seat.
		require.NoError(t, b.conn.WriteMessage(websocket.TextMessage, []byte("hello")))
		require.Equal(t, 1003, b.expectClose())
		ev := a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, jb.GetPlayerId())
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_DISCONNECTED, ev.GetReason())

		// c's network fails: its seat is kept.
		c.drop()
		a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, jc.GetPlayerId())

		// b's seat is free for a new player; c's resume still works.
		d := dial(t, srv)
		d.join("fault", 1)
		c2 := dial(t, srv)
		res := c2.resume(1, "fault", jc.GetPlayerId(), jc.GetResumeToken(), 0)
		require.True(t, res.GetRecovered(), "%v", res)
	})
}

// An idle client's acknowledgement, alone in an envelope, frees the frames
// the relay kept for its resume although its room builds no more frames.
func TestAckAloneFreesTheReplayFramesOfAnIdleRoom(t *testing.T) {
	forEachPath(t, func(t *testing.T, start startFunc) {
		srv := start(t, nil)
		a := dial(t, srv)
		a.join("idle-acks", 1)
		b := dial(t, srv)
		jb := b.join("idle-acks", 1)
		a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, jb.GetPlayerId())
		var seq uint64
		for i := range 3 {
			a.sendPayload(fmt.Appendf(nil, "m-%d", i), nil, false)
		}
		b.framesUntil(&seq, "m-2")
		// The worker publishes its counters at the end of the round that
		// wrote b's frame; an admin call returns after a later round's.
		_, err := srv.rooms.Rooms(t.Context())
		require.NoError(t, err)
		kept := srv.rooms.Stats().ReplayBytes
		require.Positive(t, kept, "b's frames are kept until it acknowledges them")
		b.send(&pb.ClientMessage{Ack: seq})
		require.Eventually(t, func() bool { return srv.rooms.Stats().ReplayBytes < kept }, 10*time.Second, time.Millisecond,
			"the acknowledged frames are let go")
	})
}
