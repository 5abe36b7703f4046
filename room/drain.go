package room

import (
	"context"
	"errors"
)

// FlushAll ends the relaying of a shutting-down relay without losing what
// it accepted: from now on Send fails with ErrDraining (so nothing more is
// accepted), and every room runs one last tick at once, handing its members
// everything routed to them so far (messages a Send accepted before this
// call included: they are ahead of the flush in the workers' inboxes). Rooms
// and members stay; the caller closes the connections next. It waits for
// every worker, bounded by ctx. Goroutine-safe.
func (m *Manager) FlushAll(ctx context.Context) error {
	m.quiesced.Store(true)
	m.draining.Store(true)
	dones := make([]chan struct{}, len(m.workers))
	for i, w := range m.workers {
		dones[i] = make(chan struct{})
		fn := func(w *worker) {
			for _, r := range w.rooms {
				w.flushFinal(r)
			}
		}
		if !w.in.pushControl(command{kind: cmdCall, fn: fn, done: dones[i]}) {
			return ErrClosed
		}
	}
	var errs []error
	for _, done := range dones {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		case <-m.done:
			errs = append(errs, ErrClosed)
		}
	}
	return errors.Join(errs...)
}

// flushFinal runs r's next tick now if anything waits for it: every member
// gets what was routed to it, backlogs of congested members included, as a
// leaving member would.
func (w *worker) flushFinal(r *room) {
	if !r.work {
		return
	}
	for _, m := range r.members {
		w.flushLeaver(m) // frames of tick r.tick+1
	}
	r.tick++ // that tick has run: a later one gets a new number
	r.publishClock()
	r.work = false
}
