package room

import (
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
		w.sendError(s, j.requestID, err)
		// CAS: a pipelined Leave may have moved the seat to leaving; its
		// queued leave command completes the seat then.
		s.state.CompareAndSwap(stateJoining, stateIdle)
		return
	}
	m := w.addMember(r, s, j.playerMetadata)
	w.sendJoined(s, j.requestID, r, m)
	s.state.CompareAndSwap(stateJoining, stateInRoom)
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
	s.state.Store(stateIdle)
}

// disconnect processes a queued Disconnect: the member leaves silently.
func (w *worker) disconnect(s *Seat) {
	if m := w.memberOf(s); m != nil {
		w.removeMember(m, pb.LeaveReason_LEAVE_REASON_DISCONNECTED)
	}
}

// send processes a queued Send: encode once, route to the recipients'
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
	r.messagesIn++
	w.count.messagesIn++
	rec.encode(from.id)
	rec.refs = 1 // the routing reference, released below
	w.route(r, from, rec)
	w.release(rec)
}

// route queues rec for its recipients: every other member when it has no
// targets, else the listed members (unknown ids skipped, duplicates once);
// the sender too when echo is set, and only then.
func (w *worker) route(r *room, from *member, rec *record) {
	supersede := rec.latestOnly && from.sentLatest(rec.kind)
	if len(rec.targets) == 0 && !supersede {
		// The hot path (a broadcast): one append per recipient and one
		// reference count update for all of them.
		n := int32(0)
		for _, to := range r.members {
			if to != from || rec.echo {
				to.pending = append(to.pending, rec)
				n++
			}
		}
		rec.refs += n
		if n > 0 {
			w.markDirty(r)
		}
		return
	}
	if len(rec.targets) == 0 {
		for _, to := range r.members {
			if to != from || rec.echo {
				w.routeTo(r, to, rec, supersede)
			}
		}
		return
	}
	// A fresh epoch marks the members this message has reached, so
	// duplicate targets are skipped without a set allocation.
	w.epoch++
	for _, id := range rec.targets {
		to := r.byID[id]
		if to == nil || to.mark == w.epoch || to == from {
			continue
		}
		to.mark = w.epoch
		w.routeTo(r, to, rec, supersede)
	}
	if rec.echo {
		w.routeTo(r, from, rec, supersede)
	}
}

// routeTo appends rec to to's pending list. When supersede is set, the
// sender already sent a latest-only message of this kind this tick: the
// one still waiting for to (if any) is dropped — not replaced in place, which
// would move the newer update before the sender's later normal messages.
func (w *worker) routeTo(r *room, to *member, rec *record, supersede bool) {
	if supersede {
		for i := len(to.pending) - 1; i >= 0; i-- {
			old := to.pending[i]
			if old != nil && old.latestOnly && old.sender == rec.sender && old.kind == rec.kind {
				to.pending[i] = nil
				w.release(old)
				w.count.dropped++
				break // each update drops its predecessor, so there is at most one
			}
		}
	}
	w.enqueue(r, to, rec)
}

// enqueue appends rec to m's pending list, taking a reference.
func (w *worker) enqueue(r *room, m *member, rec *record) {
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

// sentLatest records that m sent a latest-only message of kind in the
// current tick and reports whether it already had.
func (m *member) sentLatest(kind uint32) bool {
	for _, k := range m.latestKinds {
		if k == kind {
			return true
		}
	}
	m.latestKinds = append(m.latestKinds, kind)
	return false
}

// release drops one reference to rec, recycling it with the last.
func (w *worker) release(rec *record) {
	if rec.refs--; rec.refs <= 0 {
		w.m.records.put(rec)
	}
}
