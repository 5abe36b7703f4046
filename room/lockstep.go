package room

import (
	"fmt"
	"slices"
	"time"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Lockstep rooms (RoomOptions.mode = LOCKSTEP) relay inputs, not messages:
// members send an Input for a tick, and when the tick closes every member
// gets one InputSet with every member's input, the same encoded bytes for
// all (encoded once, shared like a broadcast record). The room's schedule
// is the usual drift-free one, shifted by the room's tolerance: tick T
// closes at deadline(T) + tolerance. Its ticks are never skipped — a
// deterministic simulation needs every one — so a late worker closes the
// ticks it missed one after the other, and a lockstep room never sleeps.
//
// Each InputSet travels as the input_set of its own Frame (one per tick and
// member, followed by the member's input_lead_us when it sent an input),
// so frame numbering, the replay ring, resume and back-pressure work as for
// any frame. The room keeps the InputSets it closed in a log bounded in
// bytes; a player joining late gets the log (from tick 1), or a snapshot a
// member uploaded plus the log after it. Before the log fills, the room
// asks a member for a snapshot (SNAPSHOT_REQUESTED), so that one is there
// when the log must drop its oldest ticks.

// Error reasons of lockstep rooms (Error.reason).
const (
	ReasonInputClosed     = "closed"
	ReasonInputTooEarly   = "too_early"
	ReasonInputDuplicate  = "duplicate"
	ReasonNotLockstep     = "not_lockstep"
	ReasonSnapshotTick    = "snapshot_tick"
	ReasonSnapshotPending = "snapshot_pending"
)

// reasonError is an error with an Error.reason.
type reasonError struct {
	err    error
	reason string
	detail string
}

func (e *reasonError) Error() string { return e.err.Error() + ": " + e.detail }
func (e *reasonError) Unwrap() error { return e.err }

// snapshotRetry is the retry hint of a join refused with ErrSnapshotPending.
const snapshotRetry = time.Second

// lockstep is the state of a LOCKSTEP room, owned by its worker.
type lockstep struct {
	tolerance time.Duration
	repeat    bool
	maxLead   uint64 // inputs may target at most this many ticks ahead
	maxInput  int
	maxSnap   int

	// log holds the InputSet records of ticks logFirst.. (contiguous,
	// oldest first, from logHead on), logBytes their size.
	log      []*record
	logHead  int
	logFirst uint64
	logBytes int
	logMax   int
	// sinceSnap is the bytes logged after the snapshot (or since the
	// start): past half the log's bound a member is asked for one.
	sinceSnap int
	snap      []byte
	snapTick  uint64
	hasSnap   bool
	askedAt   uint64 // tick of the last SNAPSHOT_REQUESTED (0: none pending)
	askNext   int    // rotates the member asked

	// votes collect the checksums of recent ticks (ring by tick), judged
	// when every present member reported or voteAfter ticks later.
	votes     []vote
	voteAfter uint64

	entries []lsEntry // scratch for encoding an InputSet
}

type lsEntry struct {
	id      uint32
	flag    pb.InputFlag
	payload []byte
}

type vote struct {
	tick uint64
	done bool
	sums []playerSum
}

type playerSum struct {
	id  uint32
	sum uint64
}

// lsSeat is a member's lockstep state: its inputs for the open ticks (a
// ring by tick) and its last input, for INPUT_FLAG_REPEATED.
type lsSeat struct {
	slots   []inputSlot
	last    []byte
	hasLast bool
	lead    int64 // this tick's input lead (µs), when hasLead
	hasLead bool
}

type inputSlot struct {
	tick    uint64
	at      int64 // arrival, unix nanos
	payload []byte
}

func newLockstep(j *joinCmd, pol *Config) *lockstep {
	maxLead := uint64(pol.LockstepMaxLeadTicks)
	ls := &lockstep{
		tolerance: j.lsTolerance,
		repeat:    j.lsRepeat,
		maxLead:   maxLead,
		maxInput:  pol.LockstepMaxInputBytes,
		maxSnap:   pol.LockstepMaxSnapshotBytes,
		logFirst:  1,
		logMax:    pol.LockstepLogBytes,
		voteAfter: maxLead + 2,
	}
	ls.votes = make([]vote, ls.voteAfter+1)
	return ls
}

func (ls *lockstep) newSeat() *lsSeat { return &lsSeat{slots: make([]inputSlot, ls.maxLead)} }

// closeAt is when tick t of r closes (the last closed tick closed at
// r.last, its deadline).
func (r *room) closeAt(t uint64) time.Time {
	return r.last.Add(time.Duration(int64(t)-int64(r.tick)) * r.period)
}

// Input queues a lockstep Input of s. The payload is copied. Errors found
// without room state are returned (ErrMessageTooLarge, ErrNotInRoom,
// ErrOverloaded); the room answers the rest with an Error to the peer.
func (m *Manager) Input(s *Seat, requestID uint32, in *wire.InputView) error {
	if s == nil || in == nil {
		return fmt.Errorf("%w: nil seat or input", ErrInvalidArgument)
	}
	if s.dead.Load() {
		return ErrClosed
	}
	if m.quiesced.Load() {
		return ErrDraining
	}
	if st := s.state.Load(); st != stateJoining && st != stateInRoom {
		return ErrNotInRoom
	}
	if len(in.Payload) > m.policy().LockstepMaxInputBytes {
		return fmt.Errorf("%w: input of %d bytes above %d", ErrMessageTooLarge, len(in.Payload), m.policy().LockstepMaxInputBytes)
	}
	if s.queued.Add(1) > int32(m.cfg.InboxPerSeat) {
		s.queued.Add(-1)
		m.seatOverShare.Add(1)
		return ErrOverloaded
	}
	rec := m.records.get()
	rec.buf = append(rec.buf[:0], in.Payload...)
	rec.payloadLen = len(in.Payload)
	rec.requestID = requestID
	rec.seq = in.Seq
	rec.tick = in.TargetTick
	rec.checksumTick, rec.checksum = in.ChecksumTick, in.Checksum
	rec.at = m.cfg.Clock.Now().UnixNano()
	if err := s.worker.in.pushData(command{kind: cmdInput, seat: s, rec: rec}, false); err != nil {
		s.queued.Add(-1)
		m.records.put(rec)
		return err
	}
	return nil
}

// Snapshot queues a member's snapshot of its lockstep simulation after
// tick. state is copied.
func (m *Manager) Snapshot(s *Seat, requestID uint32, tick uint64, state []byte) error {
	if s == nil {
		return fmt.Errorf("%w: nil seat", ErrInvalidArgument)
	}
	if s.dead.Load() {
		return ErrClosed
	}
	if st := s.state.Load(); st != stateJoining && st != stateInRoom {
		return ErrNotInRoom
	}
	if len(state) > m.policy().LockstepMaxSnapshotBytes {
		return fmt.Errorf("%w: snapshot of %d bytes above %d", ErrMessageTooLarge, len(state), m.policy().LockstepMaxSnapshotBytes)
	}
	// A data command: it counts against the inbox and the seat's share,
	// so a client cannot queue snapshots without bound.
	if s.queued.Add(1) > int32(m.cfg.InboxPerSeat) {
		s.queued.Add(-1)
		m.seatOverShare.Add(1)
		return ErrOverloaded
	}
	snap := &snapshotCmd{tick: tick, state: append([]byte(nil), state...)}
	if err := s.worker.in.pushData(command{kind: cmdSnapshot, seat: s, requestID: requestID, snapshot: snap}, false); err != nil {
		s.queued.Add(-1)
		return err
	}
	return nil
}

type snapshotCmd struct {
	tick  uint64
	state []byte
}

// input processes a queued Input on the room's worker.
func (w *worker) input(s *Seat, rec *record) {
	defer w.m.records.put(rec)
	from := w.memberOf(s)
	if from == nil {
		w.sendError(s, rec.requestID, ErrNotInRoom)
		return
	}
	r := from.room
	ls := r.ls
	if ls == nil {
		w.sendError(s, rec.requestID, &reasonError{ErrInvalidArgument, ReasonNotLockstep, "Input in a room that is not LOCKSTEP"})
		return
	}
	if rec.seq != 0 {
		if rec.seq <= from.inputSeq {
			w.count.dupInputs++
			return
		}
		from.inputSeq = rec.seq
	}
	if rec.checksumTick != 0 {
		w.lsChecksum(r, from, rec.checksumTick, rec.checksum)
	}
	t := rec.tick
	if t == 0 {
		return // a checksum alone
	}
	lead := r.closeAt(t).UnixNano() - rec.at
	switch {
	case t <= r.tick:
		w.count.lsLate++
		w.sendInputTiming(s, rec.requestID, r, t, ReasonInputClosed, lead,
			fmt.Sprintf("tick %d closed (last closed %d)", t, r.tick))
		return
	case t > r.tick+ls.maxLead:
		w.sendInputTiming(s, rec.requestID, r, t, ReasonInputTooEarly, lead,
			fmt.Sprintf("tick %d is more than %d ticks after the last closed tick %d", t, ls.maxLead, r.tick))
		return
	case rec.payloadLen > ls.maxInput:
		w.sendError(s, rec.requestID, fmt.Errorf("%w: input of %d bytes above %d", ErrMessageTooLarge, rec.payloadLen, ls.maxInput))
		return
	}
	sl := &from.ls.slots[t%ls.maxLead]
	if sl.tick == t {
		w.sendError(s, rec.requestID, &reasonError{ErrInvalidArgument, ReasonInputDuplicate, fmt.Sprintf("a second input for tick %d (the first stands)", t)})
		return
	}
	sl.tick, sl.at = t, rec.at
	sl.payload = append(sl.payload[:0], rec.buf[:rec.payloadLen]...)
	r.messagesIn++
	w.count.messagesIn++
}

// sendInputTiming answers an Input outside the open ticks with
// Error{INPUT_TOO_LATE}: the last closed tick and how early (negative: how
// late) the input was, for the client's input delay.
func (w *worker) sendInputTiming(s *Seat, requestID uint32, r *room, target uint64, reason string, lead int64, detail string) {
	w.sendMessage(s, &pb.ServerMessage{
		RequestId: requestID,
		Body: &pb.ServerMessage_Error{Error: &pb.Error{
			Code:        pb.ErrorCode_ERROR_CODE_INPUT_TOO_LATE,
			Message:     "room: " + detail,
			Reason:      reason,
			Tick:        r.tick,
			InputLeadUs: lead / 1000,
			InputTick:   target,
		}},
	})
}

// closeTicks closes the ticks first..r.tick of lockstep room r: one
// InputSet each, queued for every member.
func (w *worker) closeTicks(r *room, first uint64) {
	for t := first; t <= r.tick && !r.closed; t++ {
		w.closeTick(r, t)
	}
}

// closeTick builds the InputSet of tick t and queues it (and each member's
// input lead) for every member. Substitution rule for a present member
// without an input for t: its last input repeated (REPEATED) when the room
// repeats and it has sent one, else an empty input (REPLACED_BY_SERVER).
// An away member gets NOT_PRESENT and an empty input.
func (w *worker) closeTick(r *room, t uint64) {
	ls := r.ls
	closeAt := r.closeAt(t).UnixNano()
	ents := ls.entries[:0]
	size := 0
	for _, m := range r.members {
		e := lsEntry{id: m.id}
		st := m.ls
		st.hasLead = false
		switch sl := &st.slots[t%ls.maxLead]; {
		case m.away:
			e.flag = pb.InputFlag_INPUT_FLAG_NOT_PRESENT
		case sl.tick == t:
			e.flag, e.payload = pb.InputFlag_INPUT_FLAG_CLIENT, sl.payload
			st.lead, st.hasLead = (closeAt-sl.at)/1000, true
			if ls.repeat {
				st.last, st.hasLast = append(st.last[:0], sl.payload...), true
			}
		case ls.repeat && st.hasLast:
			e.flag, e.payload = pb.InputFlag_INPUT_FLAG_REPEATED, st.last
			w.count.lsReplaced++
		default:
			e.flag = pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER
			w.count.lsReplaced++
		}
		size += wire.PlayerInputSize(e.id, uint8(e.flag), len(e.payload))
		ents = append(ents, e)
	}
	rec := w.m.records.get()
	need := wire.InputSetRecordSize(t, size)
	if cap(rec.buf) < need {
		rec.buf = make([]byte, 0, need)
	}
	b := wire.AppendInputSetStart(rec.buf[:0], t, size)
	for _, e := range ents {
		b = wire.AppendPlayerInput(b, e.id, uint8(e.flag), e.payload)
	}
	clear(ents) // no references to payloads kept
	ls.entries = ents[:0]
	rec.buf, rec.enc = b, b
	rec.inputSet, rec.tick = true, t
	rec.refs = 1 // the log's
	for _, m := range r.members {
		w.enqueue(r, m, rec)
		if m.ls.hasLead {
			lr := w.m.records.get()
			lr.buf = wire.AppendInputLead(lr.buf[:0], m.ls.lead)
			lr.enc, lr.lead = lr.buf, true
			w.enqueue(r, m, lr)
		}
	}
	w.count.lsSets++
	w.logAppend(r, rec)
	if t >= ls.voteAfter {
		w.judge(r, &ls.votes[(t-ls.voteAfter)%uint64(len(ls.votes))], t-ls.voteAfter)
	}
	w.maybeAskSnapshot(r)
}

// logAppend adds the InputSet record rec (holding one reference for the
// log) and drops the oldest past the log's bound.
func (w *worker) logAppend(r *room, rec *record) {
	ls := r.ls
	ls.log = append(ls.log, rec)
	ls.logBytes += len(rec.enc)
	ls.sinceSnap += len(rec.enc)
	for ls.logBytes > ls.logMax && ls.logHead < len(ls.log) {
		w.logDropOldest(r)
	}
}

func (w *worker) logDropOldest(r *room) {
	ls := r.ls
	old := ls.log[ls.logHead]
	ls.log[ls.logHead] = nil
	ls.logHead++
	ls.logFirst++
	ls.logBytes -= len(old.enc)
	if !ls.hasSnap || old.tick > ls.snapTick {
		ls.sinceSnap -= len(old.enc)
	}
	w.release(old)
	if ls.logHead > 64 && ls.logHead*2 > len(ls.log) {
		n := copy(ls.log, ls.log[ls.logHead:])
		clear(ls.log[n:])
		ls.log, ls.logHead = ls.log[:n], 0
	}
}

// dropLog releases the whole log (the room is gone).
func (w *worker) dropLog(r *room) {
	ls := r.ls
	for ls.logHead < len(ls.log) {
		w.logDropOldest(r)
	}
}

// lsStart is where a player joining r now starts: the first tick of the
// InputSets it gets and the snapshot to load first (if any). ok is false
// when neither the log nor a snapshot reaches back far enough.
func (r *room) lsStart() (first uint64, ok bool) {
	ls := r.ls
	switch {
	case ls.logFirst == 1:
		return 1, true
	case ls.hasSnap && ls.snapTick+1 >= ls.logFirst:
		return ls.snapTick + 1, true
	}
	return 0, false
}

// lockstepStart describes the start of me in r for its Joined.
func (r *room) lockstepStart() *pb.LockstepStart {
	ls := r.ls
	first, _ := r.lsStart()
	st := &pb.LockstepStart{
		FirstTick:       first,
		ToleranceMs:     uint32(ls.tolerance.Milliseconds()),
		RepeatLastInput: ls.repeat,
		MaxLeadTicks:    uint32(ls.maxLead),
		MaxInputBytes:   uint32(ls.maxInput),
	}
	if first > 1 {
		st.SnapshotTick, st.Snapshot = ls.snapTick, ls.snap
	}
	return st
}

// lsCatchUp sends m, which has just been told it starts at r.lsStart(),
// the logged InputSets from there to the last closed tick, one frame each,
// right after its Joined (or Resumed).
func (w *worker) lsCatchUp(r *room, m *member) {
	ls := r.ls
	first, ok := r.lsStart()
	if !ok || first > r.tick {
		return
	}
	from := ls.logHead + int(first-ls.logFirst)
	if from < ls.logHead || from >= len(ls.log) {
		return
	}
	w.writeFrames(r, m, ls.log[from:], r.tick, false)
}

// lsRefuse answers a join that cannot be served yet (the log no longer
// reaches the room's start and no snapshot covers the gap) with
// OVERLOADED{snapshot_pending} and a retry hint, and asks a member for a
// snapshot.
func (w *worker) lsRefuse(s *Seat, requestID uint32, r *room) {
	w.askSnapshot(r)
	w.sendMessage(s, &pb.ServerMessage{
		RequestId: requestID,
		Body: &pb.ServerMessage_Error{Error: &pb.Error{
			Code:         pb.ErrorCode_ERROR_CODE_OVERLOADED,
			Message:      "room: the lockstep room's input log no longer reaches its start and no snapshot covers it yet: retry",
			Reason:       ReasonSnapshotPending,
			RetryAfterMs: uint32(snapshotRetry.Milliseconds()),
		}},
	})
}

// maybeAskSnapshot asks for a snapshot once the log after the last one
// passes half its bound, again every two seconds until one comes.
func (w *worker) maybeAskSnapshot(r *room) {
	ls := r.ls
	if ls.sinceSnap <= ls.logMax/2 {
		return
	}
	if ls.askedAt != 0 && r.tick-ls.askedAt < uint64(2*r.rate) {
		return
	}
	w.askSnapshot(r)
}

// askSnapshot sends SNAPSHOT_REQUESTED to one present member, rotating
// among them on each request so that one unresponsive member cannot stall
// late joins for ever.
func (w *worker) askSnapshot(r *room) {
	ls := r.ls
	if ls.askedAt == r.tick && ls.askedAt != 0 {
		return
	}
	n := len(r.members)
	for i := 0; i < n; i++ {
		m := r.members[(ls.askNext+i)%n]
		if m.detached() {
			continue
		}
		ls.askNext = (ls.askNext + i + 1) % n
		ls.askedAt = max(r.tick, 1)
		earliest := ls.logFirst - 1
		if ls.hasSnap {
			earliest = max(earliest, ls.snapTick+1)
		}
		w.queueEventTo(r, m, &pb.RoomEvent{Type: pb.RoomEventType_ROOM_EVENT_TYPE_SNAPSHOT_REQUESTED, Tick: earliest})
		return
	}
}

// askSnapshotIfLive asks for a snapshot unless r just closed (its last
// member went).
func (w *worker) askSnapshotIfLive(r *room) {
	if !r.closed {
		w.askSnapshot(r)
	}
}

// snapshot processes a member's uploaded snapshot.
func (w *worker) snapshot(s *Seat, requestID uint32, c *snapshotCmd) {
	from := w.memberOf(s)
	if from == nil {
		w.sendError(s, requestID, ErrNotInRoom)
		return
	}
	r := from.room
	ls := r.ls
	if ls == nil {
		w.sendError(s, requestID, &reasonError{ErrInvalidArgument, ReasonNotLockstep, "Snapshot in a room that is not LOCKSTEP"})
		return
	}
	switch {
	case len(c.state) > ls.maxSnap:
		w.sendError(s, requestID, fmt.Errorf("%w: snapshot of %d bytes above %d", ErrMessageTooLarge, len(c.state), ls.maxSnap))
		return
	case c.tick == 0 || c.tick > r.tick || ls.hasSnap && c.tick <= ls.snapTick || c.tick+1 < ls.logFirst:
		w.sendError(s, requestID, &reasonError{ErrInvalidArgument, ReasonSnapshotTick,
			fmt.Sprintf("snapshot of tick %d: the room takes ticks %d..%d", c.tick, max(ls.logFirst-1, ls.snapTick+1, 1), r.tick)})
		return
	}
	ls.snap, ls.snapTick, ls.hasSnap = c.state, c.tick, true
	ls.askedAt = 0
	w.count.lsSnapshots++
	// The log before the snapshot is no longer needed: joiners start from it.
	for ls.logHead < len(ls.log) && ls.log[ls.logHead].tick <= c.tick {
		w.logDropOldest(r)
	}
	ls.sinceSnap = ls.logBytes
	if ls.logHead == len(ls.log) {
		ls.logFirst = c.tick + 1
	}
}

// lsChecksum records a member's checksum of tick t for the vote.
func (w *worker) lsChecksum(r *room, from *member, t, sum uint64) {
	ls := r.ls
	if t > r.tick || t+ls.voteAfter <= r.tick {
		return // not simulated yet, or judged already
	}
	v := &ls.votes[t%uint64(len(ls.votes))]
	if v.tick != t {
		v.tick, v.done, v.sums = t, false, v.sums[:0]
	}
	if v.done || slices.ContainsFunc(v.sums, func(p playerSum) bool { return p.id == from.id }) {
		return
	}
	v.sums = append(v.sums, playerSum{from.id, sum})
	if len(v.sums) >= len(r.members)-r.away {
		w.judge(r, v, t)
	}
}

// judge compares the checksums of tick t: the largest group of equal
// checksums is the majority; everyone outside it disagreed (all of them
// when two groups tie). A disagreement is reported to every member as
// DESYNC{tick, players}.
func (w *worker) judge(r *room, v *vote, t uint64) {
	if v.tick != t || v.done {
		return
	}
	v.done = true
	if len(v.sums) < 2 {
		return
	}
	slices.SortFunc(v.sums, func(a, b playerSum) int {
		switch {
		case a.sum < b.sum:
			return -1
		case a.sum > b.sum:
			return 1
		}
		return int(a.id) - int(b.id)
	})
	best, bestLen, tie := 0, 0, false
	for i := 0; i < len(v.sums); {
		j := i
		for j < len(v.sums) && v.sums[j].sum == v.sums[i].sum {
			j++
		}
		switch n := j - i; {
		case n > bestLen:
			best, bestLen, tie = i, n, false
		case n == bestLen:
			tie = true
		}
		i = j
	}
	if bestLen == len(v.sums) {
		return
	}
	var players []uint32
	for i, p := range v.sums {
		if tie || i < best || i >= best+bestLen {
			players = append(players, p.id)
		}
	}
	slices.Sort(players)
	w.count.lsDesyncs++
	w.queueEvent(r, &pb.RoomEvent{Type: pb.RoomEventType_ROOM_EVENT_TYPE_DESYNC, Tick: t, Players: players}, nil)
}
