package room

import (
	"errors"
	"time"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Sync waits until every worker has run the ticks due at its clock's current
// time and processed and flushed everything queued before the call. Tests
// use it instead of sleeping: send, Sync, advance the fake clock, Sync.
func (m *Manager) Sync() error {
	dones := make([]chan struct{}, len(m.workers))
	for i, w := range m.workers {
		dones[i] = make(chan struct{})
		if !w.in.pushControl(command{kind: cmdCall, fn: func(*worker) {}, done: dones[i]}) {
			return ErrClosed
		}
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for _, d := range dones {
		select {
		case <-d:
		case <-m.done:
			return ErrClosed
		case <-timeout.C:
			return errors.New("room: Sync timed out: a worker is stuck")
		}
	}
	return nil
}

// NewManual returns a Manager whose workers do not run on their own: Step
// runs one round of each on the caller's goroutine. For tests that need to
// control exactly what one inbox batch holds. Do not use Sync with it.
func NewManual(cfg Config) (*Manager, error) { return newManager(cfg) }

// Step runs one round (due ticks, then the inbox) of every worker. Manual
// Managers only.
func (m *Manager) Step() {
	for _, w := range m.workers {
		w.step()
	}
}

// WorkerOf returns the index of the worker that owns room id.
func (m *Manager) WorkerOf(id string) int {
	return int(roomHash(id) % uint32(len(m.workers)))
}

// TickBench builds the ticks of one room on the caller's goroutine: every
// member sends one message to every other member, then the tick runs. It
// exercises the real path (Send with its copy into a pooled record, the
// inbox, routing, frame building, Deliver) without goroutine handoffs, so
// benchmarks and allocation tests measure the room logic alone.
type TickBench struct {
	m     *Manager
	w     *worker
	r     *room
	seats []*Seat
	msg   wire.SendView
	// lockstep: a LOCKSTEP room (NewLockstepBench); Step sends inputs.
	lockstep bool
}

type benchClock struct{ t time.Time }

func (c benchClock) Now() time.Time               { return c.t }
func (c benchClock) NewTimer(time.Duration) Timer { return benchTimer{} }

type benchTimer struct{}

func (benchTimer) C() <-chan time.Time { return nil }
func (benchTimer) Reset(time.Duration) {}
func (benchTimer) Stop()               {}

// NewTickBench returns a room of players members, all delivering to peer,
// each sending payload bytes per tick.
func NewTickBench(players, payload int, peer Peer) (*TickBench, error) {
	m, err := newManager(Config{
		Workers:           1,
		Clock:             benchClock{time.Unix(1_700_000_000, 0)},
		DefaultMaxPlayers: players,
		MaxPlayersPerRoom: players,
	})
	if err != nil {
		return nil, err
	}
	b := &TickBench{m: m, w: m.workers[0], msg: wire.SendView{Payload: make([]byte, payload), Kind: 1}}
	for range players {
		s := m.NewSeat(peer)
		if err := m.Join(s, JoinRequest{Join: &pb.Join{RoomId: "bench", CreateIfMissing: true}}); err != nil {
			return nil, err
		}
		b.seats = append(b.seats, s)
	}
	b.w.step()
	b.r = b.w.rooms["bench"]
	if b.r == nil || len(b.r.members) != players {
		return nil, errors.New("room: bench room not set up")
	}
	// Warm up: grow pending lists, fill the record and buffer pools.
	for range 3 {
		b.Step()
	}
	return b, nil
}

// Step sends one message from every member and runs one tick.
func (b *TickBench) Step() {
	if b.lockstep {
		b.lockstepStep()
		return
	}
	for _, s := range b.seats {
		_ = b.m.Send(s, 0, &b.msg)
	}
	b.w.drain()
	b.r.tick++
	b.w.runTick(b.r, b.r.tick)
}

// DeliveriesPerStep is the number of messages one Step delivers.
func (b *TickBench) DeliveriesPerStep() int { return len(b.seats) * (len(b.seats) - 1) }

// NewLockstepBench returns a LOCKSTEP room of players members, all
// delivering to peer; Step sends one input of payload bytes from each for
// the next tick and closes it.
func NewLockstepBench(players, payload int, peer Peer) (*TickBench, error) {
	m, err := newManager(Config{
		Workers:           1,
		Clock:             benchClock{time.Unix(1_700_000_000, 0)},
		DefaultMaxPlayers: players,
		MaxPlayersPerRoom: players,
		SeatGrace:         -1,
		// A small log reaches its steady state (dropping its oldest) soon.
		LockstepLogBytes: 4 << 10,
	})
	if err != nil {
		return nil, err
	}
	b := &TickBench{m: m, w: m.workers[0], msg: wire.SendView{Payload: make([]byte, payload)}, lockstep: true}
	for range players {
		s := m.NewSeat(peer)
		join := &pb.Join{RoomId: "bench", CreateIfMissing: true, Options: &pb.RoomOptions{Mode: pb.RoomMode_ROOM_MODE_LOCKSTEP}}
		if err := m.Join(s, JoinRequest{Join: join}); err != nil {
			return nil, err
		}
		b.seats = append(b.seats, s)
	}
	b.w.step()
	b.r = b.w.rooms["bench"]
	if b.r == nil || len(b.r.members) != players || b.r.ls == nil {
		return nil, errors.New("room: lockstep bench room not set up")
	}
	for range 2000 {
		b.Step()
	}
	return b, nil
}

func (b *TickBench) lockstepStep() {
	in := wire.InputView{TargetTick: b.r.tick + 1, Payload: b.msg.Payload}
	for _, s := range b.seats {
		_ = b.m.Input(s, 0, &in)
	}
	b.w.drain()
	b.r.tick++
	b.w.runTick(b.r, b.r.tick)
}

// PendingCap is the capacity of s's member's pending list (0 when not in a
// room), read on its worker.
func (m *Manager) PendingCap(s *Seat) int {
	n := 0
	done := make(chan struct{})
	if !s.worker.in.pushControl(command{kind: cmdCall, fn: func(*worker) {
		if mem := s.member.Load(); mem != nil {
			n = cap(mem.pending)
		}
	}, done: done}) {
		return 0
	}
	<-done
	return n
}
