package room

import "github.com/tickrelay/tickrelay/proto/wire"

// A room's broadcast log: the Sends without targets routed since the last
// flush, in routing order, each holding one reference, their encodings
// back to back in room.bcastBuf. A broadcast goes to every member but its
// sender (the sender too with echo), so rather than appending it to every
// member's pending list, routing appends it here once; at the flush each
// member's frame is built from the log, skipping its own records and the
// superseded ones, merged in routing order with its pending list (what was
// addressed to it alone: targeted messages, events), copying runs of
// consecutive broadcasts at once (writeBcastFrame).
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
// next; a bigger one (a burst) is left to the GC.
const maxKeptBcastBuf = 1 << 20

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
	for i := m.bcastFrom; i < len(r.bcast); i++ {
		if r.bcast[i].to(m) {
			return true
		}
	}
	return false
}

// spillBcast moves the broadcasts of r's log addressed to m (from
// m.bcastFrom on) into m's pending list, merged in routing order with what
// is there, each taking a reference: m's messages then take the per-member
// paths. The log itself is unchanged; m gets none of its entries again.
func (w *worker) spillBcast(r *room, m *member) {
	if m.bcastFrom >= len(r.bcast) {
		return
	}
	out := w.spill[:0]
	j := 0
	for i := m.bcastFrom; i < len(r.bcast); i++ {
		for ; j < len(m.pending) && int(m.pendingAt[j]) <= i; j++ {
			out = append(out, m.pending[j])
		}
		if e := &r.bcast[i]; e.to(m) {
			out = append(out, e.rec)
			e.rec.refs++
		}
	}
	out = append(out, m.pending[j:]...)
	m.pending = append(m.pending[:0], out...)
	m.pendingAt = m.pendingAt[:0]
	for range m.pending {
		m.pendingAt = append(m.pendingAt, int32(len(r.bcast)))
	}
	m.bcastFrom = len(r.bcast)
	clear(out)
	w.spill = out[:0]
}

// resetBcast empties r's broadcast log at the end of a flush (every member
// has had its entries, in a frame or spilled) or when r is destroyed.
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
		// Empty after a flush; kept right should anything be queued.
		clear(m.pendingAt)
	}
}

// writeBcastFrame builds m's frame of tick from r's broadcast log merged
// with m's pending list, and delivers it: the common case of flushMember
// (m attached, not congested, no backlog). It handles only a tick that
// fits one frame and holds no lockstep records, and reports false, having
// done nothing, otherwise: the caller spills the log and goes the
// per-member way.
func (w *worker) writeBcastFrame(r *room, m *member, tick uint64) bool {
	log, pending, at := r.bcast, m.pending, m.pendingAt
	size, deliveries := 0, 0
	j := 0
	for i := m.bcastFrom; ; i++ {
		for ; j < len(pending) && (i == len(log) || int(at[j]) <= i); j++ {
			rec := pending[j]
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
		if i == len(log) {
			break
		}
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
		run, runEnd := -1, 0 // the run of broadcasts not copied yet, in bcastBuf
		j = 0
		for i := m.bcastFrom; i < len(log); i++ {
			if j < len(pending) && int(at[j]) <= i {
				if run >= 0 {
					b = append(b, r.bcastBuf[run:runEnd]...)
					run = -1
				}
				for ; j < len(pending) && int(at[j]) <= i; j++ {
					if rec := pending[j]; rec != nil && !rec.superseded {
						b = append(b, rec.enc...)
					}
				}
			}
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
		for ; j < len(pending); j++ {
			if rec := pending[j]; rec != nil && !rec.superseded {
				b = append(b, rec.enc...)
			}
		}
		w.sendFrame(r, m, seq, out, b, deliveries)
	}
	// With only superseded entries, no frame, as writeFrames.
	m.lastSent = stamp(w.now)
	w.clearPending(m)
	m.bcastFrom = len(log)
	return true
}
