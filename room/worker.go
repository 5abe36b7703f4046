package room

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"

	crand "crypto/rand"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// worker is one room goroutine. Everything below in is owned by the
// worker's goroutine alone; other goroutines reach it only through in, and
// read its counters through pub.
type worker struct {
	m  *Manager
	in *inbox

	// event and eventBuf are the scratch of the room events it encodes
	// (scratchEvent, marshalEvent).
	event    pb.RoomEvent
	eventBuf []byte

	rooms map[string]*room
	sched schedule
	timer Timer
	// armed: timer is set for armedFor and its fire not yet received.
	armed    bool
	armedFor time.Time
	// inboxKnowsArmed is the armed state last told to the inbox.
	inboxKnowsArmed bool
	// rng spreads room phases; not security-relevant (room codes use
	// crypto/rand).
	rng *rand.Rand
	// gridOrigin anchors the tick phase grid (see firstDeadline).
	gridOrigin time.Time
	// now is the time of the work in progress: the start of the current
	// batch, or of the current tick.
	now time.Time

	spare     []command       // the emptied slice handed back to in
	dirty     []*room         // immediate rooms to flush at the end of the batch
	waiters   []chan struct{} // closed at the end of the batch
	evictions []*member       // slow consumers found during a flush
	// perMemberRoute (tests only) routes broadcasts into every
	// recipient's pending list, without the room's broadcast log: the
	// reference the log's frames are checked against.
	perMemberRoute bool
	touched        []*room // rooms that delivered frames this round (Hooks only)
	epoch          uint64  // routing epoch, see member.mark

	joinScratch joinScratch // Joined answers are built here (sendJoined)

	count counters // plain, worker-only
	pub   published
}

// counters are a worker's statistics, written only by the worker without
// atomics (several per message would add up); publish copies them to pub.
type counters struct {
	rooms, players                      int64
	messagesIn, dropped, deliveries     uint64
	frames, frameBytes, ticks, overruns uint64
	slowConsumers, overBudget           uint64
	backlogSuperseded                   uint64
	seatsAway, replayBytes              int64
	seatsExpired, replayed, dupInputs   uint64
	lsSets, lsDelivered, lsLate         uint64
	lsReplaced, lsDesyncs, lsSnapshots  uint64
	// resumes counts Resumes by outcome: index 0 recovered, else the
	// pb.ResumeFailure.
	resumes [resumeOutcomes]uint64
}

// resumeOutcomes is recovered plus every pb.ResumeFailure.
const resumeOutcomes = 6

// published holds the counters for lock-free reads by Manager.Stats.
type published struct {
	rooms, players                      atomic.Int64
	messagesIn, dropped, deliveries     atomic.Uint64
	frames, frameBytes, ticks, overruns atomic.Uint64
	slowConsumers, overBudget           atomic.Uint64
	backlogSuperseded                   atomic.Uint64
	seatsAway, replayBytes              atomic.Int64
	seatsExpired, replayed, dupInputs   atomic.Uint64
	lsSets, lsDelivered, lsLate         atomic.Uint64
	lsReplaced, lsDesyncs, lsSnapshots  atomic.Uint64
	resumes                             [resumeOutcomes]atomic.Uint64
}

func newWorker(m *Manager, idx int) *worker {
	var seed [16]byte
	crand.Read(seed[:])
	return &worker{
		m:     m,
		in:    newInbox(m.cfg.InboxCapacity),
		rooms: make(map[string]*room),
		rng:   rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])^uint64(idx))),
		// All workers share one grid, so a room's phase does not depend on
		// which worker holds it.
		gridOrigin: m.cfg.Clock.Now().Truncate(time.Second),
	}
}

// run is the worker goroutine: wait for the inbox or the timer, then run
// the due ticks and the queued commands.
func (w *worker) run() {
	defer w.m.wg.Done()
	for {
		var timerC <-chan time.Time
		if w.armed {
			timerC = w.timer.C()
		}
		select {
		case <-w.m.done:
			if w.timer != nil {
				w.timer.Stop()
			}
			return
		case <-w.in.wake:
		case <-timerC:
			w.armed = false
		}
		w.step()
	}
}

// step is one round of the worker: the inbox first, so messages that
// arrived before a deadline make its tick, then the due ticks. Barrier
// replies (admin calls, tests' Sync) are sent last, so a barrier also sees
// every tick due at the clock's current time already run.
func (w *worker) step() {
	w.now = w.m.cfg.Clock.Now()
	w.drain()
	w.now = w.m.cfg.Clock.Now()
	w.runDue()
	w.flushDirty() // events of evictions during ticks of immediate rooms
	if len(w.touched) > 0 {
		w.framesDone()
	}
	w.publish()
	for _, ch := range w.waiters {
		close(ch)
	}
	clear(w.waiters)
	w.waiters = w.waiters[:0]
	w.arm()
}

// drain processes everything queued, then flushes the immediate rooms that
// got messages — after the whole batch, so a burst drained together still
// shares one frame per recipient.
func (w *worker) drain() {
	batch := w.in.take(w.spare)
	for i := range batch {
		w.handle(&batch[i])
	}
	clear(batch) // drop references to seats and records
	w.spare = batch[:0]
	w.flushDirty()
}

func (w *worker) handle(c *command) {
	switch c.kind {
	case cmdSend:
		c.seat.queued.Add(-1)
		w.send(c.seat, c.rec)
	case cmdInput:
		c.seat.queued.Add(-1)
		w.input(c.seat, c.rec)
	case cmdSnapshot:
		c.seat.queued.Add(-1)
		w.snapshot(c.seat, c.requestID, c.snapshot)
	case cmdTrim:
		c.seat.queued.Add(-1)
		w.trimReplay(c.seat)
	case cmdJoin:
		w.join(c.seat, c.join)
		w.m.putJoinCmd(c.join)
	case cmdLeave:
		w.leave(c.seat, c.requestID)
	case cmdDisconnect:
		w.disconnect(c.seat, true)
	case cmdForfeit:
		w.disconnect(c.seat, false)
	case cmdResume:
		w.resume(c.seat, c.resume)
	case cmdCall:
		c.fn(w)
		w.waiters = append(w.waiters, c.done)
	}
}

// publish makes the worker's counters visible to Manager.Stats.
func (w *worker) publish() {
	c, p := &w.count, &w.pub
	p.rooms.Store(c.rooms)
	p.players.Store(c.players)
	p.messagesIn.Store(c.messagesIn)
	p.dropped.Store(c.dropped)
	p.deliveries.Store(c.deliveries)
	p.frames.Store(c.frames)
	p.frameBytes.Store(c.frameBytes)
	p.ticks.Store(c.ticks)
	p.overruns.Store(c.overruns)
	p.slowConsumers.Store(c.slowConsumers)
	p.overBudget.Store(c.overBudget)
	p.backlogSuperseded.Store(c.backlogSuperseded)
	p.seatsAway.Store(c.seatsAway)
	p.replayBytes.Store(c.replayBytes)
	p.seatsExpired.Store(c.seatsExpired)
	p.replayed.Store(c.replayed)
	p.dupInputs.Store(c.dupInputs)
	p.lsSets.Store(c.lsSets)
	p.lsDelivered.Store(c.lsDelivered)
	p.lsLate.Store(c.lsLate)
	p.lsReplaced.Store(c.lsReplaced)
	p.lsDesyncs.Store(c.lsDesyncs)
	p.lsSnapshots.Store(c.lsSnapshots)
	for i := range c.resumes {
		p.resumes[i].Store(c.resumes[i])
	}
}
