package room

import (
	"slices"
	"time"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// memberOf returns s's membership if it is in a room of w, else nil. A seat
// whose member belongs to another worker is, as far as w is concerned, in no
// room: w must not touch another worker's room.
func (w *worker) memberOf(s *Seat) *member {
	m := s.member.Load()
	if m == nil || m.room.w != w {
		return nil
	}
	return m
}

// join processes a queued Join. The seat is joining (or leaving, when a
// Leave was pipelined behind the Join).
func (w *worker) join(s *Seat, j *joinCmd) {
	// A seat disconnected before its join is processed still joins (its
	// peer is sent nothing): the disconnect queued behind this command
	// removes it at once. Skipping the join instead would make player ids
	// and room creation depend on how fast Disconnect was called.
	if w.memberOf(s) != nil {
		// Unreachable by the state machine; answer rather than corrupt.
		w.sendError(s, j.requestID, ErrAlreadyInRoom)
		return
	}
	r, err := w.roomForJoin(j)
	if err != nil {
		// Counted before the answer goes out: a client that has read its
		// refusal may join again at once, and must find the count moved.
		if !s.dead.Load() {
			s.peer.JoinRefused(ErrorCode(err))
		}
		w.sendError(s, j.requestID, err)
		// CAS: a pipelined Leave may have moved the seat to leaving; its
		// queued leave command completes the seat then.
		s.settle(stateJoining, stateIdle)
		return
	}
	if r.ls != nil {
		if _, ok := r.lsStart(); !ok {
			w.lsRefuse(s, j.requestID, r)
			s.settle(stateJoining, stateIdle)
			return
		}
	}
	m := w.addMember(r, s, j.playerMetadata, j.userID)
	w.sendJoined(s, j.requestID, r, m)
	if r.ls != nil {
		w.lsCatchUp(r, m)
	}
	s.settle(stateJoining, stateInRoom)
}

// leave processes a queued Leave; the seat is leaving, and only this command
// moves it back to idle.
func (w *worker) leave(s *Seat, requestID uint32) {
	if m := w.memberOf(s); m != nil {
		roomID := m.room.id
		w.flushLeaver(m)
		w.removeMember(m, pb.LeaveReason_LEAVE_REASON_LEFT)
		w.sendLeft(s, requestID, roomID, pb.LeaveReason_LEAVE_REASON_LEFT, "")
	} else {
		// The join failed, or a kick beat the leave (Left{KICKED} went out).
		w.sendError(s, requestID, ErrNotInRoom)
	}
	// Idle only once the answer is queued: a Join the connection holds
	// behind this Leave is answered after it.
	s.state.Store(stateIdle)
	s.ready()
}

// disconnect processes a queued Disconnect or Forfeit: the connection
// dropped without a Leave. With a seat grace, and keep, the member goes
// away (its seat is kept for a Resume); otherwise it leaves.
func (w *worker) disconnect(s *Seat, keep bool) {
	m := w.memberOf(s)
	if m == nil || m.seat != s {
		return // it left already, or a Resume took its seat
	}
	if keep && m.room.grace > 0 && m.resumable && !w.m.quiesced.Load() {
		w.goAway(m)
		return
	}
	w.removeMember(m, pb.LeaveReason_LEAVE_REASON_DISCONNECTED)
}

// send processes a queued Send: check the sender's budget for this tick,
// encode once, route to the room's broadcast log or the recipients'
// pending lists.
func (w *worker) send(s *Seat, rec *record) {
	from := w.memberOf(s)
	if from == nil {
		// The join failed, or the seat was removed (kicked, slow consumer,
		// room closed) after this message was queued.
		w.sendError(s, rec.requestID, ErrNotInRoom)
		w.m.records.put(rec)
		return
	}
	r := from.room
	if r.asleep {
		w.wake(r) // so that r.tick is current for the budget
	}
	if !w.withinBudget(r, from, rec) {
		w.m.records.put(rec)
		return
	}
	if rec.seq != 0 {
		// Inputs re-sent after a resume: the relay keeps the first copy.
		if rec.seq <= from.inputSeq {
			w.count.dupInputs++
			w.m.records.put(rec)
			return
		}
		from.inputSeq = rec.seq
	}
	r.messagesIn++
	w.count.messagesIn++
	rec.encode(from.id)
	rec.refs = 1 // the routing reference, released below
	w.route(r, from, rec)
	w.release(rec)
}

// withinBudget charges rec to its sender's tick budget
// (Config.SenderTickMessages and SenderTickBytes): one member's burst cannot
// flood the others' frames, however much its connection's rate limits let
// through. The budget is a bucket that every tick refills by one tick's
// budget. A message takes at most one tick's budget from it, unless the
// transport held it back (Manager.SendHeldBack): such messages, which the
// client sent at its own pace while its frames backed up and which reach
// the room at once when they drain, may take a second tick's, borrowed
// from the ticks after it. Without that, a client on a slow downlink would
// lose messages it never sent too fast. A sender that bursts while reading
// its frames gets one tick's budget per tick. Over budget the message is
// dropped; the sender is told once per tick with Error{RATE_LIMITED}, its
// retry hint the time to the next tick, which refills the bucket.
func (w *worker) withinBudget(r *room, from *member, rec *record) bool {
	pol := w.m.policy()
	if from.budgetTick != r.tick {
		from.refillBudget(r, pol)
	}
	depth := 1
	if rec.heldBack {
		depth = heldBackBudgetDepth
	}
	if int(from.spentMessages) < depth*pol.SenderTickMessages && int(from.spentBytes)+rec.payloadLen <= depth*pol.SenderTickBytes {
		from.spentMessages++
		from.spentBytes += int32(rec.payloadLen)
		return true
	}
	w.count.overBudget++
	if !from.budgetNoticed {
		from.budgetNoticed = true
		retry := max(r.next.Sub(w.now), time.Millisecond)
		w.sendMessage(from.seat, &pb.ServerMessage{
			RequestId: rec.requestID,
			Body: &pb.ServerMessage_Error{Error: &pb.Error{
				Code:         pb.ErrorCode_ERROR_CODE_RATE_LIMITED,
				Message:      "room: over this sender's budget for the tick: message dropped",
				RetryAfterMs: uint32(retry.Milliseconds() + 1),
			}},
		})
	}
	return false
}

// heldBackBudgetDepth is how many ticks' budget held-back messages may use:
// the input a connection may buffer while held (max-message-bytes + 64 KiB
// in the transport) fits in two at the default tick-budget-bytes.
const heldBackBudgetDepth = 2

// refillBudget moves m's budget bucket on to r's tick: each tick since the
// last charge gives back one tick's budget, and what is left spent is at
// most one tick's budget of the current policy (a reload that lowered it
// does not lock a sender out for the ticks its old spending would take).
// An immediate room's tick counts flushes, and a flush comes only with
// something routed: a sender refused there would wait for a flush that its
// refused messages never cause, so its bucket empties at every flush
// instead, and held-back messages borrow nothing.
func (m *member) refillBudget(r *room, pol *Config) {
	if !r.immediate && r.tick == m.budgetTick+1 {
		m.spentMessages = carriedSpending(m.spentMessages, pol.SenderTickMessages)
		m.spentBytes = carriedSpending(m.spentBytes, pol.SenderTickBytes)
	} else {
		// Two ticks or more since the last charge give back at least the
		// two ticks' budget a bucket can have spent.
		m.spentMessages, m.spentBytes = 0, 0
	}
	m.budgetTick, m.budgetNoticed = r.tick, false
}

// carriedSpending is what is left spent of a bucket one tick after it had
// spent spent: one tick's budget given back, at most one tick's left.
func carriedSpending(spent int32, budget int) int32 {
	return min(max(spent-int32(budget), 0), int32(budget))
}

// route queues rec for its recipients: every other member when it has no
// targets (once, in the room's broadcast log: see broadcast.go), else the
// listed members (unknown ids skipped, duplicates once), in their pending
// lists; the sender too when echo is set, and only then.
//
// A latest-only message supersedes the sender's previous one of the same
// kind still waiting for this tick when both go to the same recipients (the
// same targets and echo), in constant time: the old record (and its log
// entry) is marked superseded and every list holding it skips it. Updates
// to other recipients are both delivered, in order: dropping the old one
// for some of its recipients only would need a search of their pending
// lists.
func (w *worker) route(r *room, from *member, rec *record) {
	if rec.latestOnly {
		w.supersede(from, rec)
	}
	if len(rec.targets) == 0 {
		// The hot path (a broadcast): one entry in the room's broadcast
		// log for the tick, one reference for all recipients; each
		// member's frame is built from the log (see broadcast.go).
		if w.perMemberRoute {
			for _, to := range r.members {
				if to != from || rec.echo {
					w.enqueue(r, to, rec)
				}
			}
			return
		}
		if len(r.members) > 1 || rec.echo {
			w.logBroadcast(r, rec)
			w.markDirty(r)
		}
		return
	}
	// A fresh epoch marks the members this message has reached, so
	// duplicate targets are skipped without a set allocation.
	w.epoch++
	for _, id := range rec.targets {
		to := r.member(id)
		if to == nil || to.mark == w.epoch || to == from {
			continue
		}
		to.mark = w.epoch
		w.enqueue(r, to, rec)
	}
	if rec.echo {
		w.enqueue(r, from, rec)
	}
}

// supersede makes rec the sender's latest-only update of its kind for this
// tick, marking the previous one superseded when it has the same
// recipients.
func (w *worker) supersede(from *member, rec *record) {
	if from.latest == nil {
		from.latest = make(map[uint32]*record)
	}
	if old := from.latest[rec.kind]; old != nil {
		if !old.superseded && old.echo == rec.echo && slices.Equal(old.targets, rec.targets) {
			old.superseded = true
			if i := int(old.bcastIdx) - 1; i >= 0 && i < len(from.room.bcast) && from.room.bcast[i].rec == old {
				from.room.bcast[i].superseded = true
			}
			w.count.dropped++
		}
		w.release(old)
	}
	from.latest[rec.kind] = rec
	rec.refs++ // the sender's reference, released when the tick ends
}

// enqueue appends rec to m's pending list, taking a reference. It goes
// after the broadcasts logged so far, so those m has not had yet move into
// the list first (m's pending list always precedes its entries of the log).
func (w *worker) enqueue(r *room, m *member, rec *record) {
	w.spillBcast(r, m)
	m.pending = append(m.pending, rec)
	rec.refs++
	w.markDirty(r)
}

// markDirty notes that r has work for its next flush, and queues an
// immediate room for the end-of-batch flush.
func (w *worker) markDirty(r *room) {
	r.work = true
	if r.asleep {
		w.wake(r)
	}
	if r.immediate && !r.dirty {
		r.dirty = true
		w.dirty = append(w.dirty, r)
	}
}

// release drops one reference to rec, recycling it with the last.
func (w *worker) release(rec *record) {
	if rec.refs--; rec.refs <= 0 {
		w.m.records.put(rec)
	}
}
