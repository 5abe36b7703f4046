package cluster

// SetAfterLease makes n call f (on the acquiring goroutine) each time it
// has created a room's lease, before the room is used; nil removes it.
func SetAfterLease(n *Node, f func(id string)) {
	if f == nil {
		n.afterLease.Store(nil)
		return
	}
	n.afterLease.Store(&f)
}
