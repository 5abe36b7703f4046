package room

import (
	"fmt"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Manager is the room system: its workers, their rooms and the pools they
// share. All methods are goroutine-safe, but the per-seat calls (Join, Send,
// Leave, Disconnect) for one seat must come from one goroutine at a time.
type Manager struct {
	cfg     Config
	workers []*worker
	// stampBase anchors the workers' stamps (worker.stamp).
	stampBase time.Time
	// pol is the reloadable part of cfg (tick rates and bounds, immediate
	// mode, room limits, metadata size, keep-alive): Reconfigure swaps it,
	// and every read of those fields goes through policy().
	pol atomic.Pointer[Config]

	records  recordPool
	outbound outboundPool
	// joinCmds recycles the join commands: a burst of joins (a match
	// starting, a node's players coming back) otherwise leaves one behind
	// per player for the collector, in an idle relay's heap until the next
	// collection.
	joinCmds sync.Pool

	// roomCount is the number of live rooms, shared by the workers for the
	// MaxRooms check; it changes only when a room is created or destroyed.
	roomCount atomic.Int64
	// nextWorker spreads rooms with server-made codes round robin.
	nextWorker atomic.Uint32
	draining   atomic.Bool
	quiesced   atomic.Bool // FlushAll ran: Send is refused
	// seatOverShare counts Sends refused because their seat had its fair
	// share of the inbox queued.
	seatOverShare atomic.Uint64
	closed        atomic.Bool

	// maxRecord is the largest encoded Delivery that still fits in one
	// frame; Send refuses bigger payloads with ErrMessageTooLarge.
	maxRecord int

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New validates cfg (errors wrap ErrInvalidArgument and name the field),
// applies its defaults and starts the workers.
func New(cfg Config) (*Manager, error) {
	m, err := newManager(cfg)
	if err != nil {
		return nil, err
	}
	m.start()
	return m, nil
}

// newManager builds a Manager without starting its workers (benchmarks
// drive a worker on their own goroutine).
func newManager(cfg Config) (*Manager, error) {
	c, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: c, stampBase: time.Now(), done: make(chan struct{})}
	m.pol.Store(&c)
	m.outbound.headroom = c.Headroom
	// Worst case frame overhead: tag, 5-byte length, tag and 10-byte
	// tick, tag and 10-byte seq.
	m.maxRecord = c.MaxFrameBytes - 28
	m.workers = make([]*worker, c.Workers)
	for i := range m.workers {
		m.workers[i] = newWorker(m, i)
	}
	return m, nil
}

func (m *Manager) start() {
	m.wg.Add(len(m.workers))
	for _, w := range m.workers {
		go w.run()
	}
}

// Close stops the workers and waits for them to exit; afterwards no Peer is
// called again and every method returns ErrClosed (Disconnect and
// SetDraining do nothing). Members get no message: Close is the last step
// of a shutdown, after draining and closing rooms. Idempotent.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		for _, w := range m.workers {
			w.in.close()
		}
		close(m.done)
		m.wg.Wait()
	})
}

// NewSeat returns a seat for a new connection, delivering to p.
func (m *Manager) NewSeat(p Peer) *Seat {
	if p == nil {
		p = discardPeer{}
	}
	return &Seat{peer: p}
}

// joinCmd is a validated Join, with its metadata maps copied so the room
// keeps no reference to the caller's request.
type joinCmd struct {
	requestID       uint32
	roomID          string
	createIfMissing bool
	maxPlayers      int
	tickRate        int
	immediate       bool
	roomMetadata    map[string]string
	playerMetadata  map[string]string
	// From the Grant (auth on): whether this join may create the room, the
	// bounds of a room it creates, and the player's user id.
	authed        bool
	mayCreate     bool
	grantTickRate int
	grantPlayers  int
	userID        string
	seatGrace     time.Duration // asked for by the creator; 0: the default
	// A LOCKSTEP room's options (used when the join creates it).
	lockstep    bool
	lsTolerance time.Duration
	lsRepeat    bool
}

// Join asks for s to join (or create) a room. Errors found without room
// state (invalid arguments, draining, already in a room) are returned here,
// and ErrSeatBusy while an earlier Join or Leave of the seat is unanswered;
// everything else is answered asynchronously to the seat's peer with Joined
// or Error (ROOM_FULL, ROOM_NOT_FOUND, ROOM_LIMIT_REACHED). req is not
// referenced after Join returns.
func (m *Manager) Join(s *Seat, req JoinRequest) error {
	if s == nil {
		return fmt.Errorf("%w: nil seat", ErrInvalidArgument)
	}
	if m.closed.Load() || s.dead.Load() {
		return ErrClosed
	}
	if !s.state.CompareAndSwap(stateIdle, stateJoining) {
		if s.state.Load() == stateInRoom {
			return ErrAlreadyInRoom
		}
		return ErrSeatBusy
	}
	j, err := m.prepareJoin(req)
	if err != nil {
		s.state.Store(stateIdle)
		return err
	}
	if j.roomID == "" {
		s.worker = m.workers[m.nextWorker.Add(1)%uint32(len(m.workers))]
	} else {
		s.worker = m.workerFor(j.roomID)
	}
	if !s.worker.in.pushControl(command{kind: cmdJoin, seat: s, requestID: j.requestID, join: j}) {
		s.state.Store(stateIdle)
		return ErrClosed
	}
	return nil
}

// prepareJoin validates what needs no room state and copies the request.
func (m *Manager) prepareJoin(req JoinRequest) (*joinCmd, error) {
	j := req.Join
	if j == nil {
		return nil, fmt.Errorf("%w: join request without a Join", ErrInvalidArgument)
	}
	id := j.GetRoomId()
	if id != "" && !validRoomID(id) {
		return nil, fmt.Errorf("%w: room id must be 1-%d bytes of [A-Za-z0-9_.:-]", ErrInvalidArgument, maxRoomIDLen)
	}
	opts := j.GetOptions()
	if rate := int64(opts.GetTickRate()); rate != 0 && (rate < int64(m.policy().MinTickRate) || rate > int64(m.policy().MaxTickRate)) {
		return nil, fmt.Errorf("%w: tick rate %d outside %d..%d", ErrInvalidArgument, rate, m.policy().MinTickRate, m.policy().MaxTickRate)
	}
	if opts.GetImmediate() && !m.policy().AllowImmediate {
		return nil, fmt.Errorf("%w: immediate rooms are not allowed", ErrInvalidArgument)
	}
	if mp := int64(opts.GetMaxPlayers()); mp > int64(m.policy().MaxPlayersPerRoom) {
		return nil, fmt.Errorf("%w: max players %d above %d", ErrInvalidArgument, mp, m.policy().MaxPlayersPerRoom)
	}
	if err := m.checkMetadata("player", j.GetPlayerMetadata()); err != nil {
		return nil, err
	}
	if err := m.checkMetadata("room", opts.GetMetadata()); err != nil {
		return nil, err
	}
	lockstep := opts.GetMode() == pb.RoomMode_ROOM_MODE_LOCKSTEP
	var tolerance time.Duration
	if lockstep {
		switch {
		case opts.GetImmediate():
			return nil, fmt.Errorf("%w: a LOCKSTEP room cannot be immediate", ErrInvalidArgument)
		case m.cfg.Hooks != nil:
			// Its input log, open inputs and snapshot are not part of the
			// room records a cluster moves between nodes.
			return nil, fmt.Errorf("%w: LOCKSTEP rooms are not available on a cluster node", ErrInvalidArgument)
		}
		tolerance = m.policy().LockstepTolerance
		if ms := opts.GetLockstep().GetToleranceMs(); ms != 0 {
			tolerance = time.Duration(ms) * time.Millisecond
			if tolerance > m.policy().LockstepMaxTolerance {
				return nil, fmt.Errorf("%w: lockstep tolerance %v above %v", ErrInvalidArgument, tolerance, m.policy().LockstepMaxTolerance)
			}
		}
	}
	if m.draining.Load() {
		return nil, ErrDraining
	}
	rate := int(opts.GetTickRate())
	if rate == 0 && !opts.GetImmediate() {
		rate = m.policy().presetRate(opts.GetMetadata())
	}
	cmd, _ := m.joinCmds.Get().(*joinCmd)
	if cmd == nil {
		cmd = new(joinCmd)
	}
	*cmd = joinCmd{
		seatGrace:       time.Duration(opts.GetSeatGraceMs()) * time.Millisecond,
		requestID:       req.RequestID,
		roomID:          id,
		createIfMissing: j.GetCreateIfMissing(),
		maxPlayers:      int(opts.GetMaxPlayers()),
		tickRate:        rate,
		immediate:       opts.GetImmediate(),
		roomMetadata:    cloneMetadata(opts.GetMetadata()),
		playerMetadata:  cloneMetadata(j.GetPlayerMetadata()),
		lockstep:        lockstep,
		lsTolerance:     tolerance,
		lsRepeat:        opts.GetLockstep().GetRepeatLastInput(),
	}
	if g := req.Grant; g != nil {
		if err := applyGrant(cmd, g, m.policy()); err != nil {
			m.putJoinCmd(cmd)
			return nil, err
		}
	}
	return cmd, nil
}

// putJoinCmd recycles j once its join has been processed; nothing may hold
// it after (the room copies what it keeps).
func (m *Manager) putJoinCmd(j *joinCmd) {
	*j = joinCmd{}
	m.joinCmds.Put(j)
}

// applyGrant checks what can be checked of a join against its Grant before
// the room is looked up (whether the token admits the room id, and the
// options the client asked for explicitly), and records the rest for the
// worker, which knows whether the join creates the room.
func applyGrant(j *joinCmd, g *Grant, pol *Config) error {
	j.authed, j.mayCreate, j.userID = true, g.Create, g.UserID
	j.grantTickRate, j.grantPlayers = g.MaxTickRate, g.MaxPlayers
	switch {
	case j.roomID == "" && !g.AnyRoom:
		return &AuthError{ReasonRoomNotAllowed, "the token names its rooms: it cannot create one with a server-made code"}
	case j.roomID == "" && !g.Create:
		return &AuthError{ReasonCreateNotAllowed, "the token does not allow creating rooms"}
	case j.roomID != "" && g.AllowsRoom != nil && !g.AllowsRoom(j.roomID):
		return &AuthError{ReasonRoomNotAllowed, "the token does not admit room " + j.roomID}
	}
	if g.MaxTickRate > 0 && j.tickRate > g.MaxTickRate {
		return &AuthError{ReasonOptionNotAllowed, fmt.Sprintf("tick rate %d above the token's %d", j.tickRate, g.MaxTickRate)}
	}
	if g.MaxPlayers > 0 && j.maxPlayers > g.MaxPlayers {
		return &AuthError{ReasonOptionNotAllowed, fmt.Sprintf("max players %d above the token's %d", j.maxPlayers, g.MaxPlayers)}
	}
	if len(g.Metadata) > 0 {
		if j.playerMetadata == nil {
			j.playerMetadata = make(map[string]string, len(g.Metadata))
		}
		maps.Copy(j.playerMetadata, g.Metadata) // the backend's keys win
		if n := metadataSize(j.playerMetadata); n > pol.MaxMetadataBytes {
			return fmt.Errorf("%w: player metadata of %d bytes above %d with the token's", ErrInvalidArgument, n, pol.MaxMetadataBytes)
		}
	}
	return nil
}

func metadataSize(md map[string]string) int {
	n := 0
	for k, v := range md {
		n += len(k) + len(v)
	}
	return n
}

// checkMetadata bounds the size of a metadata map and checks its strings are
// UTF-8 (proto3 strings must be, or the Joined carrying them would not
// marshal).
func (m *Manager) checkMetadata(what string, md map[string]string) error {
	n := 0
	for k, v := range md {
		n += len(k) + len(v)
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: %s metadata is not valid UTF-8", ErrInvalidArgument, what)
		}
	}
	if n > m.policy().MaxMetadataBytes {
		return fmt.Errorf("%w: %s metadata of %d bytes above %d", ErrInvalidArgument, what, n, m.policy().MaxMetadataBytes)
	}
	return nil
}

func cloneMetadata(md map[string]string) map[string]string {
	if len(md) == 0 {
		return nil
	}
	return maps.Clone(md)
}

// Send relays msg from s to members of its room. It copies msg: the payload
// and targets are borrowed and may be reused by the caller once Send
// returns. Success is not acknowledged; a Send that reaches the worker after
// the seat's join failed is answered with Error NOT_IN_ROOM. ErrOverloaded
// when the worker's inbox is full (the message is dropped and counted).
func (m *Manager) Send(s *Seat, requestID uint32, msg *wire.SendView) error {
	return m.send(s, requestID, msg, false)
}

// SendHeldBack is Send for a message the transport held back unread while
// the seat's peer was congested (or a request of its was parked): the
// client sent it at its own pace, and it reaches the room together with
// everything else sent meanwhile. Such messages may use a second tick of
// their sender's budget (Config.SenderTickMessages, SenderTickBytes), so
// that a client on a slow downlink is not refused for what the relay kept
// waiting.
func (m *Manager) SendHeldBack(s *Seat, requestID uint32, msg *wire.SendView) error {
	return m.send(s, requestID, msg, true)
}

func (m *Manager) send(s *Seat, requestID uint32, msg *wire.SendView, heldBack bool) error {
	if s == nil || msg == nil {
		return fmt.Errorf("%w: nil seat or message", ErrInvalidArgument)
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
	if wire.DeliverySize(math.MaxUint32, msg.Kind, len(msg.Payload)) > m.maxRecord {
		return ErrMessageTooLarge
	}
	if len(msg.Targets) > wire.MaxTargets {
		return fmt.Errorf("%w: more than %d targets", ErrInvalidArgument, wire.MaxTargets)
	}
	// Each seat's fair share of its worker's inbox: one connection cannot
	// fill it for everyone on the worker.
	queued := s.queued.Add(1)
	if queued > int32(m.cfg.InboxPerSeat) {
		s.queued.Add(-1)
		m.seatOverShare.Add(1)
		return ErrOverloaded
	}
	// A message for a ticked room on its worker's schedule waits for the
	// tick (inbox.pushData); a seat with many queued wakes the worker, so
	// that a burst meets its tick budget rather than its inbox share.
	untilTick := false
	if mem := s.member.Load(); mem != nil && queued <= untilTickQueue {
		untilTick = mem.room.ticking.Load()
	}
	rec := m.records.get()
	rec.fill(&m.records, requestID, msg)
	rec.heldBack = heldBack
	if err := s.worker.in.pushData(command{kind: cmdSend, seat: s, rec: rec}, untilTick); err != nil {
		s.queued.Add(-1)
		m.records.put(rec)
		return err
	}
	return nil
}

// untilTickQueue is how many of a seat's Sends may wait for their tick in
// the inbox before one wakes the worker.
const untilTickQueue = 32

// TrimReplay asks s's room to let go now of the frames its client has
// acknowledged (Seat.Ack), rather than when it next builds a frame for the
// seat. Call it for an acknowledgement that came alone (an idle client's):
// in a room with nothing going on, which builds no frames, the frames kept
// for the seat's resume are otherwise held until something happens. A
// hint, queued like a Send within the seat's share of the worker's inbox,
// and skipped when that share is used up.
func (m *Manager) TrimReplay(s *Seat) {
	if s == nil || s.dead.Load() || s.state.Load() != stateInRoom || m.quiesced.Load() {
		return
	}
	if s.queued.Add(1) > int32(m.cfg.InboxPerSeat) {
		s.queued.Add(-1)
		return
	}
	if err := s.worker.in.pushData(command{kind: cmdTrim, seat: s}, false); err != nil {
		s.queued.Add(-1)
	}
}

// Leave asks for s to leave its room (or the room it is joining). Answered
// asynchronously with Left{LEFT}. ErrNotInRoom when the seat is in no room
// or already leaving.
func (m *Manager) Leave(s *Seat, requestID uint32) error {
	if s == nil {
		return fmt.Errorf("%w: nil seat", ErrInvalidArgument)
	}
	if s.dead.Load() || m.closed.Load() {
		return ErrClosed
	}
	for {
		st := s.state.Load()
		if st != stateJoining && st != stateInRoom {
			return ErrNotInRoom
		}
		// CAS: a worker may concurrently move inRoom→idle (kick).
		if s.state.CompareAndSwap(st, stateLeaving) {
			break
		}
	}
	if !s.worker.in.pushControl(command{kind: cmdLeave, seat: s, requestID: requestID}) {
		return ErrClosed
	}
	return nil
}

// Disconnect tells the room system that the seat's connection is gone. The
// member is removed (PLAYER_LEFT with reason DISCONNECTED to the others);
// nothing is delivered to the seat's peer once Disconnect has returned,
// anything addressed to it is dropped, and the seat cannot join again.
// Never blocks, never fails; idempotent.
func (m *Manager) Disconnect(s *Seat) { m.disconnect(s, cmdDisconnect) }

// Forfeit is Disconnect for a connection the relay closed for the
// client's own doing (closes.Info.KeepsSeat false): the member leaves at
// once, whatever the room's seat grace.
func (m *Manager) Forfeit(s *Seat) { m.disconnect(s, cmdForfeit) }

func (m *Manager) disconnect(s *Seat, kind cmdKind) {
	if s == nil || s.dead.Swap(true) {
		return
	}
	switch s.state.Load() {
	case stateJoining, stateInRoom, stateLeaving:
		// A control command is never refused (except after Close, when
		// there is nothing left to clean up).
		s.worker.in.pushControl(command{kind: kind, seat: s})
	}
}

// SetDraining turns draining on or off. While on, Join fails with
// ErrDraining; members already in rooms are not affected.
func (m *Manager) SetDraining(on bool) { m.draining.Store(on) }

// Stats returns counters summed over all workers. Lock-free: each worker
// publishes its own counters after every batch and tick, so the sum may lag
// the workers by one batch.
func (m *Manager) Stats() Stats {
	var s Stats
	for _, w := range m.workers {
		p := &w.pub
		s.Rooms += int(p.rooms.Load())
		s.Players += int(p.players.Load())
		s.MessagesIn += p.messagesIn.Load()
		s.Superseded += p.dropped.Load()
		s.InboxFull += w.in.dropped.Load()
		s.Deliveries += p.deliveries.Load()
		s.Frames += p.frames.Load()
		s.FrameBytes += p.frameBytes.Load()
		s.Ticks += p.ticks.Load()
		s.TickOverruns += p.overruns.Load()
		s.SlowConsumers += p.slowConsumers.Load()
		s.OverBudget += p.overBudget.Load()
		s.BacklogSuperseded += p.backlogSuperseded.Load()
		s.SeatsAway += int(p.seatsAway.Load())
		s.ReplayBytes += p.replayBytes.Load()
		s.SeatsExpired += p.seatsExpired.Load()
		s.ReplayedFrames += p.replayed.Load()
		s.DuplicateInputs += p.dupInputs.Load()
		s.LockstepInputSets += p.lsSets.Load()
		s.LockstepInputSetsDelivered += p.lsDelivered.Load()
		s.LockstepLateInputs += p.lsLate.Load()
		s.LockstepReplacedInputs += p.lsReplaced.Load()
		s.LockstepDesyncs += p.lsDesyncs.Load()
		s.LockstepSnapshots += p.lsSnapshots.Load()
		for i := range p.resumes {
			if n := p.resumes[i].Load(); n > 0 {
				if s.Resumes == nil {
					s.Resumes = map[string]uint64{}
				}
				s.Resumes[resumeOutcomeName(i)] += n
			}
		}
	}
	s.OverInboxShare = m.seatOverShare.Load()
	s.MessagesDropped = s.InboxFull + s.OverInboxShare + s.OverBudget + s.Superseded
	return s
}

// workerFor is the worker owning room id.
func (m *Manager) workerFor(id string) *worker {
	return m.workers[roomHash(id)%uint32(len(m.workers))]
}
