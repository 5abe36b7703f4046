package room

import (
	"net/netip"
	"sync/atomic"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Seat states. See the package documentation for who moves which.
const (
	stateIdle uint32 = iota
	stateJoining
	stateInRoom
	stateLeaving
)

// Seat is one connection's place in the room system, created by
// Manager.NewSeat. Join, Send, Leave and Disconnect for a seat must be called
// from one goroutine at a time (the connection's event loop); Clock is
// goroutine-safe.
type Seat struct {
	peer Peer

	// state is the seat state machine (stateIdle...). Compare-and-swap only.
	state atomic.Uint32
	// dead is set by Disconnect: from then on nothing is delivered to peer
	// and the seat can never join again.
	dead atomic.Bool
	// member is the seat's membership, written only by the worker owning
	// the member's room (nil when in no room). It is atomic so that any
	// worker can tell whether a command it holds is about one of its own
	// members (a stale Send queued before a kick, processed after the seat
	// joined a room on another worker) without a data race, and so Clock
	// can read it from the event loop.
	member atomic.Pointer[member]

	// worker is where this seat's commands go: the worker of the room it
	// joined or is joining. Owned by the calling goroutine (set by Join).
	worker *worker
	// queued counts this seat's Sends in worker inboxes, for its fair share
	// (Config.InboxPerSeat).
	queued atomic.Int32
	// acked is the highest Frame.seq the client acknowledged
	// (ClientMessage.ack), set by the transport, read by the worker to
	// trim the replay ring.
	acked atomic.Uint64
}

// Ack records the highest Frame.seq the client says it holds, so the room
// can let go of the frames kept for its replay. Goroutine-safe; acks that
// go backwards are ignored.
func (s *Seat) Ack(seq uint64) {
	for {
		old := s.acked.Load()
		if seq <= old || s.acked.CompareAndSwap(old, seq) {
			return
		}
	}
}

// settle moves s from state from to state to, if it is in from, and tells
// its peer that it can take requests again. Worker only.
func (s *Seat) settle(from, to uint32) {
	if s.state.CompareAndSwap(from, to) {
		s.ready()
	}
}

// ready tells the peer that the seat left a transitional state.
func (s *Seat) ready() {
	if !s.dead.Load() {
		s.peer.Ready()
	}
}

// Clock reports the current tick and tick rate of the seat's room, for
// answering Ping on the event loop without a round trip to the worker.
// tickRate is zero for an immediate room (whose tick counts flushes).
// Goroutine-safe.
func (s *Seat) Clock() (tick uint64, tickRate int, inRoom bool) {
	m := s.member.Load()
	if m == nil {
		return 0, 0, false
	}
	r := m.room
	tick, rate := r.clockTick.Load(), int(r.clockRate.Load())
	// Count the deadlines passed since the last tick ran, so the clock goes
	// on while the room sleeps (and between a deadline and its late tick).
	if rate > 0 {
		next, period := r.clockNext.Load(), r.clockPeriod.Load()
		if now := r.w.m.cfg.Clock.Now().UnixNano(); period > 0 && now >= next {
			tick += 1 + uint64((now-next)/period)
		}
	}
	return tick, rate, true
}

// discardPeer stands in for a nil Peer so a bad NewSeat(nil) cannot make a
// worker panic.
type discardPeer struct{}

func (discardPeer) Deliver(o *Outbound)      { o.Release() }
func (discardPeer) Congested() bool          { return false }
func (discardPeer) Evict(EvictCause, string) {}
func (discardPeer) Ready()                   {}
func (discardPeer) JoinRefused(pb.ErrorCode) {}
func (discardPeer) Address() netip.Addr      { return netip.Addr{} }
