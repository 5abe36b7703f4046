package room

import (
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Answers to requests (Joined, Left, Error) are rare, so they are built with
// the generated code and proto.Marshal rather than hand-written encoders.

// deliver hands out to s's peer, unless the seat is disconnected.
func (w *worker) deliver(s *Seat, out *Outbound) {
	if s.dead.Load() {
		out.Release()
		return
	}
	s.peer.Deliver(out)
}

// evict tells s's peer to close, unless the seat is disconnected.
func (w *worker) evict(s *Seat, cause EvictCause, detail string) {
	if !s.dead.Load() {
		s.peer.Evict(cause, detail)
	}
}

// sendMessage marshals msg into a pooled Outbound and delivers it.
func (w *worker) sendMessage(s *Seat, msg *pb.ServerMessage) {
	if s.dead.Load() {
		return
	}
	out := w.m.outbound.get(proto.Size(msg))
	b, err := proto.MarshalOptions{}.MarshalAppend(out.buf, msg)
	if err != nil {
		// Cannot happen: every string is checked or sanitised for UTF-8.
		out.Release()
		return
	}
	out.buf = b
	s.peer.Deliver(out)
}

// sendError answers request requestID of s with an Error carrying err's
// code and text.
func (w *worker) sendError(s *Seat, requestID uint32, err error) {
	w.sendMessage(s, &pb.ServerMessage{
		RequestId: requestID,
		Body: &pb.ServerMessage_Error{Error: &pb.Error{
			Code:    ErrorCode(err),
			Message: strings.ToValidUTF8(err.Error(), "\uFFFD"),
			Reason:  ErrorReason(err),
		}},
	})
}

// sendLeft tells s it is out of room roomID.
func (w *worker) sendLeft(s *Seat, requestID uint32, roomID string, reason pb.LeaveReason, message string) {
	w.sendMessage(s, &pb.ServerMessage{
		RequestId: requestID,
		Body: &pb.ServerMessage_Left{Left: &pb.Left{
			RoomId:  roomID,
			Reason:  reason,
			Message: strings.ToValidUTF8(message, "\uFFFD"),
		}},
	})
}

// sendJoined confirms the join of me into r. The answer is built in the
// worker's scratch (joinScratch) and marshalled at once: a join allocates no
// message tree (for a room of n, n Members and the Joined around them).
func (w *worker) sendJoined(s *Seat, requestID uint32, r *room, me *member) {
	js := &w.joinScratch
	w.fillJoined(&js.joined, r, me, w.scratchMembers(r))
	js.body.Joined = &js.joined
	js.msg.RequestId = requestID
	js.msg.Body = &js.body
	w.sendMessage(s, &js.msg)
	w.clearScratch()
}

// joinScratch is the message tree sendJoined builds its answer in, reused
// from one join to the next. Worker only; its references are cleared once
// the answer is marshalled.
type joinScratch struct {
	msg     pb.ServerMessage
	body    pb.ServerMessage_Joined
	joined  pb.Joined
	members []pb.Member
	ptrs    []*pb.Member
}

// joined describes r to its member me, as Joined (and the snapshot of a
// Resume that could not recover) says, handing out me's resume token.
func (w *worker) joined(r *room, me *member) *pb.Joined {
	members := make([]*pb.Member, len(r.members))
	for i, m := range r.members {
		members[i] = &pb.Member{PlayerId: m.id, Metadata: m.metadata(), UserId: m.userID(), Away: m.away}
	}
	j := &pb.Joined{}
	w.fillJoined(j, r, me, members)
	return j
}

// scratchMembers describes r's members in the worker's scratch.
func (w *worker) scratchMembers(r *room) []*pb.Member {
	js := &w.joinScratch
	n := len(r.members)
	if cap(js.members) < n {
		js.members = make([]pb.Member, n, max(n, 2*cap(js.members)))
		js.ptrs = make([]*pb.Member, n, cap(js.members))
	}
	js.members = js.members[:n]
	js.ptrs = js.ptrs[:n]
	for i, m := range r.members {
		pm := &js.members[i]
		*pm = pb.Member{PlayerId: m.id, Metadata: m.metadata(), UserId: m.userID(), Away: m.away}
		js.ptrs[i] = pm
	}
	return js.ptrs
}

// clearScratch drops the scratch's references once its message is
// marshalled.
func (w *worker) clearScratch() {
	js := &w.joinScratch
	js.msg.Body = nil
	js.body.Joined = nil
	js.joined = pb.Joined{}
	for i := range js.members {
		js.members[i] = pb.Member{}
	}
	clear(js.ptrs)
}

// fillJoined fills j as joined says, with members for its Members.
func (w *worker) fillJoined(j *pb.Joined, r *room, me *member, members []*pb.Member) {
	mode := pb.RoomMode_ROOM_MODE_TICKED
	if r.immediate {
		mode = pb.RoomMode_ROOM_MODE_IMMEDIATE
	}
	var start *pb.LockstepStart
	if r.ls != nil {
		mode = pb.RoomMode_ROOM_MODE_LOCKSTEP
		start = r.lockstepStart()
	}
	*j = pb.Joined{
		RoomId:       r.id,
		PlayerId:     me.id,
		HostId:       r.members[0].id,
		TickRate:     uint32(r.rate),
		Tick:         r.tickAt(w.now),
		Members:      members,
		MaxPlayers:   uint32(r.maxPlayers),
		RoomMetadata: r.metadata,
		Immediate:    r.immediate,
		ResumeToken:  tokenBytes(me.resumeToken),
		SeatGraceMs:  uint32(r.grace.Milliseconds()),
		Mode:         mode,
		Lockstep:     start,
	}
	me.resumeToken = nil // handed out: only its hash stays
}
