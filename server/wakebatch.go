package server

import (
	"sync"

	"github.com/panjf2000/gnet/v2"
)

// wakeBatch wakes an event loop once for all the connections room workers
// queued frames for since it last ran, instead of once per connection.
//
// A room's tick hands a frame to every member at the same moment, and the
// members of the rooms a worker ticks together share a few event loops.
// Each gnet Wake costs a task closure and a queue node (two allocations,
// the only ones per delivery) and, on a loop asleep in epoll_wait, an
// eventfd write and a wake-up; at low load, where the writes themselves are
// cheap, that was 7% of the relay's CPU. Here the first connection of a
// batch is woken with gnet's Wake, and its callback serves the others that
// joined the batch by the time it runs, on the loop, in the order they
// joined. Deliver is its only user: the rarer wakes (Ready, Congested, the
// sweeper, a close) stay per connection.
type wakeBatch struct {
	srv *Server
	// rest runs the batch on the loop: made once, so that a batch costs
	// gnet's two allocations and nothing more.
	rest gnet.AsyncCallback

	mu        sync.Mutex
	conns     []*conn // woken after the first; guarded by mu
	spare     []*conn // the slice the loop emptied last; guarded by mu
	scheduled bool    // a Wake is on its way and has not taken conns yet; guarded by mu
}

func newWakeBatch(s *Server) *wakeBatch {
	b := &wakeBatch{srv: s}
	b.rest = b.serve
	return b
}

// wake asks c's loop to run OnTraffic for c (the frames queued for it),
// joining the batch on its way there if there is one. Goroutine-safe.
func (b *wakeBatch) wake(c *conn) {
	if b.join(c) {
		b.carry(c)
	}
}

// join adds c to the batch, or reports that there is none: c is to carry
// a new one to the loop (carry).
func (b *wakeBatch) join(c *conn) (carrier bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.scheduled {
		b.conns = append(b.conns, c)
		return false
	}
	b.scheduled = true
	return true
}

// carry wakes the carrier of a batch, with the batch as the wake's
// callback. A carrier closed meanwhile still carries it: gnet passes over a
// stale connection's OnTraffic but runs the callback. An error is an
// eventfd write that failed after the task was queued (the loop runs it
// when next woken), as with the per-connection wake before.
func (b *wakeBatch) carry(c *conn) {
	_ = c.gc.Wake(b.rest)
}

// serve runs OnTraffic, on the loop, for every connection that joined the
// batch after the first (which gnet's Wake has just served). Connections
// closed since they joined are passed over: OnClose ran on this loop, and
// their gnet.Conn is gnet's again.
func (b *wakeBatch) serve(gnet.Conn, error) error {
	b.mu.Lock()
	conns := b.conns
	b.conns = b.spare[:0]
	b.spare = nil
	b.scheduled = false
	b.mu.Unlock()
	for i, c := range conns {
		conns[i] = nil
		if c.state.Load() == stateClosed {
			continue
		}
		if b.srv.OnTraffic(c.gc) == gnet.Close {
			_ = c.gc.Close()
		}
	}
	b.mu.Lock()
	if b.spare == nil && cap(conns) <= 4096 {
		b.spare = conns[:0]
	}
	b.mu.Unlock()
	return nil
}
