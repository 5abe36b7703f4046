package server

import (
	"slices"
	"sync"
)

// registry tracks open connections for the sweeper and for shutdown. It is
// sharded by file descriptor so that accepts on different event loops rarely
// share a lock; it is touched only on open, close and sweeps, never per
// message.
type registry struct {
	shards [registryShards]registryShard
	// batches recycles each's snapshots: the sweeper calls each several
	// times a second and a metrics scrape once more, and a snapshot made
	// afresh every time was an idle relay's steady garbage (about 8 bytes
	// per connection per call), which the heap kept until the next
	// collection.
	batches sync.Pool
}

const registryShards = 64

type registryShard struct {
	mu sync.Mutex
	// conns in no order; a conn's registered field is its index. A slice
	// with the index in the conn costs a connection 8 bytes where a map
	// entry cost about 30.
	conns []*conn
}

func (r *registry) add(fd int, c *conn) {
	sh := &r.shards[uint(fd)%registryShards]
	sh.mu.Lock()
	c.registered = int32(len(sh.conns))
	sh.conns = append(sh.conns, c)
	sh.mu.Unlock()
}

// remove takes c out (fd must be the one it was added with); a connection
// not registered there is ignored.
func (r *registry) remove(fd int, c *conn) {
	sh := &r.shards[uint(fd)%registryShards]
	sh.mu.Lock()
	if i := int(c.registered); i < len(sh.conns) && sh.conns[i] == c {
		last := len(sh.conns) - 1
		sh.conns[i] = sh.conns[last]
		sh.conns[i].registered = int32(i)
		sh.conns[last] = nil
		sh.conns = sh.conns[:last]
		if cap(sh.conns) > 64 && len(sh.conns) < cap(sh.conns)/4 {
			// Most connections went: give the memory back.
			sh.conns = slices.Clone(sh.conns)
		}
	}
	sh.mu.Unlock()
}

// each calls fn for every registered connection. fn runs outside the shard
// locks (on a snapshot), so it may call goroutine-safe conn methods freely;
// a connection may close concurrently.
func (r *registry) each(fn func(*conn)) {
	bp, _ := r.batches.Get().(*[]*conn)
	if bp == nil {
		bp = new([]*conn)
	}
	batch := *bp
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		batch = append(batch, sh.conns...)
		sh.mu.Unlock()
		for _, c := range batch {
			fn(c)
		}
	}
	clear(batch[:cap(batch)]) // hold no connection past the call
	*bp = batch[:0]
	r.batches.Put(bp)
}
