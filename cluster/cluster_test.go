package cluster_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client"
	"github.com/tickrelay/tickrelay/internal/splitproxy"
	"github.com/tickrelay/tickrelay/server"
)

// sendN sends n messages at once.
func (p *player) sendN(n int) {
	p.t.Helper()
	for range n {
		p.mu.Lock()
		i := p.sentCount
		p.sentCount++
		p.mu.Unlock()
		require.NoError(p.t, p.s.Send([]byte(fmt.Sprintf("%s:%d", p.name, i)), client.SendOptions{Kind: 1}))
	}
}

// streamFrom sends from p every interval until the returned stop is called;
// stop returns how many were sent.
func streamFrom(p *player, every time.Duration) func() int {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				p.mu.Lock()
				i := p.sentCount
				p.sentCount++
				p.mu.Unlock()
				if err := p.s.Send([]byte(fmt.Sprintf("%s:%d", p.name, i)), client.SendOptions{Kind: 1}); err != nil {
					p.t.Errorf("%s: send: %v (session: %v)", p.name, err, p.s.Err())
					return
				}
			}
		}
	}()
	return func() int {
		close(stop)
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.sentCount
	}
}

// fromSender returns the indexes of the deliveries from sender, in order.
func fromSender(got []string, sender string) []int {
	var out []int
	for _, g := range got {
		name, idx, ok := strings.Cut(g, ":")
		if !ok || name != sender {
			continue
		}
		i, _ := strconv.Atoi(idx)
		out = append(out, i)
	}
	return out
}

func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// checkExact asserts that recv got every message of sender (0..sent-1)
// exactly once and in order, and that its frames were numbered without a
// gap.
func checkExact(t *testing.T, recv *player, sender string, sent int) {
	t.Helper()
	got, seqs := recv.snapshot()
	require.Equal(t, upTo(sent), fromSender(got, sender), "%s's messages at %s: each once, in order", sender, recv.name)
	for i := 1; i < len(seqs); i++ {
		require.Equal(t, seqs[i-1]+1, seqs[i], "%s: frame seqs contiguous", recv.name)
	}
}

func waitAll(t *testing.T, recv *player, sender string, n int) {
	t.Helper()
	recv.waitCount(func(got []string) bool { return len(fromSender(got, sender)) >= n })
}

// A room spans three nodes: its players connect to different nodes, one
// owns it, and every delivery keeps the single-node guarantees.
func TestClusterRoomAcrossNodes(t *testing.T) {
	t.Parallel()
	_, nodes := startCluster(t, 3)
	p1 := joinPlayer(t, "p1", nodes[0].url(), "across")
	p2 := joinPlayer(t, "p2", nodes[1].url(), "across")
	p3 := joinPlayer(t, "p3", nodes[2].url(), "across")
	require.Len(t, p3.s.Joined().Members, 3, "the room is one room across the nodes")
	require.Equal(t, "n1", nodes[1].srv.Cluster().Owner("across"))

	const n = 100
	for _, p := range []*player{p1, p2, p3} {
		p.sendN(n)
	}
	for _, recv := range []*player{p1, p2, p3} {
		for _, from := range []*player{p1, p2, p3} {
			if recv != from {
				waitAll(t, recv, from.name, n)
				checkExact(t, recv, from.name, n)
			}
		}
	}
}

// The owner dies (its process stops at once: sockets dropped, no handover).
// The players on the other nodes keep their connections; after about a
// lease, a surviving node owns the room, and they lose nothing: every
// message each of them sent reaches the other exactly once, in order, with
// frames numbered on from where they were. The dead node's player resumes
// on another node.
func TestClusterOwnerDies(t *testing.T) {
	t.Parallel()
	_, nodes := startCluster(t, 3)
	lb := newBalancer(t, nodes[0]) // the dead node's player comes back through it
	p1 := joinPlayer(t, "p1", lb.url(), "failover")
	p2 := joinPlayer(t, "p2", nodes[1].url(), "failover")
	p3 := joinPlayer(t, "p3", nodes[2].url(), "failover")
	require.Equal(t, "n1", nodes[2].srv.Cluster().Owner("failover"))

	stop2 := streamFrom(p2, 5*time.Millisecond)
	stop3 := streamFrom(p3, 5*time.Millisecond)
	waitAll(t, p3, "p2", 20)
	waitAll(t, p2, "p3", 20)

	killed := time.Now()
	nodes[0].srv.Abort()
	lb.retarget(nodes[1])
	// Sends go on through the blackout; wait for deliveries after it.
	p2.mu.Lock()
	before := len(fromSender(p2.got, "p3"))
	p2.mu.Unlock()
	waitAll(t, p2, "p3", before+50)
	t.Logf("blackout (kill to deliveries flowing again): at most %v", time.Since(killed))
	sent2, sent3 := stop2(), stop3()
	waitAll(t, p3, "p2", sent2)
	waitAll(t, p2, "p3", sent3)
	checkExact(t, p3, "p2", sent2)
	checkExact(t, p2, "p3", sent3)
	for _, p := range []*player{p2, p3} {
		p.mu.Lock()
		require.Zero(t, p.reconns, "%s is on a surviving node: it never reconnects", p.name)
		require.Zero(t, p.resyncs, p.name)
		p.mu.Unlock()
	}
	owner := nodes[1].srv.Cluster().Owner("failover")
	require.Contains(t, []string{"n2", "n3"}, owner)

	// The dead node's player resumed elsewhere and is in the game again.
	p2.sendN(1)
	p1.waitCount(func(got []string) bool {
		s := fromSender(got, "p2")
		return len(s) > 0 && s[len(s)-1] == sent2
	})
}

// An edge dies: its player's seat waits on the owner for a resume, which
// it gets through another node, recovered; the others notice nothing but
// the player away and back.
func TestClusterEdgeDies(t *testing.T) {
	t.Parallel()
	_, nodes := startCluster(t, 3)
	p1 := joinPlayer(t, "p1", nodes[0].url(), "edge")
	lb := newBalancer(t, nodes[1])
	p2 := joinPlayer(t, "p2", lb.url(), "edge")
	p3 := joinPlayer(t, "p3", nodes[2].url(), "edge")

	stop1 := streamFrom(p1, 5*time.Millisecond)
	stop3 := streamFrom(p3, 5*time.Millisecond)
	waitAll(t, p2, "p1", 20)
	nodes[1].srv.Abort()
	lb.retarget(nodes[2])
	p2.waitReconnect()
	sent1, sent3 := stop1(), stop3()
	for _, recv := range []*player{p1, p2, p3} {
		for _, from := range []struct {
			name string
			sent int
		}{{"p1", sent1}, {"p3", sent3}} {
			if recv.name != from.name {
				waitAll(t, recv, from.name, from.sent)
				checkExact(t, recv, from.name, from.sent)
			}
		}
	}
	require.Zero(t, p2.s.Stats().Resyncs, "the seat was recovered, with every frame")
	for _, p := range []*player{p1, p3} {
		p.mu.Lock()
		require.Zero(t, p.reconns, p.name)
		p.mu.Unlock()
	}
}

// A draining owner hands its room over at a known tick with all of its
// state: the players elsewhere notice nothing, and its own player resumes
// on another node with every frame (the replay rings moved too).
func TestClusterDrainHandsOver(t *testing.T) {
	t.Parallel()
	_, nodes := startCluster(t, 3)
	lb := newBalancer(t, nodes[0])
	p1 := joinPlayer(t, "p1", lb.url(), "drain")
	p2 := joinPlayer(t, "p2", nodes[1].url(), "drain")
	p3 := joinPlayer(t, "p3", nodes[2].url(), "drain")
	require.Equal(t, "n1", nodes[1].srv.Cluster().Owner("drain"))

	stop2 := streamFrom(p2, 5*time.Millisecond)
	stop3 := streamFrom(p3, 5*time.Millisecond)
	waitAll(t, p1, "p2", 20)
	lb.retarget(nodes[1])
	nodes[0].srv.Drain(5 * time.Second)
	select {
	case <-nodes[0].srv.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the drain did not end")
	}
	p1.waitReconnect()
	sent2, sent3 := stop2(), stop3()
	waitAll(t, p3, "p2", sent2)
	waitAll(t, p2, "p3", sent3)
	waitAll(t, p1, "p2", sent2)
	checkExact(t, p3, "p2", sent2)
	checkExact(t, p2, "p3", sent3)
	checkExact(t, p1, "p2", sent2)
	require.Zero(t, p1.s.Stats().Resyncs, "the drained node's player got its seat back with every frame")
	require.Positive(t, nodes[0].srv.Cluster().Stats().Handoffs)
	for _, p := range []*player{p2, p3} {
		p.mu.Lock()
		require.Zero(t, p.reconns, p.name)
		p.mu.Unlock()
	}
}

// NATS restarts (its store kept): the nodes reconnect, the room goes on
// with its owner (or, if the outage outlasted the lease, with one new
// owner), and the players' sessions lose nothing: what the outage cut is
// resumed, replayed and re-sent exactly once.
func TestClusterNATSRestarts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := startNATS(t, dir, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	// A lease as in production: the restart must not outlast it.
	ttl := func(c *server.Config) { c.Cluster.LeaseTTL = 3 * time.Second }
	nodes := []*node{startNode(t, ns.ClientURL(), "n1", ttl), startNode(t, ns.ClientURL(), "n2", ttl)}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.srv.Cluster().PeersSeen() >= 2 }, waitTimeout, 10*time.Millisecond)
	}
	p1 := joinPlayer(t, "p1", nodes[0].url(), "restart")
	p2 := joinPlayer(t, "p2", nodes[1].url(), "restart")
	stop1 := streamFrom(p1, 5*time.Millisecond)
	stop2 := streamFrom(p2, 5*time.Millisecond)
	waitAll(t, p2, "p1", 20)

	ns.Shutdown()
	ns.WaitForShutdown()
	startNATS(t, dir, port)
	p2.mu.Lock()
	before := len(fromSender(p2.got, "p1"))
	p2.mu.Unlock()
	waitAll(t, p2, "p1", before+50)
	sent1, sent2 := stop1(), stop2()
	waitAll(t, p2, "p1", sent1)
	waitAll(t, p1, "p2", sent2)
	checkExact(t, p2, "p1", sent1)
	checkExact(t, p1, "p2", sent2)
	for _, p := range []*player{p1, p2} {
		require.Zero(t, p.s.Stats().Resyncs, "%s: the outage cost at most a resume", p.name)
	}
	t.Logf("reconnects: p1 %d, p2 %d; owner now %s", p1.s.Stats().Reconnects, p2.s.Stats().Reconnects, nodes[1].srv.Cluster().Owner("restart"))
}

// A node cut off from NATS stops serving the rooms it owns before its
// leases can run out (self-fencing) and tells its players to resume; a node
// still on NATS takes the room over. The players on that node lose
// nothing; the cut-off node's player comes back (resynchronised: the frames
// it missed stayed on the cut-off node).
func TestClusterNodeLosesNATS(t *testing.T) {
	t.Parallel()
	ns := startNATS(t, t.TempDir(), -1)
	link := splitproxy.ForTest(t, strings.TrimPrefix(ns.ClientURL(), "nats://"), nil)
	nodes := []*node{
		startNode(t, "nats://"+link.Addr(), "n1", nil),
		startNode(t, ns.ClientURL(), "n2", nil),
		startNode(t, ns.ClientURL(), "n3", nil),
	}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.srv.Cluster().PeersSeen() >= 3 }, waitTimeout, 10*time.Millisecond)
	}
	lb := newBalancer(t, nodes[0])
	p1 := joinPlayer(t, "p1", lb.url(), "fenced")
	p2 := joinPlayer(t, "p2", nodes[1].url(), "fenced")
	p3 := joinPlayer(t, "p3", nodes[2].url(), "fenced")
	stop2 := streamFrom(p2, 5*time.Millisecond)
	stop3 := streamFrom(p3, 5*time.Millisecond)
	waitAll(t, p3, "p2", 20)

	link.Refuse(true)
	link.Cut()
	lb.retarget(nodes[1])
	p1.waitReconnect()
	sent2, sent3 := stop2(), stop3()
	waitAll(t, p3, "p2", sent2)
	waitAll(t, p2, "p3", sent3)
	checkExact(t, p3, "p2", sent2)
	checkExact(t, p2, "p3", sent3)
	require.Positive(t, nodes[0].srv.Cluster().Stats().Fenced, "n1 fenced itself")
	require.Contains(t, []string{"n2", "n3"}, nodes[1].srv.Cluster().Owner("fenced"))
	p3.sendN(1)
	p1.waitCount(func(got []string) bool {
		s := fromSender(got, "p3")
		return len(s) > 0 && s[len(s)-1] == sent3
	})
}

// The admin API of any node sees the whole cluster: its listing has every
// room with its owner, and an operation on a room owned elsewhere runs on
// the owner.
func TestClusterAdminAcrossNodes(t *testing.T) {
	t.Parallel()
	ns := startNATS(t, t.TempDir(), -1)
	admin := func(c *server.Config) { c.AdminListen = "127.0.0.1:0" }
	nodes := []*node{startNode(t, ns.ClientURL(), "n1", admin), startNode(t, ns.ClientURL(), "n2", admin)}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.srv.Cluster().PeersSeen() >= 2 }, waitTimeout, 10*time.Millisecond)
	}
	joinPlayer(t, "p1", nodes[0].url(), "admin-room")
	left := make(chan client.Left, 1)
	p2 := joinPlayer(t, "p2", nodes[1].url(), "admin-room", func(o *client.SessionOptions) {
		o.OnLeft = func(l client.Left) { left <- l }
	})

	base := "http://" + nodes[1].srv.AdminAddr()
	var list struct {
		Rooms []struct {
			ID      string `json:"id"`
			Players int    `json:"players"`
			Node    string `json:"node"`
		} `json:"rooms"`
	}
	require.Eventually(t, func() bool {
		getJSON(t, base+"/v1/rooms", &list)
		return len(list.Rooms) == 1 && list.Rooms[0].Players == 2
	}, waitTimeout, 20*time.Millisecond, "the room is listed on the node that does not own it, with both players")
	require.Equal(t, "n1", list.Rooms[0].Node)

	var detail struct {
		Host    uint32 `json:"host"`
		Node    string `json:"node"`
		Members []struct {
			PlayerID uint32 `json:"player_id"`
		} `json:"members"`
	}
	getJSON(t, base+"/v1/rooms/admin-room", &detail)
	require.Equal(t, "n1", detail.Node)
	require.Len(t, detail.Members, 2)

	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/rooms/admin-room/players/%d/kick", base, p2.s.Joined().PlayerID), strings.NewReader(`{"reason":"test"}`))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	select {
	case l := <-left:
		require.Equal(t, "test", l.Message)
	case <-time.After(waitTimeout):
		t.Fatal("the kicked player was not told")
	}
	resp, err = http.Get(base + "/v1/rooms/nowhere")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

// Placement by load: a node that owns cluster-max-owned-rooms rooms has the
// next room a Join of its creates on the node that owns the fewest, and the
// placed room serves its players (on both nodes) as any room does. A node
// with no peer that owns fewer creates the room itself: a Join is not
// refused for the limit.
func TestClusterPlacesRoomsOverTheLimitElsewhere(t *testing.T) {
	t.Parallel()
	ns := startNATS(t, t.TempDir(), -1)
	limited := func(c *server.Config) { c.Cluster.MaxOwnedRooms = 1 }
	a := startNode(t, ns.ClientURL(), "n1", limited)
	b := startNode(t, ns.ClientURL(), "n2", nil)
	for _, n := range []*node{a, b} {
		require.Eventually(t, func() bool { return n.srv.Cluster().PeersSeen() >= 2 }, waitTimeout, 10*time.Millisecond)
	}
	joinPlayer(t, "p1", a.url(), "first")
	require.Equal(t, "n1", a.srv.Cluster().Owner("first"), "under its limit, the Join's node owns the room")

	p2 := joinPlayer(t, "p2", a.url(), "second")
	require.Equal(t, "n2", a.srv.Cluster().Owner("second"), "at its limit, n1 placed the room on n2")
	require.Equal(t, "n2", b.srv.Cluster().Owner("second"))
	require.EqualValues(t, 1, a.srv.Cluster().Stats().PlacedElsewhere)
	require.Equal(t, 1, a.srv.Cluster().Stats().RoomsOwned)

	q2 := joinPlayer(t, "q2", b.url(), "second")
	const n = 30
	p2.sendN(n)
	q2.sendN(n)
	waitAll(t, q2, "p2", n)
	checkExact(t, q2, "p2", n)
	waitAll(t, p2, "q2", n)
	checkExact(t, p2, "q2", n)

	// Alone in its cluster, a node at its limit creates the room itself.
	solo := startNode(t, startNATS(t, t.TempDir(), -1).ClientURL(), "solo", limited)
	require.Eventually(t, func() bool { return solo.srv.Cluster().PeersSeen() >= 1 }, waitTimeout, 10*time.Millisecond)
	joinPlayer(t, "s1", solo.url(), "one")
	joinPlayer(t, "s2", solo.url(), "two")
	require.Equal(t, "solo", solo.srv.Cluster().Owner("two"))
	require.Equal(t, 2, solo.srv.Cluster().Stats().RoomsOwned)
	require.Zero(t, solo.srv.Cluster().Stats().PlacedElsewhere)
}
