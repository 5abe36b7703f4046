package room

import "time"

// schedule is a worker's min-heap of rooms by next deadline; one timer
// armed for the top replaces a timer per room. room.heapIdx is the room's
// position (-1 when not in the heap).
type schedule []*room

func (h schedule) less(i, j int) bool { return h[i].next.Before(h[j].next) }

func (h schedule) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (h *schedule) push(r *room) {
	r.ticking.Store(!r.immediate)
	r.heapIdx = len(*h)
	*h = append(*h, r)
	h.up(r.heapIdx)
}

func (h *schedule) remove(r *room) {
	i := r.heapIdx
	if i < 0 {
		return
	}
	r.ticking.Store(false)
	last := len(*h) - 1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	r.heapIdx = -1
	if i != last {
		h.fix(i)
	}
}

// fix restores the heap after the deadline of the room at i changed.
func (h schedule) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h schedule) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h schedule) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

// housekeepingPeriod is the schedule of immediate rooms, which only ever
// tick to drain backlogs and send keep-alives.
func (w *worker) housekeepingPeriod() time.Duration { return periodOf(w.m.policy().DefaultTickRate) }

// scheduleNew places a new room's first deadline a pseudo-random fraction
// of its period from now, never exactly now, so rooms created together
// spread their ticks over the period instead of writing all at once.
func (w *worker) scheduleNew(r *room) {
	r.period = w.housekeepingPeriod()
	if !r.immediate {
		r.period = periodOf(r.rate)
	}
	r.base = w.firstDeadline(r.period)
	if r.ls != nil {
		// Tick T closes tolerance after its deadline: the whole grid shifts, so the
		// room stays drift-free. The first close stays within a period
		// of now, like any room's first tick.
		r.base = r.base.Add(r.ls.tolerance)
		for r.base.Sub(w.now) > r.period {
			r.base = r.base.Add(-r.period)
		}
	}
	r.n = 0
	r.next = r.base
	r.last = r.base.Add(-r.period)
	w.sched.push(r)
}

// phaseSlots is how many tick phases the rooms of one rate are spread over.
// Rooms that all ticked at once would write in one burst; rooms at random
// phases would each wake the worker (1,250 idle rooms at 30 Hz: 37,500 wake-ups
// a second). Sixteen slots keep both small: a slot's rooms share a deadline.
const phaseSlots = 16

// roomsPerPhase is how many of a worker's rooms a phase takes before new
// rooms spread over more of them. A burst of a few dozen rooms' frames is
// short (a room of 8 is 8 writes); a wake-up is not free at any size: each
// phase costs the worker a timer and every event loop with a member in it
// an eventfd write and an epoll return, a period's fixed cost that weighs
// most where rooms are few and quiet (bench S5: 25 rooms, where 16 phases
// woke each loop up to 16 times a tick for a handful of frames each).
const roomsPerPhase = 32

// firstDeadline is a new room's first deadline: the first instant after now
// on one of the phaseSlots slots of period, counted from the worker's grid
// origin, so that rooms with the same period and slot tick together. Of the
// slots, only as many are used as the worker's rooms need (one per
// roomsPerPhase rooms), evenly apart.
func (w *worker) firstDeadline(period time.Duration) time.Time {
	step := max(period/phaseSlots, 1)
	used := min(phaseSlots, 1+len(w.rooms)/roomsPerPhase)
	offset := time.Duration(w.rng.Int64N(int64(used))*int64(phaseSlots/used)) * step
	since := w.now.Sub(w.gridOrigin) - offset
	k := since / period
	base := w.gridOrigin.Add(offset + k*period)
	for !base.After(w.now) {
		base = base.Add(period)
	}
	return base
}

// reschedule switches r to rate (0: immediate) from the next tick: the
// schedule is re-based at the last tick run, so the next deadline is one new
// period after it (or now, if that is already past — a rate change is not
// an overrun).
func (w *worker) reschedule(r *room, rate int) {
	if r.asleep {
		w.wake(r)
	}
	wasImmediate := r.immediate
	r.immediate = rate == 0
	r.ticking.Store(!r.immediate)
	r.rate = rate
	if r.immediate {
		r.period = w.housekeepingPeriod()
	} else {
		r.period = periodOf(rate)
	}
	r.base, r.n = r.last, 1
	if wasImmediate {
		// Housekeeping ticks are not the room's clock: start afresh.
		r.base, r.n = w.now, 1
	}
	r.next = r.base.Add(r.period)
	if r.next.Before(w.now) {
		r.base, r.n, r.next = w.now, 0, w.now
	}
	w.sched.fix(r.heapIdx)
	// What was pending for the old tick of a room turning immediate goes
	// out at the end of this batch, like any other message of the room.
	w.markDirty(r)
}

// runDue runs the tick of every room whose deadline is not after now. A
// room more than a period late does not run catch-up ticks: its tick number
// jumps by the periods missed, an overrun is counted, and its next deadline
// is the first one in the future. Each tick's lateness is measured at the
// moment it starts (after the ticks before it), its duration with the
// worker's clock.
func (w *worker) runDue() {
	for len(w.sched) > 0 {
		r := w.sched[0]
		if r.next.After(w.now) {
			return
		}
		late := w.now.Sub(r.next)
		missed := int64(0)
		if late >= r.period {
			missed = int64(late / r.period)
		}
		r.last = r.next.Add(time.Duration(missed) * r.period)
		r.n += 1 + missed
		r.next = r.base.Add(time.Duration(r.n) * r.period)
		w.sched.fix(0)
		if r.immediate {
			if r.away > 0 {
				w.expireAway(r)
			}
			if !r.closed {
				w.flushImmediate(r, true)
				w.maybeSleep(r)
			}
			continue
		}
		if missed > 0 {
			r.overruns++
			w.count.overruns++
		}
		r.lastLateness = late
		r.maxLateness = max(r.maxLateness, late)
		first := r.tick + 1
		r.tick += uint64(1 + missed)
		w.runTick(r, first)
		end := w.m.cfg.Clock.Now()
		if obs := w.m.cfg.Observer; obs != nil {
			obs.ObserveTick(late, end.Sub(w.now))
		}
		w.now = end
		w.maybeSleep(r)
	}
}

// maybeSleep takes r off the schedule when its tick left nothing to do (no
// pending message, no backlog) and no keep-alive is configured: an idle room
// then costs no wake-up, heap work or tick. Rooms asleep when a reload turns
// keep-alives on start them at their next message.
func (w *worker) maybeSleep(r *room) {
	if r.ls != nil || r.work || r.closed || r.away > 0 || w.m.policy().KeepAliveInterval > 0 {
		return
	}
	w.sched.remove(r)
	r.asleep = true
	// A sleeping room's members have nothing pending: let their lists go,
	// so that idle players hold no routing memory. The next message that
	// needs one allocates it again; a room that sleeps has few messages.
	for _, m := range r.members {
		if len(m.pending) == 0 {
			m.pending = nil
		}
	}
}

// wake puts a sleeping room back on the schedule at the first deadline of
// its grid after now. The deadlines that passed while it slept count as
// ticks (tick x period stays a clock) but not as overruns: nothing was late.
func (w *worker) wake(r *room) {
	r.asleep = false
	if !r.next.After(w.now) {
		passed := int64(w.now.Sub(r.next)/r.period) + 1
		r.last = r.next.Add(time.Duration(passed-1) * r.period)
		r.n += passed
		r.next = r.base.Add(time.Duration(r.n) * r.period)
		if !r.immediate {
			r.tick += uint64(passed)
		}
	}
	w.sched.push(r)
	r.publishClock()
}

// runTick builds the frames of r's current tick; a lockstep room first
// closes its ticks first..r.tick (more than one when the worker was late:
// lockstep ticks are never skipped).
func (w *worker) runTick(r *room, first uint64) {
	r.publishClock()
	if r.away > 0 {
		w.expireAway(r)
		if r.closed {
			return
		}
	}
	if r.ls != nil {
		w.closeTicks(r, first)
	}
	w.flushRoom(r, r.tick, true)
	w.count.ticks++
}

// arm sets the worker's one timer for the earliest deadline, or stops it
// when no room is scheduled, and tells the inbox whether it is set. It
// resets the timer only when the earliest deadline changed, so a busy inbox
// does not churn the timer.
func (w *worker) arm() {
	w.setTimer()
	if w.armed != w.inboxKnowsArmed {
		w.in.setTimerArmed(w.armed)
		w.inboxKnowsArmed = w.armed
	}
}

func (w *worker) setTimer() {
	if len(w.sched) == 0 {
		if w.armed {
			w.timer.Stop()
			w.armed = false
		}
		return
	}
	next := w.sched[0].next
	if w.armed && next.Equal(w.armedFor) {
		return
	}
	d := max(next.Sub(w.m.cfg.Clock.Now()), 0)
	if w.timer == nil {
		w.timer = w.m.cfg.Clock.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	w.armed, w.armedFor = true, next
}
