package room

import "github.com/tickrelay/tickrelay/proto/wire"

// A room's broadcast log: the Sends without targets routed since the last
// flush, in routing order, each holding one reference, their encodings
// back to back in room.bcastBuf. A broadcast goes to every member but its
// sender (the sender too with echo), so rather than appending it to every
// member's pending list, routing appends it here once; at the flush each
// member's frame is built from the log, skipping its own records and the
// superseded ones, after its pending list (what was addressed to it alone:
// targeted messages, events), copying runs of consecutive broadcasts at
// once (writeBcastFrame). Queueing something for one member first moves
// the log's entries it has not had into its pending list (enqueue), so
// that its pending list always precedes its entries of the log: routing
// order without a merge. In a room of broadcasts that costs nothing; a
// targeted message costs its recipient what per-member routing would have.
//
// The common case only takes that path: a member attached, not congested,
// with no backlog, whose tick fits one frame. Any other (congested or
// draining a backlog, detached, leaving, a tick split over several frames,
// lockstep records) first spills the log's entries for the member into its
// pending list (spillBcast), and the per-member paths go on as before.

// bcastEntry is one broadcast in the log: its record and where its
// encoding sits in room.bcastBuf.
type bcastEntry struct {
	rec        *record
	start, end int
	sender     uint32
	echo       bool
	// superseded mirrors rec.superseded (set by supersede), so that the
	// frame builders need not touch the record.
	superseded bool
}

// to reports whether e is addressed to m: every member's but its sender's,
// which only with echo.
func (e *bcastEntry) to(m *member) bool { return e.sender != m.id || e.echo }

// maxKeptBcastBuf is the largest log buffer kept from one tick to the
// next; a bigger one (a burst) is left to the GC. Every room keeps its own,
// quiet or not, so it is sized for a busy room's ordinary tick (a room of
// 100 at 10 messages/s each: ~3 KB), not for the largest.
const maxKeptBcastBuf = 64 << 10

// logBroadcast appends rec, encoded, to r's broadcast log, taking one
// reference for all its recipients.
func (w *worker) logBroadcast(r *room, rec *record) {
	start := len(r.bcastBuf)
	r.bcastBuf = append(r.bcastBuf, rec.enc...)
	r.bcast = append(r.bcast, bcastEntry{rec: rec, start: start, end: len(r.bcastBuf), sender: rec.sender, echo: rec.echo})
	rec.refs++
	rec.bcastIdx = int32(len(r.bcast))
}

// hasBcast reports whether r's log holds a broadcast addressed to m,
// superseded or not (like a superseded entry of a pending list, it counts
// as something queued).
func (r *room) hasBcast(m *member) bool {
	for i := int(m.bcastFrom); i < len(r.bcast); i++ {
		if r.bcast[i].to(m) {
			return true
		}
	}
	return false
}

// spillBcast moves the broadcasts of r's log addressed to m (from
// m.bcastFrom on) to the end of m's pending list, in order, each taking a
// reference: before anything queued for m alone (enqueue), and before m's
// messages take the per-member paths. The log itself is unchanged; m gets
// none of its entries again.
func (w *worker) spillBcast(r *room, m *member) {
	for i := int(m.bcastFrom); i < len(r.bcast); i++ {
		if e := &r.bcast[i]; e.to(m) {
			m.pending = append(m.pending, e.rec)
			e.rec.refs++
		}
	}
	m.bcastFrom = int32(len(r.bcast))
}

// resetBcast empties r's broadcast log at the end of a flush (every member
// has had its entries, in a frame or moved to its pending list) or when r
// is destroyed.
func (w *worker) resetBcast(r *room) {
	for i := range r.bcast {
		rec := r.bcast[i].rec
		rec.bcastIdx = 0
		w.release(rec)
	}
	clear(r.bcast)
	r.bcast = r.bcast[:0]
	if cap(r.bcastBuf) > maxKeptBcastBuf {
		r.bcastBuf = nil
	} else {
		r.bcastBuf = r.bcastBuf[:0]
	}
	for _, m := range r.members {
		m.bcastFrom = 0
	}
}

// writeBcastFrame builds m's frame of tick from its pending list followed
// by its entries of r's broadcast log, and delivers it: the common case of
// flushMember (m attached, not congested, no backlog). It handles only a
// tick that fits one frame and holds no lockstep records, and reports
// false, having done nothing, otherwise: the caller moves the log's
// entries into the pending list and goes the per-member way.
func (w *worker) writeBcastFrame(r *room, m *member, tick uint64) bool {
	log := r.bcast[m.bcastFrom:]
	size, deliveries := 0, 0
	for _, rec := range m.pending {
		if rec == nil || rec.superseded {
			continue
		}
		if rec.inputSet || rec.lead {
			return false
		}
		size += len(rec.enc)
		if !rec.event {
			deliveries++
		}
	}
	for i := range log {
		if e := &log[i]; e.to(m) && !e.superseded {
			size += e.end - e.start
			deliveries++
		}
	}
	if size > recordsBudget(tick, w.m.cfg.MaxFrameBytes) {
		return false
	}
	if size > 0 {
		seq := m.seq + 1
		out := w.m.outbound.get(wire.FrameSize(tick, seq, size))
		b := wire.AppendFrameStart(out.buf, tick, seq, size)
		for _, rec := range m.pending {
			if rec != nil && !rec.superseded {
				b = append(b, rec.enc...)
			}
		}
		// Runs of consecutive broadcasts for m are contiguous in
		// bcastBuf: one copy each.
		run, runEnd := -1, 0
		for i := range log {
			e := &log[i]
			if !e.to(m) || e.superseded {
				if run >= 0 {
					b = append(b, r.bcastBuf[run:runEnd]...)
					run = -1
				}
				continue
			}
			if run < 0 {
				run = e.start
			}
			runEnd = e.end
		}
		if run >= 0 {
			b = append(b, r.bcastBuf[run:runEnd]...)
		}
		w.sendFrame(r, m, seq, out, b, deliveries)
	}
	// With only superseded entries, no frame, as writeFrames.
	m.lastSent = w.stamp(w.now)
	w.clearPending(m)
	m.bcastFrom = int32(len(r.bcast))
	return true
}
