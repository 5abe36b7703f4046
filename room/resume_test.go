package room_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/room/roomtest"
)

// resumable is a member of a room with a seat grace, with what a client
// keeps for a resume.
type resumable struct {
	member
	token []byte
	seq   uint64 // the last Frame.seq received
	// early holds messages read with a Resumed, for the next take.
	early []*pb.ServerMessage
}

func (h *harness) resumableRoom(id string, n int) []*resumable {
	h.t.Helper()
	out := make([]*resumable, n)
	for i := range out {
		s, p := h.seat()
		j := h.join(s, p, &pb.Join{RoomId: id, CreateIfMissing: true})
		require.Len(h.t, j.GetResumeToken(), 32)
		require.Positive(h.t, j.GetSeatGraceMs())
		out[i] = &resumable{member: member{s: s, p: p, id: j.GetPlayerId()}, token: j.GetResumeToken()}
	}
	h.tick()
	for _, m := range out {
		m.take(h.t)
	}
	return out
}

// take reads m's frames, checking their seqs are contiguous from the last
// one seen, and returns them.
func (m *resumable) take(t *testing.T) []*pb.Frame {
	t.Helper()
	var fs []*pb.Frame
	msgs := append(m.early, m.p.Take()...)
	m.early = nil
	for _, msg := range msgs {
		f := msg.GetFrame()
		require.NotNil(t, f, "want a Frame, got %v", msg)
		require.Equal(t, m.seq+1, f.GetSeq(), "frame seqs are contiguous")
		m.seq = f.GetSeq()
		fs = append(fs, f)
	}
	return fs
}

// resume resumes m's seat on a new connection; what followed the Resumed
// (the replay) is kept for m's next take.
func (h *harness) resume(m *resumable, lastSeq uint64) (*pb.Resumed, *roomtest.Peer, *room.Seat) {
	h.t.Helper()
	s, p := h.seat()
	require.NoError(h.t, h.m.Resume(s, room.ResumeRequest{RequestID: 9, Resume: &pb.Resume{
		RoomId: "r", PlayerId: m.id, Token: m.token, LastSeq: lastSeq,
	}}))
	h.sync()
	msgs := p.Take()
	require.NotEmpty(h.t, msgs)
	res := msgs[0].GetResumed()
	require.NotNil(h.t, res, "want Resumed first, got %v", msgs[0])
	require.EqualValues(h.t, 9, msgs[0].GetRequestId())
	m.early = msgs[1:]
	return res, p, s
}

func graceHarness(t *testing.T, cfg room.Config) *harness {
	if cfg.SeatGrace == 0 {
		cfg.SeatGrace = 10 * time.Second
	}
	return newHarness(t, cfg)
}

func TestResumeReplaysWhatWasMissedExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	send := func(p string) { h.send(a.member, wire.SendView{Payload: []byte(p), Kind: 1}) }

	send("seen")
	h.tick()
	require.Equal(t, []string{"seen"}, payloads(deliveries(b.take(t))))

	// b's connection drops: a sees it away; frames go on into b's ring.
	h.m.Disconnect(b.s)
	for i := range 5 {
		send(fmt.Sprint("missed-", i))
		h.tick()
	}
	ev := events(a.take(t))
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, ev[0].GetType())
	require.Equal(t, b.id, ev[0].GetPlayerId())

	res, p, s := h.resume(b, b.seq)
	require.True(t, res.GetRecovered())
	require.Equal(t, b.seq+1, res.GetReplayFrom())
	require.Len(t, res.GetNewToken(), 32)
	require.NotEqual(t, b.token, res.GetNewToken(), "the token rotates")
	b.member.p, b.member.s = p, s
	require.Equal(t, []string{"missed-0", "missed-1", "missed-2", "missed-3", "missed-4"}, payloads(deliveries(b.take(t))))
	require.Equal(t, res.GetReplayTo(), b.seq)

	send("after")
	h.tick()
	require.Equal(t, []string{"after"}, payloads(deliveries(b.take(t))))
	ev = events(a.take(t))
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_BACK, ev[0].GetType())

	// Once the client acknowledges frames after the Resumed, it has the new
	// token: the old one is spent.
	b.s.Ack(b.seq)
	send("acked")
	h.tick()
	b.take(t)
	res, _, _ = h.resume(b, b.seq)
	require.False(t, res.GetRecovered())
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN, res.GetFailure())
	require.Nil(t, res.GetSnapshot(), "no snapshot for a bad token")
	st := h.m.Stats()
	require.EqualValues(t, 1, st.Resumes["recovered"])
	require.EqualValues(t, 1, st.Resumes["bad_token"])
	require.EqualValues(t, 5, st.ReplayedFrames)
}

func TestResumeWithTheOldTokenWhenTheResumedWasLost(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	h.m.Disconnect(b.s)
	h.send(a.member, wire.SendView{Payload: []byte("one"), Kind: 1})
	h.tick()
	// The Resumed and its replay are lost with the new connection.
	res, _, s := h.resume(b, b.seq)
	require.True(t, res.GetRecovered())
	b.early = nil
	h.m.Disconnect(s)
	h.send(a.member, wire.SendView{Payload: []byte("two"), Kind: 1})
	h.tick()
	// The client still holds only the token it resumed with.
	res, p, s := h.resume(b, b.seq)
	require.True(t, res.GetRecovered(), "the previous token is good until the client shows it read the new one: %v", res)
	b.member.p, b.member.s = p, s
	require.Equal(t, []string{"one", "two"}, payloads(deliveries(b.take(t))))
	// And once more, with the same old token: the client never saw a
	// Resumed, so that token stays the one it surely holds.
	h.m.Disconnect(s)
	h.tick()
	res, p, s = h.resume(b, 0)
	require.True(t, res.GetRecovered(), "%v", res)
	b.member.p, b.member.s, b.seq = p, s, 0
	require.Equal(t, []string{"one", "two"}, payloads(deliveries(b.take(t))))
	// The client acknowledges what followed its last Resumed: now only
	// the newest token is good.
	newest := res.GetNewToken()
	b.s.Ack(b.seq)
	h.send(a.member, wire.SendView{Payload: []byte("three"), Kind: 1})
	h.tick()
	b.take(t)
	h.m.Disconnect(b.s)
	h.tick()
	res, _, _ = h.resume(b, b.seq)
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN, res.GetFailure())
	b.token = newest
	res, _, _ = h.resume(b, b.seq)
	require.True(t, res.GetRecovered(), "%v", res)
	a.take(t)
}

func TestResumeBeforeAnyFrameAndTenTimesInARow(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	for round := range 10 {
		h.m.Disconnect(b.s)
		h.send(a.member, wire.SendView{Payload: []byte(fmt.Sprint(round)), Kind: 1})
		h.tick()
		res, p, s := h.resume(b, b.seq)
		require.True(t, res.GetRecovered(), "round %d: %v", round, res)
		b.token, b.member.p, b.member.s = res.GetNewToken(), p, s
		require.Equal(t, []string{fmt.Sprint(round)}, payloads(deliveries(b.take(t))), "round %d", round)
		a.take(t)
	}
}

func TestResumeWhileTheOldConnectionIsHalfOpen(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	h.send(a.member, wire.SendView{Payload: []byte("x"), Kind: 1})
	h.tick()
	// The client lost the frame, the relay has not seen the drop.
	b.p.Take()
	old := b.s
	res, p, s := h.resume(b, b.seq)
	require.True(t, res.GetRecovered())
	require.Equal(t, []room.EvictCause{room.EvictReplaced}, b.p.Evictions(), "the old connection is closed")
	b.member.p, b.member.s = p, s
	require.Equal(t, []string{"x"}, payloads(deliveries(b.take(t))))
	require.Empty(t, events(a.take(t)), "it never went away")
	h.m.Disconnect(old) // the old seat's late disconnect changes nothing
	h.tick()
	require.Empty(t, a.p.Take())
}

func TestResumeTooOldKeepsTheSeatAndSendsASnapshot(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{ReplayBytesPerSeat: 512})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	h.m.Disconnect(b.s)
	for range 20 {
		h.send(a.member, wire.SendView{Payload: make([]byte, 100), Kind: 1})
		h.tick()
	}
	require.LessOrEqual(t, h.m.Stats().ReplayBytes, int64(512+200), "the ring stays within its bound")
	res, _, _ := h.resume(b, b.seq)
	require.False(t, res.GetRecovered())
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_TOO_OLD, res.GetFailure())
	require.Equal(t, b.id, res.GetSnapshot().GetPlayerId(), "the seat is kept")
	require.Len(t, res.GetNewToken(), 32)
}

func TestSeatExpiresAfterTheGrace(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{SeatGrace: time.Second})
	ms := h.resumableRoom("r", 3)
	a, b := ms[0], ms[1]
	h.m.Disconnect(a.s) // the host
	for h.clock.Now().Before(testStart.Add(500 * time.Millisecond)) {
		h.tick()
	}
	ev := events(b.take(t))
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, ev[0].GetType())
	require.Len(t, ev, 1, "the host stays host while away")
	for h.clock.Now().Before(testStart.Add(2 * time.Second)) {
		h.tick()
	}
	ev = events(b.take(t))
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, ev[0].GetType())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_SEAT_EXPIRED, ev[0].GetReason())
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED, ev[1].GetType(), "host migration after the grace")
	require.EqualValues(t, 1, h.m.Stats().SeatsExpired)

	res, _, _ := h.resume(a, a.seq)
	require.False(t, res.GetRecovered())
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_SEAT_EXPIRED, res.GetFailure())
	require.Greater(t, res.GetSnapshot().GetPlayerId(), ms[2].id, "seated anew, with a new player id")
}

func TestResentInputsAreDeduplicated(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	for _, seq := range []uint64{1, 2, 2, 3, 1} {
		h.send(a.member, wire.SendView{Payload: []byte(fmt.Sprint(seq)), Kind: 1, Seq: seq})
	}
	h.tick()
	require.Equal(t, []string{"1", "2", "3"}, payloads(deliveries(b.take(t))))
	require.EqualValues(t, 2, h.m.Stats().DuplicateInputs)
	h.m.Disconnect(a.s)
	h.sync()
	res, _, _ := h.resume(a, a.seq)
	require.EqualValues(t, 3, res.GetInputAck())
}

func TestAcksTrimTheRing(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	for range 5 {
		h.send(a.member, wire.SendView{Payload: make([]byte, 100), Kind: 1})
		h.tick()
	}
	b.take(t)
	before := h.m.Stats().ReplayBytes
	require.Positive(t, before)
	b.s.Ack(b.seq)
	h.send(a.member, wire.SendView{Payload: make([]byte, 100), Kind: 1})
	h.tick()
	require.Less(t, h.m.Stats().ReplayBytes, before, "acknowledged frames are let go")
}

// An acknowledgement that comes alone (an idle client's) frees the frames
// kept for the seat at once, in a room that builds no more frames.
func TestTrimReplayFreesAcknowledgedFramesOfAnIdleRoom(t *testing.T) {
	t.Parallel()
	h := graceHarness(t, room.Config{})
	ms := h.resumableRoom("r", 2)
	a, b := ms[0], ms[1]
	for range 3 {
		h.send(a.member, wire.SendView{Payload: make([]byte, 100), Kind: 1})
		h.tick()
	}
	b.take(t)
	a.take(t)
	h.tick() // nothing queued: the room sleeps
	before := h.m.Stats().ReplayBytes
	require.Positive(t, before)
	b.s.Ack(b.seq)
	h.m.TrimReplay(b.s)
	h.sync()
	after := h.m.Stats().ReplayBytes
	require.Less(t, after, before, "b's frames are let go without another frame")
	a.s.Ack(a.seq)
	h.m.TrimReplay(a.s)
	h.sync()
	require.Zero(t, h.m.Stats().ReplayBytes, "nothing is kept for seats whose clients hold everything")
	// The ring works on: a later frame is kept, and replayed on a resume.
	h.send(a.member, wire.SendView{Payload: []byte("later"), Kind: 1})
	h.tick()
	require.Positive(t, h.m.Stats().ReplayBytes)
}
