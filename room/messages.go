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

// sendJoined confirms the join of me into r.
func (w *worker) sendJoined(s *Seat, requestID uint32, r *room, me *member) {
	w.sendMessage(s, &pb.ServerMessage{
		RequestId: requestID,
		Body:      &pb.ServerMessage_Joined{Joined: w.joined(r, me)},
	})
}

// joined describes r to its member me, as Joined (and the snapshot of a
// Resume that could not recover) says, handing out me's resume token.
func (w *worker) joined(r *room, me *member) *pb.Joined {
	members := make([]*pb.Member, len(r.members))
	for i, m := range r.members {
		members[i] = &pb.Member{PlayerId: m.id, Metadata: m.metadata, UserId: m.userID, Away: m.away}
	}
	mode := pb.RoomMode_ROOM_MODE_TICKED
	if r.immediate {
		mode = pb.RoomMode_ROOM_MODE_IMMEDIATE
	}
	var start *pb.LockstepStart
	if r.ls != nil {
		mode = pb.RoomMode_ROOM_MODE_LOCKSTEP
		start = r.lockstepStart()
	}
	j := &pb.Joined{
		RoomId:       r.id,
		PlayerId:     me.id,
		HostId:       r.members[0].id,
		TickRate:     uint32(r.rate),
		Tick:         r.tickAt(w.now),
		Members:      members,
		MaxPlayers:   uint32(r.maxPlayers),
		RoomMetadata: r.metadata,
		Immediate:    r.immediate,
		ResumeToken:  me.resumeToken,
		SeatGraceMs:  uint32(r.grace.Milliseconds()),
		Mode:         mode,
		Lockstep:     start,
	}
	me.resumeToken = nil // handed out: only its hash stays
	return j
}
