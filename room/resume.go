package room

import (
	"fmt"
	"strings"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// resumeCmd is a validated Resume.
type resumeCmd struct {
	requestID uint32
	roomID    string
	player    uint32
	token     []byte
	lastSeq   uint64
	grant     *Grant
}

// Resume asks for s, a new connection's seat, to take back the seat a
// dropped connection held (Joined.resume_token). It is answered
// asynchronously with Resumed: recovered, and the frames after last_seq
// replayed right after it; or not, with why, and (when the room still has
// room) a Joined snapshot of a new seat. Errors found without room state are
// returned here, like Join's. req is not referenced after Resume returns.
func (m *Manager) Resume(s *Seat, req ResumeRequest) error {
	if s == nil || req.Resume == nil {
		return fmt.Errorf("%w: nil seat or resume", ErrInvalidArgument)
	}
	if m.closed.Load() || s.dead.Load() {
		return ErrClosed
	}
	id := req.Resume.GetRoomId()
	if !validRoomID(id) {
		return fmt.Errorf("%w: room id must be 1-%d bytes of [A-Za-z0-9_.:-]", ErrInvalidArgument, maxRoomIDLen)
	}
	if !s.state.CompareAndSwap(stateIdle, stateJoining) {
		if s.state.Load() == stateInRoom {
			return ErrAlreadyInRoom
		}
		return ErrSeatBusy
	}
	s.worker = m.workerFor(id)
	cmd := &resumeCmd{
		requestID: req.RequestID,
		roomID:    id,
		player:    req.Resume.GetPlayerId(),
		token:     append([]byte(nil), req.Resume.GetToken()...),
		lastSeq:   req.Resume.GetLastSeq(),
		grant:     req.Grant,
	}
	if !s.worker.in.pushControl(command{kind: cmdResume, seat: s, requestID: req.RequestID, resume: cmd}) {
		s.state.Store(stateIdle)
		return ErrClosed
	}
	return nil
}

// resume processes a queued Resume on the worker of its room.
func (w *worker) resume(s *Seat, c *resumeCmd) {
	r := w.rooms[c.roomID]
	if r != nil && r.asleep {
		w.wake(r)
	}
	var m *member
	if r != nil {
		m = r.member(c.player)
	}
	match := tokenWrong
	if m != nil {
		match = matchToken(m, c.token)
	}
	switch {
	case r == nil:
		w.resumeFailed(s, c, nil, pb.ResumeFailure_RESUME_FAILURE_ROOM_GONE)
		return
	case m == nil:
		w.resumeFailed(s, c, r, pb.ResumeFailure_RESUME_FAILURE_SEAT_EXPIRED)
		return
	case match == tokenWrong:
		// No snapshot: the client may be guessing tokens.
		w.resumeFailed(s, c, nil, pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN)
		return
	}
	// The seat is this client's. A still attached connection (half-open:
	// the relay has not seen it drop) is replaced.
	if old := m.seat; !old.dead.Load() && old != s {
		old.member.Store(nil)
		old.settle(stateInRoom, stateIdle)
		w.evict(old, EvictReplaced, "the session was resumed on another connection")
	}
	wasAway := m.away
	if m.away {
		m.away = false
		r.away--
		w.count.seatsAway--
	}
	if match == tokenCurrent {
		// The client surely holds this one; the new one may be lost.
		m.prev = &prevToken{hash: m.tokenHash, generation: m.generation}
	}
	// (With tokenPrevious, m.prev is that token and stays.)
	m.generation++
	m.resumeToken, m.tokenHash = newResumeToken(r.id, m.id, m.generation)
	defer w.roomChanged(r) // after the token is handed out and resumeSeq set
	m.seat = s
	s.member.Store(m)
	s.acked.Store(c.lastSeq)
	if wasAway {
		w.queueEvent(r, &pb.RoomEvent{Type: pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_BACK, PlayerId: m.id}, m)
	}

	replay, ok := m.ring.since(c.lastSeq, m.seq)
	if !ok || c.lastSeq > m.seq {
		// The frames the client lacks are gone (the ring overflowed), or
		// it claims frames never sent: it keeps its seat and resyncs from
		// a snapshot of the room as it is.
		if r.ls != nil {
			if _, ok := r.lsStart(); !ok {
				// A lockstep player cannot resync without the log or a
				// snapshot: the seat goes, and the client joins again
				// (answered snapshot_pending until a snapshot comes).
				w.count.resumes[pb.ResumeFailure_RESUME_FAILURE_TOO_OLD]++
				w.removeMember(m, pb.LeaveReason_LEAVE_REASON_SEAT_EXPIRED)
				w.askSnapshotIfLive(r)
				w.sendMessage(s, &pb.ServerMessage{RequestId: c.requestID, Body: &pb.ServerMessage_Resumed{Resumed: &pb.Resumed{
					Failure: pb.ResumeFailure_RESUME_FAILURE_TOO_OLD,
				}}})
				s.settle(stateJoining, stateIdle)
				return
			}
		}
		w.ringBytes(r, -m.ring.ack(m.seq))
		m.prev.resumeSeq = m.seq
		w.count.resumes[pb.ResumeFailure_RESUME_FAILURE_TOO_OLD]++
		token := tokenBytes(m.resumeToken)
		snapshot := w.joined(r, m) // (hands out the token too)
		w.sendMessage(s, &pb.ServerMessage{RequestId: c.requestID, Body: &pb.ServerMessage_Resumed{Resumed: &pb.Resumed{
			Failure:  pb.ResumeFailure_RESUME_FAILURE_TOO_OLD,
			NewToken: token,
			InputAck: m.inputSeq,
			Snapshot: snapshot,
		}}})
		if r.ls != nil {
			w.lsCatchUp(r, m)
		}
		s.settle(stateJoining, stateInRoom)
		return
	}
	w.ringBytes(r, -m.ring.ack(c.lastSeq))
	m.prev.resumeSeq = c.lastSeq
	w.count.resumes[0]++
	w.count.replayed += uint64(len(replay))
	w.sendMessage(s, &pb.ServerMessage{RequestId: c.requestID, Body: &pb.ServerMessage_Resumed{Resumed: &pb.Resumed{
		Recovered:  true,
		NewToken:   tokenBytes(m.resumeToken),
		ReplayFrom: c.lastSeq + 1,
		ReplayTo:   m.seq,
		InputAck:   m.inputSeq,
	}}})
	m.resumeToken = nil
	for _, o := range replay {
		o.retain() // the ring keeps its hold until the client acknowledges
		w.deliver(s, o)
	}
	if len(replay) > 0 {
		w.framesDelivered(r)
	}
	m.lastSent = w.stamp(w.now)
	s.settle(stateJoining, stateInRoom)
}

// resumeFailed answers a Resume that found no seat to take back. When the
// room is given and has room, the player is seated anew (a new player id)
// and the answer carries that seat's Joined, so the game can resync.
func (w *worker) resumeFailed(s *Seat, c *resumeCmd, r *room, why pb.ResumeFailure) {
	w.count.resumes[why]++
	resumed := &pb.Resumed{Failure: why}
	if r != nil && r.ls != nil {
		if _, ok := r.lsStart(); !ok {
			w.askSnapshot(r)
			r = nil // no snapshot seat: the client joins again later
		}
	}
	if r != nil && len(r.members) < r.maxPlayers && (c.grant == nil || c.grant.AllowsRoom == nil || c.grant.AllowsRoom(r.id)) {
		userID := ""
		var md map[string]string
		if c.grant != nil {
			userID, md = c.grant.UserID, cloneMetadata(c.grant.Metadata)
		}
		m := w.addMember(r, s, md, userID)
		resumed.Snapshot = w.joined(r, m)
		w.sendMessage(s, &pb.ServerMessage{RequestId: c.requestID, Body: &pb.ServerMessage_Resumed{Resumed: resumed}})
		if r.ls != nil {
			w.lsCatchUp(r, m)
		}
		s.settle(stateJoining, stateInRoom)
		return
	}
	if why == pb.ResumeFailure_RESUME_FAILURE_BAD_TOKEN && !s.dead.Load() {
		// Counts as a failed join, before the answer (see join).
		s.peer.JoinRefused(pb.ErrorCode_ERROR_CODE_UNAUTHORIZED)
	}
	w.sendMessage(s, &pb.ServerMessage{RequestId: c.requestID, Body: &pb.ServerMessage_Resumed{Resumed: resumed}})
	s.settle(stateJoining, stateIdle)
}

// goAway keeps the seat of m, whose connection dropped without a Leave, for
// its room's grace: the others see PLAYER_AWAY, its frames go on into its
// replay ring, and a Resume within the grace takes it back.
func (w *worker) goAway(m *member) {
	r := m.room
	m.away = true
	m.awayUntil = w.stamp(w.now.Add(r.grace))
	r.away++
	w.count.seatsAway++
	w.queueEvent(r, &pb.RoomEvent{Type: pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, PlayerId: m.id}, m)
	if r.asleep {
		w.wake(r) // a sleeping room must tick to see the grace run out
	}
	w.roomChanged(r)
}

// expireAway removes the away members of r whose grace ran out.
func (w *worker) expireAway(r *room) {
	for i := 0; i < len(r.members); {
		m := r.members[i]
		if m.away && w.stamp(w.now) >= m.awayUntil {
			w.count.seatsExpired++
			w.removeMember(m, pb.LeaveReason_LEAVE_REASON_SEAT_EXPIRED)
			if r.closed {
				return
			}
			continue // members shifted
		}
		i++
	}
}

// resumeOutcomeName names the index of worker.count.resumes.
func resumeOutcomeName(i int) string {
	if i == 0 {
		return "recovered"
	}
	return strings.ToLower(strings.TrimPrefix(pb.ResumeFailure(i).String(), "RESUME_FAILURE_"))
}
