package room

import (
	"sync"
	"sync/atomic"
)

type cmdKind uint8

const (
	cmdSend       cmdKind = iota + 1 // data: a relayed message
	cmdJoin                          // control
	cmdLeave                         // control
	cmdDisconnect                    // control
	cmdForfeit                       // control: a disconnect that gives up the seat
	cmdResume                        // control
	cmdCall                          // control: an admin function run on the worker
	cmdInput                         // data: a lockstep Input
	cmdSnapshot                      // data: a lockstep Snapshot
	cmdTrim                          // data: let go of acknowledged replay frames now
)

// command is one entry of a worker's inbox. Only the fields of its kind are
// set.
type command struct {
	kind      cmdKind
	requestID uint32
	seat      *Seat
	rec       *record       // cmdSend
	join      *joinCmd      // cmdJoin
	resume    *resumeCmd    // cmdResume
	snapshot  *snapshotCmd  // cmdSnapshot
	fn        func(*worker) // cmdCall
	done      chan struct{} // cmdCall: closed once the batch is processed
}

// inbox is a worker's queue: a mutex-guarded slice that producers append to
// and the worker swaps out whole, handing back the slice it emptied last
// time, so steady state allocates nothing and the worker takes the lock once
// per batch.
//
// Control and data commands share one slice on purpose: per-seat order
// across kinds is part of the contract (a Send pipelined after a Join is
// routed after it; a Send before a Leave is relayed before the player
// leaves), and two separate queues would lose it. The split is in the
// accounting: data commands count against capacity and are refused past it;
// control commands are never refused (they are bounded by the seats, a few
// each), because a lost disconnect would leave a ghost member.
type inbox struct {
	mu       sync.Mutex
	cmds     []command // guarded by mu
	data     int       // data commands in cmds; guarded by mu
	closed   bool      // guarded by mu
	capacity int
	// signalled: wake was signalled since the worker last took the queue.
	// timerArmed: the worker's timer is set (it will take the queue at its
	// next deadline at the latest), so a message for a room on its
	// schedule need not wake it (pushData). Both guarded by mu.
	signalled  bool
	timerArmed bool
	// wake has capacity 1: a producer that makes the queue non-empty signals
	// it; the worker drains everything queued per signal.
	wake chan struct{}
	// dropped counts Sends refused with ErrOverloaded. Written by producers
	// (under mu), read lock-free by Manager.Stats.
	dropped atomic.Uint64
}

func newInbox(capacity int) *inbox {
	return &inbox{capacity: capacity, wake: make(chan struct{}, 1)}
}

// pushData queues a relayed message; ErrOverloaded past capacity, ErrClosed
// after close. With untilTick (the message is for a ticked room on the
// worker's schedule, which only reads it at its next tick) it does not wake
// the worker when its timer is set: the worker takes the queue at the
// deadline, before the tick, so the message makes the same tick, and a
// worker that routes a few messages between ticks wakes once a tick
// rather than once a message. A quarter-full inbox wakes it all the same.
func (in *inbox) pushData(c command, untilTick bool) error {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return ErrClosed
	}
	if in.data >= in.capacity {
		in.dropped.Add(1)
		in.mu.Unlock()
		return ErrOverloaded
	}
	in.data++
	in.cmds = append(in.cmds, c)
	if !untilTick || !in.timerArmed || in.data >= in.capacity/4 {
		in.signalLocked()
	}
	in.mu.Unlock()
	return nil
}

// pushControl queues a control command; false only after close.
func (in *inbox) pushControl(c command) bool {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return false
	}
	in.appendLocked(c)
	in.mu.Unlock()
	return true
}

// appendLocked appends c and signals the worker. mu must be held.
func (in *inbox) appendLocked(c command) {
	in.cmds = append(in.cmds, c)
	in.signalLocked()
}

// signalLocked wakes the worker, once per batch. mu must be held.
func (in *inbox) signalLocked() {
	if in.signalled {
		return
	}
	in.signalled = true
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// setTimerArmed tells producers whether the worker's timer is set. When it
// is not, nothing would take what pushData queued without a signal: the
// worker wakes itself for it. Worker only.
func (in *inbox) setTimerArmed(armed bool) {
	in.mu.Lock()
	in.timerArmed = armed
	if !armed && len(in.cmds) > 0 {
		in.signalLocked()
	}
	in.mu.Unlock()
}

// take returns everything queued and installs spare (emptied) in its place.
// Worker only.
func (in *inbox) take(spare []command) []command {
	in.mu.Lock()
	batch := in.cmds
	in.cmds = spare[:0]
	in.data = 0
	in.signalled = false
	in.mu.Unlock()
	return batch
}

// close refuses every later push.
func (in *inbox) close() {
	in.mu.Lock()
	in.closed = true
	in.mu.Unlock()
}
