package cluster

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
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
