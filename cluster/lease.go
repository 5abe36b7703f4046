package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
)

// errTaken: another node holds the room's lease.
var errTaken = errors.New("cluster: the room is owned by another node")

// leaseValue is this node's lease value.
func (n *Node) leaseValue() []byte {
	b, _ := proto.Marshal(&cpb.Lease{Node: n.cfg.NodeID, Run: n.run})
	return b
}

// acquire takes the lease of room id and makes the node its owner, with
// restoring set when the room is to be rebuilt (a takeover) before it
// takes requests. errTaken when another node has it.
//
// The node subscribes to the room's uplinks before it creates the lease,
// and holds them (o.early) until the lease is its own: another node that
// sees the lease (its watch, or its own Create refused) at once forwards
// its clients' Joins, and NATS routes a message only to the subscriptions
// it knows of when it comes. Subscribed after the Create, an owner missed
// the uplinks sent in between (the SUB and the lease come on one
// connection, so NATS knows the subscription before it stores the lease):
// the first uplink of an edge starts its sequence, so nothing noticed the
// loss, and those Joins were never answered (the 3-node bench: 29 of 1,000
// clients in S1).
func (n *Node) acquire(ctx context.Context, id string, restoring bool) (*owned, error) {
	sent := time.Now()
	o := n.newOwned(id, 0, sent)
	// Until the lease is ours: uplinks wait (restoring), and there is
	// nothing to renew or release (leaving).
	o.restoring, o.leaving = true, true
	if err := n.own(o, false); err != nil {
		return nil, err // errTaken when this node has it already
	}
	rev, err := n.leases.Create(ctx, roomKey(id), n.leaseValue())
	if err != nil {
		n.disown(o)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, errTaken
		}
		return nil, fmt.Errorf("cluster: acquire room %q: %w", id, err)
	}
	if h := n.afterLease.Load(); h != nil {
		(*h)(id)
	}
	o.mu.Lock()
	o.epoch, o.rev = rev, rev
	o.leaving = false
	o.mu.Unlock()
	n.mu.Lock()
	if n.owned[id] == o {
		n.leaseView[id] = leaseView{node: n.cfg.NodeID, run: n.run, rev: rev}
	}
	n.mu.Unlock()
	if restoring {
		return o, nil // the takeover opens the uplinks once the room is rebuilt
	}
	// The uplinks held meanwhile are handled before the room is used:
	// they came first.
	opened := make(chan struct{})
	n.onUpLoop(func() {
		o.openUplinks()
		close(opened)
	})
	select {
	case <-opened:
	case <-n.ctx.Done():
		return nil, fmt.Errorf("cluster: acquire room %q: %w", id, n.ctx.Err())
	}
	return o, nil
}

// own subscribes to the room's uplinks and records it as owned; lease
// says whether the node holds its lease already (else the lease view is
// left to the acquire).
func (n *Node) own(o *owned, lease bool) error {
	sub, err := n.nc.ChanSubscribe(n.names.roomIn(o.id), n.up)
	if err != nil {
		return fmt.Errorf("cluster: subscribe to room %q: %w", o.id, err)
	}
	n.mu.Lock()
	if !lease && n.owned[o.id] != nil {
		// This node owns the room already, or is acquiring it for another
		// request: the lease's Create would be refused anyway.
		n.mu.Unlock()
		_ = sub.Unsubscribe()
		return errTaken
	}
	o.sub = sub
	n.owned[o.id] = o
	if lease {
		n.leaseView[o.id] = leaseView{node: n.cfg.NodeID, run: n.run, rev: o.rev}
	}
	n.mu.Unlock()
	return nil
}

// disown forgets o: no more uplinks, no more downlinks.
func (n *Node) disown(o *owned) {
	o.mu.Lock()
	o.fenced = true
	o.pending = nil
	o.mu.Unlock()
	if o.sub != nil {
		_ = o.sub.Unsubscribe()
	}
	n.mu.Lock()
	if n.owned[o.id] == o {
		delete(n.owned, o.id)
		if n.leaseView[o.id].node == n.cfg.NodeID {
			delete(n.leaseView, o.id)
		}
	}
	n.mu.Unlock()
}

// release gives up the lease of a room that closed.
func (n *Node) release(o *owned) {
	n.disown(o)
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
	defer cancel()
	o.leaseMu.Lock()
	defer o.leaseMu.Unlock()
	o.mu.Lock()
	rev := o.rev
	o.mu.Unlock()
	if err := n.leases.Delete(ctx, roomKey(o.id), jetstream.LastRevision(rev)); err != nil && n.ctx.Err() == nil {
		// The lease runs out by itself; a new owner may hold it already.
		n.log.Debug("cluster: releasing a lease", "room", o.id, "err", err)
	}
}

// fence stops serving o at once: its lease is lost or about to be.
func (n *Node) fence(o *owned, why string) {
	n.stats.fenced.Add(1)
	n.log.Warn("cluster: fenced: no longer serving a room", "room", o.id, "why", why)
	n.disown(o)
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseTTL)
	defer cancel()
	_ = n.rooms.Abandon(ctx, o.id)
	// If NATS hears us, let the lease go now rather than at its end: a
	// node with players in the room takes it over sooner. Only this
	// node's revision can be deleted, so a new owner's lease is safe.
	o.mu.Lock()
	rev := o.rev
	o.mu.Unlock()
	_ = n.leases.Delete(ctx, roomKey(o.id), jetstream.LastRevision(rev))
}

// renewParallel bounds the lease renewals (and fences) in flight at once.
// Renewals are round trips to NATS: one after another, a node owning many
// rooms on a busy machine took longer than the renew interval for all of
// them, and one fence (which waits for its room to be abandoned) held up
// the renewal of every other room until they were late too.
const renewParallel = 32

// leaseLoop renews the leases of owned rooms, and fences those whose last
// successful renewal is too old: the node then stops serving them before
// the lease can have run out (the grantor's clock runs its TTL from the
// renewal's arrival, which is after its sending). Each room's renewal runs
// on its own goroutine, at most renewParallel at once, so that a slow one
// delays no other.
func (n *Node) leaseLoop() {
	t := time.NewTicker(min(n.cfg.RenewEvery/4, 100*time.Millisecond))
	defer t.Stop()
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	slots := make(chan struct{}, renewParallel)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		n.mu.Lock()
		rooms := make([]*owned, 0, len(n.owned))
		for _, o := range n.owned {
			rooms = append(rooms, o)
		}
		n.mu.Unlock()
		for _, o := range rooms {
			if !o.renewing.CompareAndSwap(false, true) {
				continue // its last renewal is still under way
			}
			select {
			case slots <- struct{}{}:
			case <-n.ctx.Done():
				o.renewing.Store(false)
				return
			}
			inFlight.Add(1)
			go func() {
				defer inFlight.Done()
				defer func() { <-slots; o.renewing.Store(false) }()
				if n.ctx.Err() == nil {
					n.renew(o)
				}
			}()
		}
	}
}

// renew renews o's lease when due, or fences it when it is too late.
func (n *Node) renew(o *owned) {
	if why := n.renewLease(o); why != "" {
		n.fence(o, why)
	}
}

// renewLease renews o's lease if due; it returns why o must be fenced, if
// it must. The fence is left to the caller, outside leaseMu: it abandons
// the room, which may release the lease.
func (n *Node) renewLease(o *owned) (fence string) {
	o.leaseMu.Lock()
	defer o.leaseMu.Unlock()
	now := time.Now()
	o.mu.Lock()
	skip := o.fenced || o.leaving
	late := now.Sub(o.renewedAt) > n.cfg.LeaseTTL-n.cfg.FenceMargin
	due := now.Sub(o.triedAt) >= n.cfg.RenewEvery
	last := o.rev
	if due {
		o.triedAt = now
	}
	o.mu.Unlock()
	switch {
	case skip:
		return ""
	case late:
		return "no successful lease renewal in time"
	case !due:
		return ""
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RenewEvery)
	rev, err := n.leases.Update(ctx, roomKey(o.id), n.leaseValue(), last)
	cancel()
	switch {
	case err == nil:
		o.mu.Lock()
		o.rev, o.renewedAt = rev, now
		o.mu.Unlock()
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		n.stats.leaseLosses.Add(1)
		return "the lease is gone: " + err.Error()
	default:
		n.stats.renewFailures.Add(1) // retried at the next tick, until the fence
	}
	return ""
}
