package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

// A tick whose frames for an edge's players add up to more than NATS's
// largest message: they reach the players, in as many downlinks as they
// need. The owner once sent each tick as one downlink, which NATS refused
// (max_payload): the edge saw a gap and closed its players of the room
// with 1012 (the 3-node bench's S2, rooms of 100). Here NATS takes at most
// 64 KiB, and each of three players on the edge gets a 40 KB frame.
func TestDownlinkLargerThanNATSMaxPayload(t *testing.T) {
	t.Parallel()
	const maxPayload = 64 << 10
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	owner := startTestNode(t, ns.ClientURL(), "a")
	edge := startTestNode(t, ns.ClientURL(), "b")
	for _, n := range []*Node{owner, edge} {
		require.Eventually(t, func() bool { return n.PeersSeen() >= 2 }, 15*time.Second, 10*time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("owner (a): %+v", owner.Stats())
			t.Logf("edge (b): %+v", edge.Stats())
		}
	})
	const id = "big-frames"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = owner.acquire(ctx, id, false)
	require.NoError(t, err)
	require.NoError(t, owner.nc.Flush())

	addr := netip.MustParseAddr("127.0.0.1")
	conns := []*fakeConn{newFakeConn(), newFakeConn(), newFakeConn()}
	remotes := make([]*Remote, len(conns))
	for i, c := range conns {
		remotes[i] = edge.Attach(c, id, addr, nil)
		forward(t, remotes[i], &pb.ClientMessage{RequestId: uint32(i + 1), Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: id, CreateIfMissing: true}}})
		c.waitFor(t, "joined", func() bool { return c.player != 0 })
	}
	big := strings.Repeat("x", 40_000)
	forward(t, remotes[0], &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte(big), Kind: 1}}})
	forward(t, remotes[0], &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("after"), Kind: 1}}})
	for _, c := range conns[1:] {
		c.waitFor(t, "the big message and the next", func() bool { return len(c.got) == 2 && c.got[1] == "after" })
		require.Equal(t, big, c.got[0])
	}
	require.Zero(t, owner.Stats().PublishErrors, "NATS refused no downlink")
	require.Zero(t, edge.Stats().DownlinkGaps, "no downlink lost")
}

// A batch split over several downlinks reaches an edge's players only
// once its last downlink is in: cut by its owner's death, it reaches none
// of them (what the takeover's reports say), and the next owner's frames
// follow. The downlinks here are published by the test, as an owner would.
func TestDownlinkBatchAppliedWhole(t *testing.T) {
	t.Parallel()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	edge := startTestNode(t, ns.ClientURL(), "b")
	const id = "cut"
	c := newFakeConn()
	r := edge.Attach(c, id, netip.MustParseAddr("127.0.0.1"), nil)
	require.NoError(t, edge.nc.Flush()) // its downlink subscription is in

	owner, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(owner.Close)
	frame := func(payload string) *cpb.DownEntry {
		b, err := proto.Marshal(&pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{Deliveries: []*pb.Delivery{{Sender: 1, Kind: 1, Payload: []byte(payload)}}}}})
		require.NoError(t, err)
		return &cpb.DownEntry{Node: "b", Conn: r.id, Body: &cpb.DownEntry_Server{Server: b}}
	}
	send := func(d *cpb.Downlink) {
		b, err := proto.Marshal(d)
		require.NoError(t, err)
		require.NoError(t, owner.Publish(edge.names.roomOut(id), b))
	}
	// A whole batch in two downlinks, then one cut after its first.
	send(&cpb.Downlink{Node: "a", Epoch: 5, Seq: 1, Entries: []*cpb.DownEntry{frame("1")}, More: true})
	send(&cpb.Downlink{Node: "a", Epoch: 5, Seq: 2, Entries: []*cpb.DownEntry{frame("2")}})
	send(&cpb.Downlink{Node: "a", Epoch: 5, Seq: 3, Entries: []*cpb.DownEntry{frame("cut")}, More: true})
	// The next owner.
	send(&cpb.Downlink{Node: "c", Epoch: 9, Seq: 1, Entries: []*cpb.DownEntry{frame("3")}})
	c.waitFor(t, "the next owner's frame", func() bool { return len(c.got) > 0 && c.got[len(c.got)-1] == "3" })
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Equal(t, []string{"1", "2", "3"}, c.got, "the whole batch, none of the cut one")
}

// An edge whose takeover report is larger than NATS's largest message
// sends it in parts, and the new owner takes every connection's
// unconfirmed inputs again. One report over the limit was refused by NATS,
// and the new owner went on without that edge's connections: their inputs
// lost, their seats not in the room. Here NATS takes at most 64 KiB, and
// three senders on the edge hold 40 KB of inputs each when the owner goes.
func TestTakeoverReportLargerThanNATSMaxPayload(t *testing.T) {
	t.Parallel()
	const maxPayload = 64 << 10
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	start := func(id string) *Node { return startSmallFramesNode(t, ns.ClientURL(), id, 2*time.Second) }
	owner, edge := start("a"), start("b")
	for _, n := range []*Node{owner, edge} {
		require.Eventually(t, func() bool { return n.PeersSeen() >= 2 }, 15*time.Second, 10*time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("edge (b): %+v", edge.Stats())
		}
	})
	const id = "big-report"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = owner.acquire(ctx, id, false)
	require.NoError(t, err)
	require.NoError(t, owner.nc.Flush())

	addr := netip.MustParseAddr("127.0.0.1")
	conns := []*fakeConn{newFakeConn(), newFakeConn(), newFakeConn(), newFakeConn()}
	remotes := make([]*Remote, len(conns))
	for i, c := range conns {
		remotes[i] = edge.Attach(c, id, addr, nil)
		forward(t, remotes[i], &pb.ClientMessage{RequestId: uint32(i + 1), Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: id, CreateIfMissing: true}}})
		c.waitFor(t, "joined", func() bool { return c.player != 0 })
	}
	// The room's record, with every member, is what the takeover rebuilds
	// from.
	require.Eventually(t, func() bool {
		e, err := edge.recs.Get(ctx, roomKey(id))
		if err != nil {
			return false
		}
		var st cpb.RoomState
		return proto.Unmarshal(e.Value(), &st) == nil && len(st.GetMembers()) == len(conns)
	}, 15*time.Second, 10*time.Millisecond)

	owner.Close() // gone without a word: its lease runs out
	const perSender = 40
	payload := strings.Repeat("y", 1000)
	for i, r := range remotes[:3] {
		for k := 1; k <= perSender; k++ {
			forward(t, r, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Seq: uint64(k), Payload: []byte(fmt.Sprintf("%d:%d:%s", i, k, payload)), Kind: 1}}})
		}
	}
	recv := conns[3]
	recv.waitFor(t, "every sender's inputs after the takeover", func() bool { return len(recv.got) == 3*perSender })
	require.Equal(t, uint64(1), edge.Stats().Takeovers)
	require.Zero(t, edge.Stats().PublishErrors, "NATS refused nothing")
}

// startSmallFramesNode starts a node whose rooms' frames are at most
// 16 KiB, so that a burst of inputs spreads over ticks and no single frame
// is over a test NATS's small max_payload.
func startSmallFramesNode(t *testing.T, url, id string, ttl time.Duration) *Node {
	t.Helper()
	n, err := New(Config{NATSURL: url, NodeID: id, LeaseTTL: ttl}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	// A tick budget for the 120 KB the tests send at once (the default,
	// 64 KiB, would drop part of it with RATE_LIMITED).
	rooms, err := room.New(room.Config{Hooks: n.Hooks(), Workers: 1, MaxFrameBytes: 16 << 10, SenderTickBytes: 1 << 20})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, n.Start(ctx, rooms))
	t.Cleanup(func() {
		n.Close()
		rooms.Close()
	})
	return n
}

// A drain hands off a room whose state (its replay rings: the players
// here never acknowledge) is larger than NATS's largest message: it goes
// in pieces, and the successor has the room with every frame kept. One
// Handoff over the limit was refused by NATS, the handoff failed, and the
// room would have moved by failover when the node left.
func TestHandoffLargerThanNATSMaxPayload(t *testing.T) {
	t.Parallel()
	const maxPayload = 64 << 10
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true, MaxPayload: maxPayload})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	owner := startSmallFramesNode(t, ns.ClientURL(), "a", time.Minute)
	edge := startSmallFramesNode(t, ns.ClientURL(), "b", time.Minute)
	for _, n := range []*Node{owner, edge} {
		require.Eventually(t, func() bool { return n.PeersSeen() >= 2 }, 15*time.Second, 10*time.Millisecond)
	}
	const id = "big-handoff"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = owner.acquire(ctx, id, false)
	require.NoError(t, err)
	require.NoError(t, owner.nc.Flush())

	addr := netip.MustParseAddr("127.0.0.1")
	sender, receiver := newFakeConn(), newFakeConn()
	rs, rr := edge.Attach(sender, id, addr, nil), edge.Attach(receiver, id, addr, nil)
	for i, p := range []struct {
		r *Remote
		c *fakeConn
	}{{rs, sender}, {rr, receiver}} {
		forward(t, p.r, &pb.ClientMessage{RequestId: uint32(i + 1), Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: id, CreateIfMissing: true}}})
		p.c.waitFor(t, "joined", func() bool { return p.c.player != 0 })
	}
	// 120 KB of frames per seat, none acknowledged: kept for replay.
	const n = 120
	payload := strings.Repeat("z", 1000)
	for k := range n {
		forward(t, rs, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte(fmt.Sprintf("%d:%s", k, payload)), Kind: 1}}})
	}
	receiver.waitFor(t, "every message before the drain", func() bool { return len(receiver.got) == n })
	owner.Drain(ctx)
	require.Equal(t, uint64(1), owner.Stats().Handoffs, "the room was handed off")
	require.Equal(t, 1, edge.Stats().RoomsOwned, "the edge owns the room now")
	forward(t, rs, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("after"), Kind: 1}}})
	receiver.waitFor(t, "the message after the drain", func() bool { return len(receiver.got) == n+1 && receiver.got[n] == "after" })
}

// A room closes (its last player left) while another node has a
// connection in it (attached, not seated): that node does not take the
// closed room over, and lets its connection go. The owner once deleted the
// lease before the record: the other node, seeing the lease go, took the
// room over and brought it back from its record, or, the record just
// deleted, found none and closed its connection with 1012 (the bench's
// rooms closing at the end of a run: "has no record to rebuild it from").
func TestClosedRoomIsNotTakenOver(t *testing.T) {
	t.Parallel()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	owner := startTestNode(t, ns.ClientURL(), "a")
	edge := startTestNode(t, ns.ClientURL(), "b")
	for _, n := range []*Node{owner, edge} {
		require.Eventually(t, func() bool { return n.PeersSeen() >= 2 }, 15*time.Second, 10*time.Millisecond)
	}
	const id = "closing"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = owner.acquire(ctx, id, false)
	require.NoError(t, err)
	require.NoError(t, owner.nc.Flush())

	addr := netip.MustParseAddr("127.0.0.1")
	player, other := newFakeConn(), newFakeConn()
	rp := edge.Attach(player, id, addr, nil)
	forward(t, rp, &pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: id, CreateIfMissing: true}}})
	player.waitFor(t, "joined", func() bool { return player.player != 0 })
	require.Eventually(t, func() bool { _, err := edge.recs.Get(ctx, roomKey(id)); return err == nil }, 15*time.Second, 10*time.Millisecond, "the room's record")
	edge.Attach(other, id, addr, nil) // in the room's stream, no seat yet
	forward(t, rp, &pb.ClientMessage{RequestId: 2, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})

	other.waitFor(t, "released", func() bool { return other.released > 0 })
	require.Eventually(t, func() bool {
		_, err := edge.leases.Get(ctx, roomKey(id))
		return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
	}, 15*time.Second, 10*time.Millisecond, "the lease is gone")
	st := edge.Stats()
	require.Zero(t, st.Takeovers, "the closed room was not brought back")
	require.Zero(t, st.TakeoverLosses)
	require.Zero(t, st.RoomsOwned)
	require.Zero(t, st.EdgeConns, "the edge let its connection go")
}

// decodeDownlink keeps the header and this node's entries, in order.
func TestDecodeDownlink(t *testing.T) {
	t.Parallel()
	in := &cpb.Downlink{Node: "a", Run: "r1", Epoch: 7, Seq: 42, More: true, Entries: []*cpb.DownEntry{
		{Node: "b", Conn: 1, Body: &cpb.DownEntry_Server{Server: []byte("one")}},
		{Node: "c", Conn: 2, Body: &cpb.DownEntry_Server{Server: []byte("other edge")}},
		{Node: "b", Conn: 3, Body: &cpb.DownEntry_InputsTaken{InputsTaken: 9}},
		{Conn: 4, Body: &cpb.DownEntry_Server{Server: []byte("no node")}},
	}}
	b, err := proto.Marshal(in)
	require.NoError(t, err)
	var got cpb.Downlink
	require.NoError(t, decodeDownlink(b, "b", &got))
	want := &cpb.Downlink{Node: "a", Run: "r1", Epoch: 7, Seq: 42, More: true, Entries: []*cpb.DownEntry{in.Entries[0], in.Entries[2]}}
	require.True(t, proto.Equal(want, &got), "got %v", &got)
	require.Error(t, decodeDownlink(b[:len(b)-1], "b", &got), "a cut message")
}
