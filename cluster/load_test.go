package cluster_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/cluster"
)

// A Join forwarded by another node in the moment after the room's first
// node created its lease: the owner gets it and answers. It once
// subscribed to the room's uplinks only after the lease's Create came
// back, and NATS routed what the other node sent meanwhile to nobody: the
// Join was never answered (the 3-node bench's S1 lost 29 of 1,000 clients
// so). The owner is held after the Create until NATS has routed the other
// node's Join (an observer got it), which makes that window certain.
func TestClusterJoinRightAfterTheLease(t *testing.T) {
	t.Parallel()
	ns, nodes := startCluster(t, 2)
	const id = "racing"

	// An observer on the room's uplinks: once it has the edge's Join, NATS
	// has routed it, to every subscription it knew of then.
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	uplinks := make(chan *nats.Msg, 64)
	_, err = nc.ChanSubscribe("tickrelay.r.*.in", uplinks)
	require.NoError(t, err)
	require.NoError(t, nc.Flush())

	created := make(chan struct{})
	release := make(chan struct{})
	cluster.SetAfterLease(nodes[0].srv.Cluster(), func(room string) {
		if room != id {
			return
		}
		close(created)
		select {
		case <-release:
		case <-time.After(waitTimeout):
		}
	})
	t.Cleanup(func() { cluster.SetAfterLease(nodes[0].srv.Cluster(), nil) })

	type joined struct {
		p   *player
		err error
	}
	join := func(name string, n int, to chan<- joined) {
		p, err := tryJoinPlayer(t, name, nodes[n].url(), id)
		to <- joined{p, err}
	}
	first := make(chan joined, 1)
	go join("p1", 0, first)
	select {
	case <-created:
	case <-time.After(waitTimeout):
		t.Fatal("n1 did not create the room's lease")
	}
	second := make(chan joined, 1)
	go join("p2", 1, second)
	// n2 attaches its connection (one uplink), then forwards the Join
	// (another): both routed by NATS while n1 is held.
	for range 2 {
		select {
		case m := <-uplinks:
			t.Logf("uplink on %s, %d bytes", m.Subject, len(m.Data))
		case <-time.After(waitTimeout):
			t.Fatal("n2 forwarded nothing")
		}
	}
	close(release)

	j1, j2 := <-first, <-second // each bounded by its Connect's timeout
	require.NoError(t, j1.err, "n1's own player")
	require.NoError(t, j2.err, "the Join n2 forwarded while n1 was taking the lease")
	p1, p2 := j1.p, j2.p
	require.Equal(t, "n1", nodes[1].srv.Cluster().Owner(id))
	// Either Join may have come first (n2's was held at n1 meanwhile).
	require.Equal(t, 2, max(len(p1.s.Joined().Members), len(p2.s.Joined().Members)), "one room, on n1")
	p1.sendN(5)
	p2.sendN(5)
	waitAll(t, p2, "p1", 5)
	waitAll(t, p1, "p2", 5)
	checkExact(t, p2, "p1", 5)
	checkExact(t, p1, "p2", 5)
}
