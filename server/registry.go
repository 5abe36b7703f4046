package server

import "sync"

// registry tracks open connections for the sweeper and for shutdown. It is
// sharded by file descriptor so that accepts on different event loops rarely
// share a lock; it is touched only on open, close and sweeps, never per
// message.
type registry struct {
	shards [registryShards]registryShard
}

const registryShards = 64

type registryShard struct {
	mu    sync.Mutex
	conns map[*conn]struct{}
}

func (r *registry) init() {
	for i := range r.shards {
		r.shards[i].conns = make(map[*conn]struct{})
	}
}

func (r *registry) add(fd int, c *conn) {
	sh := &r.shards[uint(fd)%registryShards]
	sh.mu.Lock()
	sh.conns[c] = struct{}{}
	sh.mu.Unlock()
}

func (r *registry) remove(fd int, c *conn) {
	sh := &r.shards[uint(fd)%registryShards]
	sh.mu.Lock()
	delete(sh.conns, c)
	sh.mu.Unlock()
}

// each calls fn for every registered connection. fn runs outside the shard
// locks (on a snapshot), so it may call goroutine-safe conn methods freely;
// a connection may close concurrently.
func (r *registry) each(fn func(*conn)) {
	var batch []*conn
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		batch = batch[:0]
		for c := range sh.conns {
			batch = append(batch, c)
		}
		sh.mu.Unlock()
		for _, c := range batch {
			fn(c)
		}
	}
}
