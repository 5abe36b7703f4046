package room

import (
	"fmt"
	"math"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// flushRoom builds the frames of tick for every member of r with something
// addressed to it (and, when keepAlive is set, an empty frame for members
// that have had nothing for Config.KeepAliveInterval). It reports whether
// any frame went out. It also ends the latest-only window of every sender.
func (w *worker) flushRoom(r *room, tick uint64, keepAlive bool) bool {
	keepAlive = keepAlive && w.m.policy().KeepAliveInterval > 0
	if !r.work && !keepAlive {
		return false
	}
	r.work = false
	sent := false
	for _, m := range r.members {
		if w.flushMember(r, m, tick, keepAlive) {
			sent = true
		}
		if m.backlogLen() > 0 {
			r.work = true // held back: look again next tick
		}
		w.endLatestWindow(m)
	}
	// Every member has had the log's entries (framed or spilled); before
	// the evictions below queue events behind an empty log.
	w.resetBcast(r)
	if w.m.cfg.Hooks != nil {
		// After every frame of the tick: an input is acknowledged only
		// once the frames carrying it are out.
		for _, m := range r.members {
			w.ackInputs(m)
		}
	}
	// Evictions change r.members, so they wait until the loop is done.
	if len(w.evictions) > 0 {
		for _, m := range w.evictions {
			if !m.gone {
				w.evictSlow(m)
			}
		}
		clear(w.evictions)
		w.evictions = w.evictions[:0]
	}
	return sent
}

// flushMember builds m's frames of tick, or moves its messages to its
// backlog when its peer is congested. It reports whether it sent anything.
func (w *worker) flushMember(r *room, m *member, tick uint64, keepAlive bool) bool {
	logged := r.hasBcast(m)
	queued := logged || len(m.pending) > 0 || m.backlogLen() > 0
	if !queued && !keepAlive {
		return false // checked first: it needs no look at the seat's memory
	}
	if m.detached() {
		w.flushDetached(r, m, tick)
		return false
	}
	if !queued {
		return w.keepAliveIfDue(r, m, tick)
	}
	congested := m.seat.peer.Congested()
	if !congested && m.backlogLen() == 0 {
		if logged {
			if w.writeBcastFrame(r, m, tick) {
				return true
			}
			w.spillBcast(r, m) // several frames, or lockstep records
		}
		n := w.writeFrames(r, m, m.pending, tick, true)
		if n == len(m.pending) {
			w.clearPending(m)
			return true
		}
		// The peer became congested between the frames of this tick: what
		// is left waits in the backlog like any held-back message.
		w.releasePendingPrefix(m, n)
		w.moveToBacklog(m)
		w.evictIfBacklogTooBig(m)
		return true
	}
	// Congested, or draining a backlog: pending joins the backlog first
	// (with latest-only conflation), so the backlog goes out ahead of it.
	w.spillBcast(r, m)
	w.moveToBacklog(m)
	if congested {
		w.evictIfBacklogTooBig(m)
		return false
	}
	if n := w.writeFrames(r, m, m.held.recs, tick, true); n < len(m.held.recs) {
		w.releaseBacklogPrefix(m, n)
		w.evictIfBacklogTooBig(m)
		return true
	}
	w.clearBacklog(m)
	return true
}

// flushDetached handles a member whose connection is gone (its disconnect
// may still be on the way): the peer is never called again. With a seat
// grace its frames are built all the same, into the replay ring, for a
// resume; without one its messages are dropped.
func (w *worker) flushDetached(r *room, m *member, tick uint64) {
	w.spillBcast(r, m)
	if r.grace == 0 || len(m.pending) == 0 && m.backlogLen() == 0 {
		w.dropQueued(m)
		return
	}
	w.moveToBacklog(m)
	w.writeFrames(r, m, m.held.recs, tick, false)
	w.clearBacklog(m)
}

// keepAliveIfDue sends m, which has nothing queued, an empty frame when it
// has been sent nothing for the keep-alive interval and its peer can take
// it. It reports whether it did.
func (w *worker) keepAliveIfDue(r *room, m *member, tick uint64) bool {
	if w.stamp(w.now)-m.lastSent < int64(w.m.policy().KeepAliveInterval) || m.seat.peer.Congested() {
		return false
	}
	w.writeFrames(r, m, nil, tick, false)
	return true
}

// evictIfBacklogTooBig queues m for eviction as a slow consumer when its
// held-back messages passed MaxBacklogBytes; the flush evicts after the
// whole room has been flushed.
func (w *worker) evictIfBacklogTooBig(m *member) {
	if m.backlogBytes() > w.m.cfg.MaxBacklogBytes {
		w.evictions = append(w.evictions, m)
	}
}

// writeFrames copies items (nil entries skipped) into frames of tick for m,
// as few as MaxFrameBytes allows, and delivers them. With no items it sends
// one empty frame (a keep-alive). When the peer turns congested between two
// frames and yieldWhenCongested is set, it stops, so one tick's burst cannot
// run past the transport's limits; it returns how many items went out
// (len(items) when all did).
func (w *worker) writeFrames(r *room, m *member, items []*record, tick uint64, yieldWhenCongested bool) int {
	limit := recordsBudget(tick, w.m.cfg.MaxFrameBytes)
	i := 0
	for first := true; first || i < len(items); first = false {
		start, size := i, 0
		// A lockstep frame carries one InputSet, after the events of its
		// tick, followed only by the member's lead for it; its Frame.tick
		// is the InputSet's.
		var set *record
		for ; i < len(items); i++ {
			rec := items[i]
			if rec == nil || rec.superseded {
				continue
			}
			if set != nil && !rec.lead {
				break
			}
			// A single record larger than a frame still goes out, alone;
			// Send refuses payloads that would make one. A lead stays
			// with its InputSet (a few bytes past the budget at most).
			if size > 0 && !rec.lead && size+len(rec.enc) > limit {
				break
			}
			size += len(rec.enc)
			if rec.inputSet {
				set = rec
			}
		}
		if size == 0 && !(first && len(items) == 0) {
			break // only superseded entries left
		}
		ft := tick
		if set != nil {
			ft = set.tick
			w.count.lsDelivered++
		}
		seq := m.seq + 1
		out := w.m.outbound.get(wire.FrameSize(ft, seq, size))
		b := wire.AppendFrameStart(out.buf, ft, seq, size)
		deliveries := 0
		for _, rec := range items[start:i] {
			if rec != nil && !rec.superseded {
				b = append(b, rec.enc...)
				if !rec.event && !rec.inputSet && !rec.lead {
					deliveries++
				}
			}
		}
		w.sendFrame(r, m, seq, out, b, deliveries)
		if yieldWhenCongested && i < len(items) && !m.detached() && m.seat.peer.Congested() {
			m.lastSent = w.stamp(w.now)
			return i
		}
	}
	m.lastSent = w.stamp(w.now)
	return len(items)
}

// sendFrame ends frame seq of m, its records in b (out's buffer), and
// delivers it, keeping it for replay when r has a seat grace; deliveries
// is how many relayed messages it carries.
func (w *worker) sendFrame(r *room, m *member, seq uint64, out *Outbound, b []byte, deliveries int) {
	out.buf = wire.AppendFrameEnd(b, seq)
	m.seq = seq
	w.count.frames++
	w.count.frameBytes += uint64(len(out.buf) - out.headroom)
	w.count.deliveries += uint64(deliveries)
	r.deliveries += uint64(deliveries)
	if r.grace > 0 {
		w.keepForReplay(r, m, seq, out)
	}
	w.deliver(m.seat, out)
	w.framesDelivered(r)
}

// releasePendingPrefix releases the first n entries of m's pending list
// (already delivered) and keeps the rest, in order.
func (w *worker) releasePendingPrefix(m *member, n int) {
	for _, rec := range m.pending[:n] {
		if rec != nil {
			w.release(rec)
		}
	}
	rest := copy(m.pending, m.pending[n:])
	clear(m.pending[rest:])
	m.pending = m.pending[:rest]
}

// releaseBacklogPrefix releases the first n entries of m's backlog (already
// delivered) and keeps the rest, in order, with its accounting rebuilt.
func (w *worker) releaseBacklogPrefix(m *member, n int) {
	b := m.held
	for i, rec := range b.recs[:n] {
		if rec != nil {
			b.bytes -= len(rec.enc)
			b.live--
			w.release(rec)
			b.recs[i] = nil
		}
	}
	clear(b.idx)
	b.compact()
}

// recordsBudget is the largest total size of records that a frame of tick
// may hold without its encoding exceeding maxFrame, computed once per frame
// batch rather than with wire.FrameSize for every record.
func recordsBudget(tick uint64, maxFrame int) int {
	const seq = math.MaxUint64 // room for the largest seq
	n := maxFrame - wire.FrameSize(tick, seq, 0)
	for n > 0 && wire.FrameSize(tick, seq, n) > maxFrame {
		n-- // at most a few steps: only the length varint grew
	}
	return n
}

// moveToBacklog appends m's pending list to its backlog (made here, the
// first time m has one). A latest-only update drops an older one of the
// same sender and kind still in the backlog, so a congested peer gets only
// the newest state.
func (w *worker) moveToBacklog(m *member) {
	if m.held == nil {
		if len(m.pending) == 0 {
			return
		}
		m.held = &backlog{}
	}
	b := m.held
	for _, rec := range m.pending {
		if rec == nil {
			continue
		}
		if rec.superseded {
			w.release(rec)
			continue
		}
		if rec.latestOnly {
			key := uint64(rec.sender)<<32 | uint64(rec.kind)
			if b.idx == nil {
				b.idx = make(map[uint64]int)
			}
			if i, ok := b.idx[key]; ok {
				old := b.recs[i]
				b.recs[i] = nil
				b.bytes -= len(old.enc)
				b.live--
				w.release(old)
				w.count.backlogSuperseded++
			}
			b.idx[key] = len(b.recs)
		}
		b.recs = append(b.recs, rec)
		b.bytes += len(rec.enc)
		b.live++
	}
	clear(m.pending)
	m.pending = m.pending[:0]
	// A peer congested for long with only superseded updates would grow
	// the backlog with nil entries while its bytes stay small; compact.
	if len(b.recs) > 64 && len(b.recs) > 2*b.live {
		b.compact()
	}
}

// compact removes the nil entries of b and re-indexes it.
func (b *backlog) compact() {
	live := b.recs[:0]
	for _, rec := range b.recs {
		if rec != nil {
			if rec.latestOnly {
				b.idx[uint64(rec.sender)<<32|uint64(rec.kind)] = len(live)
			}
			live = append(live, rec)
		}
	}
	clear(b.recs[len(live):])
	b.recs = live
}

// endLatestWindow ends m's latest-only window as a sender: its updates of
// this tick are out or held back, and a new one supersedes nothing.
func (w *worker) endLatestWindow(m *member) {
	if len(m.latest) > 0 {
		for _, rec := range m.latest {
			w.release(rec)
		}
		clear(m.latest)
	}
}

// clearPending releases m's pending list.
func (w *worker) clearPending(m *member) {
	for _, rec := range m.pending {
		if rec != nil {
			w.release(rec)
		}
	}
	clear(m.pending)
	m.pending = m.pending[:0]
}

// clearBacklog releases m's backlog. The emptied backlog stays: a peer
// congested once is likely to be again.
func (w *worker) clearBacklog(m *member) {
	b := m.held
	if b == nil {
		return
	}
	for _, rec := range b.recs {
		if rec != nil {
			w.release(rec)
		}
	}
	clear(b.recs)
	b.recs = b.recs[:0]
	clear(b.idx)
	b.bytes = 0
	b.live = 0
}

// detached reports whether m has no connection to write to: it is away,
// or its seat was disconnected and the worker has not processed it yet.
func (m *member) detached() bool { return m.away || m.seat.dead.Load() }

// keepForReplay puts a frame sent (or built while away) into m's replay
// ring, after dropping what the client has acknowledged, and keeps the ring
// within its per-seat and per-room bounds by dropping its oldest frames (a
// Resume needing them is then answered TOO_OLD).
func (w *worker) keepForReplay(r *room, m *member, seq uint64, out *Outbound) {
	w.applyAck(r, m)
	w.ringBytes(r, m.ring.push(seq, out))
	cfg := &w.m.cfg
	for m.ring.len() > 1 && (m.ring.bytes > cfg.ReplayBytesPerSeat || r.ringBytes > cfg.ReplayBytesPerRoom) {
		w.ringBytes(r, -m.ring.dropOldest())
	}
}

// applyAck releases the frames of m's ring that its client acknowledged.
func (w *worker) applyAck(r *room, m *member) {
	if acked := m.seat.acked.Load(); acked > 0 {
		w.ringBytes(r, -m.ring.ack(acked))
		if m.prev != nil && acked > m.prev.resumeSeq {
			m.prev = nil // the client has read its Resumed, new token and all
		}
	}
}

// trimReplay applies s's acknowledgement to its ring now (TrimReplay); an
// emptied ring gives up its buffer too: its client acknowledges while idle,
// and an idle seat should hold nothing.
func (w *worker) trimReplay(s *Seat) {
	m := s.member.Load()
	if m == nil || m.gone || m.seat != s || m.room.w != w {
		return // moved on since: its next frame applies the ack
	}
	w.applyAck(m.room, m)
	if m.ring.len() == 0 {
		m.ring.buf = nil
	}
}

// ringBytes accounts n bytes more (or less) kept for replay in r.
func (w *worker) ringBytes(r *room, n int) {
	r.ringBytes += n
	w.count.replayBytes += int64(n)
}

// dropRing releases m's replay ring.
func (w *worker) dropRing(m *member) {
	w.ringBytes(m.room, -m.ring.clear())
}

// dropQueued releases everything still queued for m, and what m holds as
// a sender.
func (w *worker) dropQueued(m *member) {
	m.bcastFrom = int32(len(m.room.bcast))
	w.clearPending(m)
	w.clearBacklog(m)
	w.endLatestWindow(m)
}

// flushLeaver hands a member that leaves (or is kicked, or whose room
// closes) what was already addressed to it — it was a member when those
// messages were routed — before the Left that ends its membership. The
// frames carry the tick they were destined for.
func (w *worker) flushLeaver(m *member) {
	if m.seat.dead.Load() {
		w.dropQueued(m)
		return
	}
	w.spillBcast(m.room, m)
	if m.backlogLen() > 0 {
		w.moveToBacklog(m)
		w.writeFrames(m.room, m, m.held.recs, m.room.tick+1, false)
		w.clearBacklog(m)
	} else if len(m.pending) > 0 {
		w.writeFrames(m.room, m, m.pending, m.room.tick+1, false)
		w.clearPending(m)
	}
}

// evictSlow removes a member whose backlog passed MaxBacklogBytes: the
// others see PLAYER_LEFT{SLOW_CONSUMER}; the peer is told to close, with an
// Error saying why.
func (w *worker) evictSlow(m *member) {
	s := m.seat
	backlog := m.backlogBytes()
	removing := s.state.CompareAndSwap(stateInRoom, stateLeaving)
	w.removeMember(m, pb.LeaveReason_LEAVE_REASON_SLOW_CONSUMER)
	w.evict(s, EvictSlowConsumer, fmt.Sprintf("room: backlog of %d bytes above %d", backlog, w.m.cfg.MaxBacklogBytes))
	w.count.slowConsumers++
	if removing {
		s.settle(stateLeaving, stateIdle)
	}
}

// flushDirty flushes the immediate rooms that got something during the
// batch just processed. Their frame tick counts flushes.
func (w *worker) flushDirty() {
	for _, r := range w.dirty {
		r.dirty = false
		if r.closed || !r.immediate {
			continue
		}
		w.flushImmediate(r, false)
	}
	clear(w.dirty)
	w.dirty = w.dirty[:0]
}

// flushImmediate flushes an immediate room; the flush counter advances only
// when a frame went out.
func (w *worker) flushImmediate(r *room, keepAlive bool) {
	if w.flushRoom(r, r.tick+1, keepAlive) {
		r.tick++
		r.publishClock()
	}
}
