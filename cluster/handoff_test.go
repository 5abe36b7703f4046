package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

// fakeConn is an edge's client connection without a socket: it records
// what the owner sends it.
type fakeConn struct {
	mu       sync.Mutex
	player   uint32
	got      []string // delivered payloads, in order
	evicted  string
	released int // Released calls
	changed  chan struct{}
}

func newFakeConn() *fakeConn { return &fakeConn{changed: make(chan struct{}, 1)} }

func (c *fakeConn) Deliver(msg *room.Outbound) {
	var m pb.ServerMessage
	err := proto.Unmarshal(msg.Bytes(), &m)
	msg.Release()
	if err != nil {
		return
	}
	c.mu.Lock()
	switch body := m.GetBody().(type) {
	case *pb.ServerMessage_Joined:
		c.player = body.Joined.GetPlayerId()
	case *pb.ServerMessage_Frame:
		for _, d := range body.Frame.GetDeliveries() {
			c.got = append(c.got, string(d.GetPayload()))
		}
	}
	c.mu.Unlock()
	c.signal()
}

func (c *fakeConn) Evict(cause room.EvictCause, detail string) {
	c.mu.Lock()
	c.evicted = fmt.Sprintf("%v: %s", cause, detail)
	c.mu.Unlock()
	c.signal()
}

func (c *fakeConn) Released() {
	c.mu.Lock()
	c.released++
	c.mu.Unlock()
	c.signal()
}

func (c *fakeConn) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds of c (c.mu held while it runs).
func (c *fakeConn) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		c.mu.Lock()
		ok, evicted, n := cond(), c.evicted, len(c.got)
		c.mu.Unlock()
		require.Empty(t, evicted, "evicted while waiting for %s", what)
		if ok {
			return
		}
		select {
		case <-c.changed:
		case <-deadline:
			t.Fatalf("%s: not there with %d deliveries", what, n)
		}
	}
}

// forward sends msg on from r as the transport would.
func forward(t *testing.T, r *Remote, msg *pb.ClientMessage) {
	t.Helper()
	b, err := proto.Marshal(msg)
	require.NoError(t, err)
	var m wire.ClientMessage
	require.NoError(t, wire.ParseClientMessage(b, &m))
	require.True(t, r.Forward(b, &m), "forward")
}

// A room handed off while a client streams into it through an edge: each
// of its messages reaches the other player exactly once, in order. The old
// owner's up loop once handled an uplink after the export (it went into no
// room), yet counted it in the sequence numbers handed on, so the
// successor skipped it: a message lost whenever one arrived in the window
// between the export and the lease's compare-and-set (a JetStream round
// trip).
func TestHandoffLosesNoUplink(t *testing.T) {
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
	t.Cleanup(func() { // what a failure needs to be understood: gaps, drops
		if t.Failed() {
			t.Logf("owner (a): %+v", owner.Stats())
			t.Logf("edge and successor (b): %+v", edge.Stats())
		}
	})
	const id = "handoff"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = owner.acquire(ctx, id, false)
	require.NoError(t, err)
	// The owner's subscription to the room's uplinks reaches the NATS
	// server before the edge's first uplink (they come on two connections).
	require.NoError(t, owner.nc.Flush())

	sender, receiver := newFakeConn(), newFakeConn()
	addr := netip.MustParseAddr("127.0.0.1")
	rs, rr := edge.Attach(sender, id, addr, nil), edge.Attach(receiver, id, addr, nil)
	for i, p := range []struct {
		r *Remote
		c *fakeConn
	}{{rs, sender}, {rr, receiver}} {
		forward(t, p.r, &pb.ClientMessage{RequestId: uint32(i + 1), Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: id, CreateIfMissing: true}}})
		p.c.waitFor(t, "joined", func() bool { return p.c.player != 0 })
	}

	// The sender streams (paced, so that no bounded queue overflows) until
	// the handoff is over and some more, so that uplinks keep arriving all
	// through it.
	handedOff := make(chan struct{})
	sent := make(chan int)
	go func() {
		tick := time.NewTicker(200 * time.Microsecond)
		defer tick.Stop()
		after := -1
		for i := 0; ; i++ {
			forward(t, rs, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte(strconv.Itoa(i)), Kind: 1}}})
			select {
			case <-handedOff:
				if after < 0 {
					after = i + 50
				}
			default:
			}
			if after >= 0 && i >= after {
				sent <- i + 1
				return
			}
			<-tick.C
		}
	}()
	receiver.waitFor(t, "the first messages", func() bool { return len(receiver.got) >= 20 })
	owner.Drain(ctx)
	close(handedOff)
	n := <-sent
	require.Equal(t, uint64(1), owner.Stats().Handoffs, "the room was handed off")
	require.Equal(t, 1, edge.Stats().RoomsOwned, "the edge owns the room now")

	last := strconv.Itoa(n - 1)
	receiver.waitFor(t, "the last message", func() bool {
		return len(receiver.got) > 0 && receiver.got[len(receiver.got)-1] == last
	})
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	receiver.mu.Lock()
	got := append([]string(nil), receiver.got...)
	receiver.mu.Unlock()
	require.Equal(t, strings.Join(want, " "), strings.Join(got, " "), "each message once, in order")
}
