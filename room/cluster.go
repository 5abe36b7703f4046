package room

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Hooks connect the room system to a layer that places rooms on the nodes
// of a cluster (package cluster). Config.Hooks nil means a single node.
// Every method is called on a worker goroutine: it must be quick, must not
// block and must not call the Manager's admin functions (they would wait
// for the calling worker).
type Hooks interface {
	// MayCreate reports whether this node may create room id: in a
	// cluster, only the node holding the room's lease. A Join that would
	// create a room it may not is refused with ROOM_NOT_FOUND.
	MayCreate(id string) bool
	// RoomChanged reports a room after a change to its membership (a
	// member joined, left, went away, came back or resumed with a new
	// token), so that a standby owner can rebuild it. rec is the callee's.
	RoomChanged(rec *RoomRecord)
	// RoomClosed reports that room id is gone: its last member left, an
	// operator closed it, or it was exported or abandoned.
	RoomClosed(id string)
	// FramesDone reports that room id delivered frames during the
	// worker's current round, and that all of them (and the InputsTaken
	// that go with them) have been handed to their peers: a transport that
	// batches per room sends the batch now, whole.
	FramesDone(id string)
}

// InputAcker is an optional interface of a Peer. InputsTaken(seq) tells the
// peer that every Send of its seat up to Send.seq seq was routed, and that
// the frames carrying them to the room's members were delivered (to their
// peers) before this call. A cluster edge keeps its clients' inputs until
// then, to hand them to a new owner after a failover. Called on the
// worker, at most once per tick and member.
type InputAcker interface {
	InputsTaken(seq uint64)
}

// EvictMoved is the eviction of a seat whose room left this node (handed
// to another owner, or abandoned after the node lost its lease): the
// client should resume, and will find the room elsewhere.
const EvictMoved EvictCause = 100

// RoomRecord describes a room and its members: what a new owner needs to
// go on with it. Produced by Hooks.RoomChanged (membership only: Tick and
// the members' Seq, InputSeq and Ring are zero) and by Manager.Export
// (everything); consumed by Manager.Restore.
type RoomRecord struct {
	ID           string
	CreatedAt    time.Time
	MaxPlayers   int
	TickRate     int // 0 for an immediate room
	Immediate    bool
	Metadata     map[string]string
	SeatGrace    time.Duration
	LastPlayerID uint32 // player ids are never reused
	// Tick is the room's current tick; a restore goes on after it.
	Tick    uint64
	Members []MemberRecord // in join order: the first is the host
}

// MemberRecord is one member of a RoomRecord.
type MemberRecord struct {
	PlayerID uint32
	UserID   string
	Metadata map[string]string
	JoinedAt time.Time
	Away     bool
	// The resume token's hash and generation (and the previous token's,
	// while the client may not have read the latest); Resumable is false
	// when the room keeps no seats.
	Resumable      bool
	TokenHash      [32]byte
	Generation     uint32
	PrevHash       [32]byte
	PrevGeneration uint32
	PrevValid      bool
	ResumeSeq      uint64
	// Seq is the last Frame.seq sent to the member and InputSeq the
	// highest Send.seq taken from it.
	Seq, InputSeq uint64
	// Ring holds the frames kept for the member's replay, oldest first:
	// Ring[i] is the encoded ServerMessage of Frame.seq RingFirst+i.
	Ring      [][]byte
	RingFirst uint64
}

// Idle reports whether the seat is in no room and not joining or leaving
// one. Goroutine-safe.
func (s *Seat) Idle() bool { return s.state.Load() == stateIdle && s.member.Load() == nil }

// Address is the client's address (Peer.Address).
func (s *Seat) Address() netip.Addr { return s.peer.Address() }

// PlayerID is the seat's player id in its room, 0 when in none.
// Goroutine-safe.
func (s *Seat) PlayerID() uint32 {
	if m := s.member.Load(); m != nil {
		return m.id
	}
	return 0
}

// Peer returns the peer the seat delivers to.
func (s *Seat) Peer() Peer { return s.peer }

// NewRoomCode makes a fresh server-made room code (Config.CodeLength
// characters of the code alphabet, from crypto/rand). Unlike the codes Join
// makes for an empty room id, it is not checked against this node's rooms:
// a cluster checks it with the room's lease. Goroutine-safe.
func (m *Manager) NewRoomCode() (string, error) { return randomCode(m.cfg.CodeLength) }

// Outbound copies b, an encoded ServerMessage, into a pooled Outbound with
// the Manager's headroom, for a transport that relays messages built
// elsewhere (a cluster edge). Goroutine-safe.
func (m *Manager) Outbound(b []byte) *Outbound {
	o := m.outbound.get(len(b))
	o.buf = append(o.buf, b...)
	return o
}

// record describes r for Hooks.RoomChanged, or for an export when full.
func (r *room) record(full bool) *RoomRecord {
	rec := &RoomRecord{
		ID:           r.id,
		CreatedAt:    r.createdAt,
		MaxPlayers:   r.maxPlayers,
		TickRate:     r.rate,
		Immediate:    r.immediate,
		Metadata:     maps.Clone(r.metadata),
		SeatGrace:    r.grace,
		LastPlayerID: r.lastID,
		Members:      make([]MemberRecord, len(r.members)),
	}
	for i, m := range r.members {
		mr := MemberRecord{
			PlayerID:   m.id,
			UserID:     m.userID(),
			Metadata:   maps.Clone(m.metadata()),
			JoinedAt:   r.w.timeOf(m.joinedAt),
			Away:       m.away,
			Resumable:  m.resumable,
			TokenHash:  m.tokenHash,
			Generation: m.generation,
		}
		if m.prev != nil {
			mr.PrevHash, mr.PrevGeneration, mr.PrevValid, mr.ResumeSeq = m.prev.hash, m.prev.generation, true, m.prev.resumeSeq
		}
		if full {
			mr.Seq, mr.InputSeq = m.seq, m.inputSeq
			mr.RingFirst = m.ring.first
			for i := range m.ring.len() {
				mr.Ring = append(mr.Ring, append([]byte(nil), m.ring.at(i).Bytes()...))
			}
		}
		rec.Members[i] = mr
	}
	if full {
		rec.Tick = r.tick
	}
	return rec
}

// roomChanged tells the hooks about r's membership.
func (w *worker) roomChanged(r *room) {
	if h := w.m.cfg.Hooks; h != nil && !r.closed {
		h.RoomChanged(r.record(false))
	}
}

// framesDelivered notes that r delivered frames in this round.
func (w *worker) framesDelivered(r *room) {
	if w.m.cfg.Hooks == nil || r.touched {
		return
	}
	r.touched = true
	w.touched = append(w.touched, r)
}

// framesDone reports the rooms that delivered frames in this round.
func (w *worker) framesDone() {
	for _, r := range w.touched {
		r.touched = false
		w.m.cfg.Hooks.FramesDone(r.id)
	}
	clear(w.touched)
	w.touched = w.touched[:0]
}

// ackInputs tells m's peer, when it wants to know, which of its inputs the
// room has taken, once the frames carrying them are delivered.
func (w *worker) ackInputs(m *member) {
	if m.inputSeq == m.inputSeqAcked {
		return
	}
	m.inputSeqAcked = m.inputSeq
	if a, ok := m.seat.peer.(InputAcker); ok && !m.detached() {
		a.InputsTaken(m.inputSeq)
	}
}

// Export takes room id off this node and returns all of its state, after
// running one last tick so that everything routed is in the frames it
// returns: the members' frame and input sequences and replay rings go with
// it, so that Restore on another node goes on exactly where it stopped. The
// seats for which keep returns true are detached silently (their transport
// moves them to the new owner); the others are evicted with EvictMoved.
func (m *Manager) Export(ctx context.Context, id string, keep func(*Seat) bool) (*RoomRecord, error) {
	if !validRoomID(id) {
		return nil, fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	var rec *RoomRecord
	var result error
	err := m.call(ctx, m.workerFor(id), func(w *worker) {
		r := w.rooms[id]
		if r == nil {
			result = fmt.Errorf("%w: %q", ErrRoomNotFound, id)
			return
		}
		if r.ls != nil {
			// Never created on a cluster node (see prepareJoin): its log,
			// open inputs and snapshot are not in a RoomRecord.
			result = fmt.Errorf("%w: LOCKSTEP room %q does not move between nodes", ErrInvalidArgument, id)
			return
		}
		if r.asleep {
			w.wake(r)
		}
		r.tick++
		w.flushRoom(r, r.tick, false)
		rec = r.record(true)
		w.takeOff(r, keep)
	})
	if err != nil {
		return nil, err
	}
	return rec, result
}

// Abandon drops room id without a word to its members' clients beyond an
// EvictMoved for each seat: the node lost the room's lease and must stop
// serving it at once (another node may be its owner already).
func (m *Manager) Abandon(ctx context.Context, id string) error {
	if !validRoomID(id) {
		return fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	var result error
	err := m.call(ctx, m.workerFor(id), func(w *worker) {
		r := w.rooms[id]
		if r == nil {
			result = fmt.Errorf("%w: %q", ErrRoomNotFound, id)
			return
		}
		w.takeOff(r, nil)
	})
	if err != nil {
		return err
	}
	return result
}

// takeOff removes r and its members from this worker without Left or
// events; seats that keep does not keep are evicted with EvictMoved.
func (w *worker) takeOff(r *room, keep func(*Seat) bool) {
	for _, m := range r.members {
		w.dropQueued(m)
		w.dropRing(m)
		if m.away {
			r.away--
			w.count.seatsAway--
		}
		m.gone = true
		w.count.players--
		s := m.seat
		kept := keep != nil && keep(s) // before the seat forgets its member
		s.member.Store(nil)
		s.state.Store(stateIdle)
		if !kept {
			w.evict(s, EvictMoved, "the room moved to another node: resume there")
		}
	}
	clear(r.members)
	r.members = r.members[:0]
	w.destroyRoom(r)
}

// Restore creates room rec.ID on this node from rec (an Export, or a record
// rebuilt after its owner died) and goes on with it at the tick after
// rec.Tick. seats attaches members to connections: the member with a seat
// in it gets its frames there from the next one on (Frame.seq after
// rec's Seq), without a Joined; a member without one is away, for its grace
// (the others see PLAYER_AWAY unless it was away already). Seats must be
// new (never joined). ErrInvalidArgument when the room exists here
// already or rec is unusable.
func (m *Manager) Restore(ctx context.Context, rec *RoomRecord, seats map[uint32]*Seat) error {
	if rec == nil || !validRoomID(rec.ID) || len(rec.Members) == 0 {
		return fmt.Errorf("%w: an empty or unnamed room record", ErrInvalidArgument)
	}
	for id, s := range seats {
		if s == nil || !s.state.CompareAndSwap(stateIdle, stateJoining) {
			return fmt.Errorf("%w: the seat for player %d is in use", ErrInvalidArgument, id)
		}
	}
	w := m.workerFor(rec.ID)
	var result error
	err := m.call(ctx, w, func(w *worker) { result = w.restore(rec, seats) })
	if err != nil {
		return err
	}
	return result
}

func (w *worker) restore(rec *RoomRecord, seats map[uint32]*Seat) error {
	fail := func(err error) error {
		for _, s := range seats {
			s.state.Store(stateIdle)
		}
		return err
	}
	if w.rooms[rec.ID] != nil {
		return fail(fmt.Errorf("%w: room %q exists on this node", ErrInvalidArgument, rec.ID))
	}
	if n := w.m.roomCount.Add(1); n > int64(w.m.policy().MaxRooms) {
		w.m.roomCount.Add(-1)
		return fail(fmt.Errorf("%w: %d rooms", ErrRoomLimit, w.m.policy().MaxRooms))
	}
	r := &room{
		id:         rec.ID,
		w:          w,
		createdAt:  rec.CreatedAt,
		maxPlayers: rec.MaxPlayers,
		metadata:   maps.Clone(rec.Metadata),
		immediate:  rec.Immediate,
		heapIdx:    -1,
		rate:       rec.TickRate,
		lastID:     rec.LastPlayerID,
		tick:       rec.Tick,
		grace:      max(rec.SeatGrace, 0),
	}
	if r.maxPlayers <= 0 {
		r.maxPlayers = w.m.policy().DefaultMaxPlayers
	}
	if !r.immediate && r.rate <= 0 {
		r.rate = w.m.policy().DefaultTickRate
	}
	w.rooms[r.id] = r
	w.count.rooms++
	w.scheduleNew(r)
	var nowAway []*member
	for i := range rec.Members {
		mr := &rec.Members[i]
		m := &member{
			id:            mr.PlayerID,
			room:          r,
			joinedAt:      w.stamp(mr.JoinedAt),
			lastSent:      w.stamp(w.now),
			ident:         newMemberIdent(maps.Clone(mr.Metadata), mr.UserID),
			seq:           mr.Seq,
			inputSeq:      mr.InputSeq,
			inputSeqAcked: mr.InputSeq,
			resumable:     mr.Resumable,
			tokenHash:     mr.TokenHash,
			generation:    mr.Generation,
		}
		if mr.PrevValid {
			m.prev = &prevToken{hash: mr.PrevHash, generation: mr.PrevGeneration, resumeSeq: mr.ResumeSeq}
		}
		r.lastID = max(r.lastID, m.id)
		for j, b := range mr.Ring {
			if uint64(j)+mr.RingFirst > mr.Seq {
				break
			}
			o := w.m.Outbound(b)
			w.ringBytes(r, m.ring.push(mr.RingFirst+uint64(j), o))
			o.Release() // the ring holds it
		}
		if s := seats[m.id]; s != nil {
			m.seat = s
			s.worker = w
			s.member.Store(m)
			s.state.Store(stateInRoom)
		} else {
			// Nobody carries the seat: away, as if its connection just
			// dropped (a dead seat stands in for the connection).
			m.seat = &Seat{peer: discardPeer{}}
			m.seat.dead.Store(true)
			m.away = true
			m.awayUntil = w.stamp(w.now.Add(r.grace))
			r.away++
			w.count.seatsAway++
			if !mr.Away {
				nowAway = append(nowAway, m)
			}
		}
		r.members = append(r.members, m)
		w.count.players++
	}
	// A record lists the members in the room's order, by id; member(id)
	// needs that order, so make sure of it.
	slices.SortFunc(r.members, func(a, b *member) int { return cmp.Compare(a.id, b.id) })
	if r.grace == 0 {
		// No seats are kept in this room: who is not carried over is gone.
		for _, m := range slices.Clone(r.members) {
			if m.away {
				w.removeMember(m, pb.LeaveReason_LEAVE_REASON_SEAT_EXPIRED)
			}
		}
		if r.closed {
			return nil
		}
	} else {
		for _, m := range nowAway {
			w.queueEvent(r, &pb.RoomEvent{Type: pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, PlayerId: m.id}, m)
		}
	}
	r.publishClock()
	w.roomChanged(r)
	return nil
}

// Busy reports whether the seat is joining or leaving a room (a Join or
// Resume now would be refused with ErrSeatBusy). Goroutine-safe.
func (s *Seat) Busy() bool {
	st := s.state.Load()
	return st == stateJoining || st == stateLeaving
}
