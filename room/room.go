package room

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// room is one room. Every field is owned by the worker w, except the two
// clock atomics, which the worker writes and Seat.Clock reads.
type room struct {
	id         string
	w          *worker
	createdAt  time.Time
	maxPlayers int
	metadata   map[string]string

	// members in join order: members[0] is the host (the oldest member).
	// Player ids grow with the joins, so the order is also by id, which
	// member(id) searches: no map beside it (a map of a room of 8 cost its
	// players about 24 bytes each).
	members []*member
	lastID  uint32 // player ids start at 1 and are never reused

	// Schedule: deadline n is base + n*period; next is the pending one and
	// last the deadline of the last tick run. Immediate rooms keep a
	// schedule too, at the default rate, for housekeeping only (backlogs
	// and keep-alives of quiet rooms).
	immediate bool
	rate      int // Hz; 0 when immediate
	period    time.Duration
	base      time.Time
	n         int64
	next      time.Time
	last      time.Time
	heapIdx   int
	tick      uint64 // last tick run (or flush, when immediate)

	dirty  bool // immediate: queued in w.dirty for the end-of-batch flush
	closed bool
	// work: something was queued for a member (pending or backlog) since
	// the room last flushed. A tick with no work and no keep-alive due
	// skips the walk over the members, which keeps idle rooms cheap.
	work bool

	// ticking: the room is ticked (not immediate) and on its worker's
	// schedule, so a message for it may wait in the inbox for the worker's
	// next deadline (Manager.Send). Written by the worker (schedule push
	// and remove, rate changes), read by producers.
	ticking atomic.Bool

	// asleep: the room had nothing to do at its last tick and left the
	// worker's schedule; the next message (markDirty) wakes it, counting
	// the deadlines that passed as ticks. Idle rooms then cost nothing.
	asleep bool

	// Published for Seat.Clock: the last tick run, the rate, and the next
	// deadline and period, so the clock keeps counting while the room
	// sleeps.
	clockTick   atomic.Uint64
	clockRate   atomic.Int32
	clockNext   atomic.Int64 // unix nanos
	clockPeriod atomic.Int64 // nanoseconds

	messagesIn, deliveries, overruns uint64
	lastLateness, maxLateness        time.Duration

	// grace is how long a member whose connection dropped keeps its seat
	// (0: no resume: it leaves at once). away counts such members now;
	// while any is away the room does not sleep, so that its grace runs
	// out on time. ringBytes is the frames its members' replay rings hold.
	grace     time.Duration
	away      int
	ringBytes int

	// touched: the room delivered frames in the worker's current round
	// (it is in worker.touched, for Hooks.FramesDone).
	touched bool

	// ls is the state of a LOCKSTEP room; nil in other modes.
	ls *lockstep

	// bcast holds the broadcasts (Sends without targets) routed since the
	// last flush, in routing order, one reference each; bcastBuf their
	// encodings back to back, so that a member's frame copies runs of
	// them at once. See broadcast.go.
	bcast    []bcastEntry
	bcastBuf []byte
}

// member is one player of a room, owned by the room's worker.
type member struct {
	id uint32
	// bcastFrom is the first entry of the room's broadcast log this member
	// gets: it joined, or had the log moved into pending, after the
	// earlier ones.
	bcastFrom int32
	seat      *Seat
	room      *room
	joinedAt  int64 // stamp
	// ident is the player's metadata and user id; nil when it has
	// neither (metadata(), userID()).
	ident    *memberIdent
	lastSent int64 // stamp of the last frame handed over, for keep-alives
	// resumeToken is the token to hand out in the Joined or Resumed being
	// built (nil once sent: only its hash is kept).
	resumeToken *[resumeTokenLen]byte

	// mark dedupes targets while one message is routed (see worker.epoch).
	mark uint64

	// pending holds what is addressed to this member in the current tick
	// outside the room's broadcast log (targeted messages, events, and
	// broadcasts moved out of the log), in routing order, all of it
	// before the log's entries from bcastFrom on; nil entries (and records
	// marked superseded) are latest-only updates superseded since they
	// were queued.
	pending []*record
	// held is what a congested peer could not take yet; nil until the
	// member's peer is first congested (most never are, and an idle
	// connection should cost little).
	held *backlog

	// latest maps each kind this member sent latest-only during the current
	// tick to that record (holding a reference), so the next update of the
	// kind finds the one it supersedes in constant time.
	latest map[uint32]*record

	// Resume state. seq is the last Frame.seq sent (frames are numbered per
	// seat from 1); ring keeps the frames not yet acknowledged. resumable:
	// the member has a resume token (tokenHash, for this generation);
	// every resume bumps generation and rotates the token. away: its
	// connection dropped and its seat is kept until awayUntil; inputSeq is
	// the highest Send.seq accepted from it.
	//
	// A Resumed can be lost with the connection carrying it, taking the new
	// token along; the client then holds only the token it resumed with.
	// That one stays good while prev is set (after a resume only).
	seq       uint64
	ring      replayRing
	tokenHash [32]byte
	prev      *prevToken
	// inputSeqAcked is the inputSeq last told to an InputAcker peer.
	inputSeqAcked uint64
	awayUntil     int64 // stamp
	inputSeq      uint64

	// The member's budget as a sender (Config.SenderTickMessages,
	// SenderTickBytes; see worker.withinBudget): what it has spent of its
	// bucket as of tick budgetTick.
	budgetTick    uint64
	spentMessages int32
	spentBytes    int32

	// ls is the member's lockstep state (its open inputs); nil outside
	// LOCKSTEP rooms.
	ls *lsSeat

	generation uint32 // of the resume token (see seq); here to share a word with the flags
	// The flags, together (a bool between wider fields costs a word).
	gone          bool // removed from the room
	resumable     bool
	away          bool
	budgetNoticed bool // told RATE_LIMITED this tick
}

// member returns r's member with player id id, or nil.
func (r *room) member(id uint32) *member {
	i, found := slices.BinarySearchFunc(r.members, id, func(m *member, id uint32) int { return cmp.Compare(m.id, id) })
	if !found {
		return nil
	}
	return r.members[i]
}

// memberIdent is what a member's client said of itself and who its token
// says it is. Apart from the member, which is part of what every player
// costs, because most players of a relay without auth have neither.
type memberIdent struct {
	metadata map[string]string
	userID   string // from the auth token, "" without auth
}

// newMemberIdent returns the ident of a member with metadata and userID:
// nil when both are empty.
func newMemberIdent(metadata map[string]string, userID string) *memberIdent {
	if len(metadata) == 0 && userID == "" {
		return nil
	}
	return &memberIdent{metadata: metadata, userID: userID}
}

// metadata is the player's metadata (nil: none).
func (m *member) metadata() map[string]string {
	if m.ident == nil {
		return nil
	}
	return m.ident.metadata
}

// userID is the player's user id from its auth token ("" without auth).
func (m *member) userID() string {
	if m.ident == nil {
		return ""
	}
	return m.ident.userID
}

// backlog holds what a congested peer could not take yet, in order. idx
// maps a latest-only (sender, kind) to its index in recs, for conflation
// across ticks; live counts the non-nil entries, bytes their encoded size.
type backlog struct {
	recs  []*record
	idx   map[uint64]int
	bytes int
	live  int
}

// prevToken is the resume token a member had before its last resume, of
// generation generation: it stays good until the client acknowledges a
// frame after resumeSeq, which proves it read the Resumed (and the new
// token) sent before them.
type prevToken struct {
	hash       [32]byte
	generation uint32
	resumeSeq  uint64
}

// backlogLen is the number of entries in m's backlog (superseded ones
// included).
func (m *member) backlogLen() int {
	if m.held == nil {
		return 0
	}
	return len(m.held.recs)
}

// backlogBytes is the encoded size of m's held-back records.
func (m *member) backlogBytes() int {
	if m.held == nil {
		return 0
	}
	return m.held.bytes
}

// stamp is t as nanoseconds since the Manager was made (monotonic for
// time.Now's times): a member's times in 8 bytes where a time.Time takes
// 24.
func (w *worker) stamp(t time.Time) int64 { return int64(t.Sub(w.m.stampBase)) }

// timeOf is the time of stamp s, as a wall-clock time (without a monotonic
// reading: it is shown and compared, not subtracted from).
func (w *worker) timeOf(s int64) time.Time {
	return w.m.stampBase.Add(time.Duration(s)).Round(0)
}

// publishClock makes tick and rate visible to Seat.Clock.
func (r *room) publishClock() {
	r.clockTick.Store(r.tick)
	r.clockRate.Store(int32(r.rate))
	r.clockNext.Store(r.next.UnixNano())
	r.clockPeriod.Store(int64(r.period))
}

// tickAt is r's tick number at now: the last tick run plus, for a sleeping
// ticked room, the deadlines that have passed since.
func (r *room) tickAt(now time.Time) uint64 {
	if !r.asleep || r.immediate || r.next.After(now) {
		return r.tick
	}
	return r.tick + 1 + uint64(now.Sub(r.next)/r.period)
}

// roomForJoin finds or creates the room a join asks for.
func (w *worker) roomForJoin(j *joinCmd) (*room, error) {
	if j.roomID == "" {
		code, err := w.newRoomCode()
		if err != nil {
			return nil, err
		}
		return w.createRoom(code, j)
	}
	r := w.rooms[j.roomID]
	if r != nil && r.asleep {
		w.wake(r) // Joined carries the current tick
	}
	if r == nil {
		if !j.createIfMissing {
			return nil, fmt.Errorf("%w: no room %q", ErrRoomNotFound, j.roomID)
		}
		if j.authed && !j.mayCreate {
			if w.m.cfg.ConcealRooms {
				return nil, fmt.Errorf("%w: no room %q", ErrRoomNotFound, j.roomID)
			}
			return nil, &AuthError{ReasonCreateNotAllowed, "the token does not allow creating rooms"}
		}
		return w.createRoom(j.roomID, j)
	}
	if len(r.members) >= r.maxPlayers || r.lastID == math.MaxUint32 {
		if w.m.cfg.ConcealRooms {
			// No existence oracle: a full room looks like no room.
			return nil, fmt.Errorf("%w: no room %q", ErrRoomNotFound, j.roomID)
		}
		return nil, fmt.Errorf("%w: room %q has %d of %d players", ErrRoomFull, r.id, len(r.members), r.maxPlayers)
	}
	return r, nil
}

// createRoom creates room id with the joiner's options (already validated).
func (w *worker) createRoom(id string, j *joinCmd) (*room, error) {
	if h := w.m.cfg.Hooks; h != nil && !h.MayCreate(id) {
		return nil, fmt.Errorf("%w: no room %q on this node", ErrRoomNotFound, id)
	}
	if n := w.m.roomCount.Add(1); n > int64(w.m.policy().MaxRooms) {
		w.m.roomCount.Add(-1)
		return nil, fmt.Errorf("%w: %d rooms", ErrRoomLimit, w.m.policy().MaxRooms)
	}
	cfg := w.m.policy()
	r := &room{
		id:         id,
		w:          w,
		createdAt:  w.now,
		maxPlayers: j.maxPlayers,
		metadata:   j.roomMetadata,
		immediate:  j.immediate,
		heapIdx:    -1,
	}
	if r.maxPlayers == 0 {
		r.maxPlayers = cfg.DefaultMaxPlayers
	}
	if !r.immediate {
		r.rate = j.tickRate
		if r.rate == 0 {
			r.rate = cfg.DefaultTickRate
			if j.grantTickRate > 0 {
				r.rate = max(min(r.rate, j.grantTickRate), cfg.MinTickRate)
			}
		}
	}
	if j.maxPlayers == 0 && j.grantPlayers > 0 {
		r.maxPlayers = min(r.maxPlayers, j.grantPlayers)
	}
	r.grace = cfg.SeatGrace
	if j.seatGrace > 0 {
		r.grace = min(j.seatGrace, cfg.MaxSeatGrace)
	}
	r.grace = max(r.grace, 0)
	if j.lockstep {
		r.ls = newLockstep(j, cfg)
	}
	w.rooms[id] = r
	w.count.rooms++
	w.scheduleNew(r)
	r.publishClock()
	return r, nil
}

// addMember adds s to r and announces it to the others.
func (w *worker) addMember(r *room, s *Seat, metadata map[string]string, userID string) *member {
	r.lastID++
	m := &member{id: r.lastID, seat: s, room: r, joinedAt: w.stamp(w.now), lastSent: w.stamp(w.now), ident: newMemberIdent(metadata, userID), bcastFrom: int32(len(r.bcast))}
	if r.ls != nil {
		m.ls = r.ls.newSeat()
	}
	r.members = append(r.members, m)
	s.member.Store(m)
	w.count.players++
	if r.grace > 0 {
		m.resumable = true
		m.resumeToken, m.tokenHash = newResumeToken(r.id, m.id, m.generation)
	}
	if len(r.members) > 1 {
		ev := w.scratchEvent()
		ev.Type, ev.PlayerId, ev.Metadata, ev.UserId = pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, m.id, m.metadata(), m.userID()
		w.queueEvent(r, ev, m)
	}
	w.roomChanged(r)
	return m
}

// removeMember takes m out of its room: drops what was still queued for it,
// clears the seat's membership, announces PLAYER_LEFT (and HOST_CHANGED when
// the host left) to the others, and destroys the room when m was the last
// member. Telling m itself is the caller's job.
func (w *worker) removeMember(m *member, reason pb.LeaveReason) {
	r := m.room
	w.dropQueued(m)
	w.dropRing(m)
	if m.away {
		m.away = false
		r.away--
		w.count.seatsAway--
	}
	m.gone = true
	i := slices.Index(r.members, m)
	r.members = slices.Delete(r.members, i, i+1)
	m.seat.member.Store(nil)
	w.count.players--
	if len(r.members) == 0 {
		w.destroyRoom(r)
		return
	}
	ev := w.scratchEvent()
	ev.Type, ev.PlayerId, ev.Reason = pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, m.id, reason
	w.queueEvent(r, ev, nil)
	if i == 0 {
		w.queueEvent(r, &pb.RoomEvent{
			Type:     pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED,
			PlayerId: r.members[0].id,
		}, nil)
	}
	w.roomChanged(r)
}

// destroyRoom forgets r (its last member is gone, or it was closed).
func (w *worker) destroyRoom(r *room) {
	r.closed = true
	if r.ls != nil {
		w.dropLog(r)
	}
	w.resetBcast(r)
	w.sched.remove(r)
	delete(w.rooms, r.id)
	w.m.roomCount.Add(-1)
	w.count.rooms--
	if h := w.m.cfg.Hooks; h != nil {
		h.RoomClosed(r.id)
	}
}

// closeRoom removes every member of r with Left{ROOM_CLOSED, reason}, after
// flushing what was already addressed to them. Connections stay open: the
// seats are idle and free to join again.
func (w *worker) closeRoom(r *room, reason string) {
	for _, m := range r.members {
		// Leaving while the Left is on its way: a Join the client sends
		// on seeing it waits (ErrSeatBusy) instead of finding the seat
		// still in the room.
		removing := m.seat.state.CompareAndSwap(stateInRoom, stateLeaving)
		w.flushLeaver(m)
		w.dropQueued(m)
		w.dropRing(m)
		if m.away {
			m.away = false
			r.away--
			w.count.seatsAway--
		}
		m.gone = true
		m.seat.member.Store(nil)
		w.count.players--
		w.sendLeft(m.seat, 0, r.id, pb.LeaveReason_LEAVE_REASON_ROOM_CLOSED, reason)
		if removing {
			m.seat.settle(stateLeaving, stateIdle)
		}
	}
	clear(r.members)
	r.members = r.members[:0]
	w.destroyRoom(r)
}

// queueEventTo queues ev for member to alone.
func (w *worker) queueEventTo(r *room, to *member, ev *pb.RoomEvent) {
	b, err := w.marshalEvent(ev)
	if err != nil {
		return
	}
	rec := w.m.records.get()
	rec.buf = wire.AppendEventRecord(rec.buf[:0], b)
	rec.enc = rec.buf
	rec.event = true
	w.enqueue(r, to, rec)
}

// scratchEvent is the worker's reused event, emptied, for the events of
// every join and leave: a burst of joins (a match starting) otherwise
// leaves an event per player for the collector. Valid until the next call.
func (w *worker) scratchEvent() *pb.RoomEvent {
	proto.Reset(&w.event)
	return &w.event
}

// marshalEvent encodes ev into the worker's scratch buffer (valid until the
// next call).
func (w *worker) marshalEvent(ev *pb.RoomEvent) ([]byte, error) {
	b, err := proto.MarshalOptions{}.MarshalAppend(w.eventBuf[:0], ev)
	w.eventBuf = b[:0]
	return b, err
}

// queueEvent encodes ev once and queues it for every member but except.
// Events are rare, so the generated code is fine here.
func (w *worker) queueEvent(r *room, ev *pb.RoomEvent, except *member) {
	b, err := w.marshalEvent(ev)
	if err != nil {
		return // cannot happen: metadata strings are checked for UTF-8 at Join
	}
	rec := w.m.records.get()
	rec.buf = wire.AppendEventRecord(rec.buf[:0], b)
	rec.enc = rec.buf
	rec.event = true
	rec.refs = 1
	for _, m := range r.members {
		if m != except {
			w.enqueue(r, m, rec)
		}
	}
	w.release(rec)
}

// setTickRate switches r to rate (0: immediate) and announces it. The new
// rate applies from the next tick: the schedule is re-based at the last
// tick.
func (w *worker) setTickRate(r *room, rate int) {
	if rate == r.rate && (rate == 0) == r.immediate {
		return
	}
	w.reschedule(r, rate)
	r.publishClock()
	w.queueEvent(r, &pb.RoomEvent{
		Type:     pb.RoomEventType_ROOM_EVENT_TYPE_TICK_RATE_CHANGED,
		TickRate: uint32(rate),
	}, nil)
}

// info summarises r for the admin API.
func (r *room) info() RoomInfo {
	return RoomInfo{
		ID:           r.id,
		Players:      len(r.members),
		MaxPlayers:   r.maxPlayers,
		TickRate:     r.rate,
		Immediate:    r.immediate,
		Lockstep:     r.ls != nil,
		Tick:         r.tickAt(r.w.now),
		CreatedAt:    r.createdAt,
		MessagesIn:   r.messagesIn,
		Deliveries:   r.deliveries,
		LastLateness: r.lastLateness,
		MaxLateness:  r.maxLateness,
		Overruns:     r.overruns,
		Metadata:     cloneMetadata(r.metadata),
	}
}

// detail describes r and its members for the admin API.
func (r *room) detail() RoomDetail {
	d := RoomDetail{RoomInfo: r.info(), Members: make([]MemberInfo, len(r.members))}
	if len(r.members) > 0 {
		d.Host = r.members[0].id
	}
	for i, m := range r.members {
		d.Members[i] = MemberInfo{
			Away:     m.away,
			PlayerID: m.id,
			UserID:   m.userID(),
			Address:  m.seat.Address(),
			JoinedAt: r.w.timeOf(m.joinedAt),
			Metadata: cloneMetadata(m.metadata()),
			Backlog:  m.backlogBytes(),
		}
	}
	return d
}
