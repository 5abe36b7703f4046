package cluster_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client"
	"github.com/tickrelay/tickrelay/cluster"
	"github.com/tickrelay/tickrelay/internal/splitproxy"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server"
)

// waitTimeout bounds every wait in these tests.
const waitTimeout = 15 * time.Second

// leaseTTL is short, so that failovers take about a second.
const leaseTTL = time.Second

// startNATS runs an embedded NATS server with JetStream, storing in dir
// (so that a restart on the same dir keeps the buckets), on port (-1:
// any).
func startNATS(t *testing.T, dir string, port int) *natsserver.Server {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(waitTimeout), "nats-server did not start")
	t.Cleanup(ns.Shutdown)
	return ns
}

// node is one relay of a test cluster.
type node struct {
	id    string
	srv   *server.Server
	proxy *splitproxy.Proxy // clients connect through it
}

func (n *node) url() string { return "ws://" + n.proxy.Addr() + "/ws" }

// startNode starts a relay node on the cluster of natsURL.
func startNode(t *testing.T, natsURL, id string, mutate func(*server.Config)) *node {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	cfg := server.Config{
		Listen:       "127.0.0.1:0",
		AdminListen:  server.AdminOff,
		EventLoops:   1,
		CloseTimeout: time.Second,
		Logger:       logger,
		Room:         room.Config{DefaultTickRate: 50, Workers: 1},
		Cluster: cluster.Config{
			NATSURL:  natsURL,
			NodeID:   id,
			LeaseTTL: leaseTTL,
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	n := &node{id: id, srv: srv}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	n.proxy = splitproxy.ForTest(t, srv.Addr(), nil)
	return n
}

// startCluster starts NATS and n nodes, and waits until each sees the
// others.
func startCluster(t *testing.T, count int) (*natsserver.Server, []*node) {
	t.Helper()
	ns := startNATS(t, t.TempDir(), -1)
	nodes := make([]*node, count)
	for i := range nodes {
		nodes[i] = startNode(t, ns.ClientURL(), fmt.Sprintf("n%d", i+1), nil)
	}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.srv.Cluster().PeersSeen() >= count }, waitTimeout, 10*time.Millisecond)
	}
	return ns, nodes
}

// player is a test client in a room: a Session (resume on) that records
// every delivery it gets, in order.
type player struct {
	t    *testing.T
	name string
	s    *client.Session

	mu       sync.Mutex
	got      []string // payloads, in order
	seqs     []uint64
	events   []*pb.RoomEvent
	resyncs  int
	arrived  chan struct{}
	reconns  int
	lastTick uint64
	// sentCount numbers the player's sends.
	sentCount int
}

func joinPlayer(t *testing.T, name, url, roomID string, opts ...func(*client.SessionOptions)) *player {
	t.Helper()
	p, err := tryJoinPlayer(t, name, url, roomID, opts...)
	require.NoError(t, err, "%s joins %s", name, roomID)
	return p
}

// tryJoinPlayer is joinPlayer for other goroutines than the test's: it
// returns the error instead of failing the test.
func tryJoinPlayer(t *testing.T, name, url, roomID string, opts ...func(*client.SessionOptions)) (*player, error) {
	p := &player{t: t, name: name, arrived: make(chan struct{}, 1)}
	o := client.SessionOptions{
		Join: client.JoinOptions{RoomID: roomID, CreateIfMissing: true, Metadata: map[string]string{"name": name}},
		OnFrame: func(f *client.FrameView) {
			p.mu.Lock()
			p.seqs = append(p.seqs, f.Seq)
			p.lastTick = f.Tick
			for _, d := range f.Deliveries {
				p.got = append(p.got, string(d.Payload))
			}
			p.events = append(p.events, f.Events...)
			p.mu.Unlock()
			select {
			case p.arrived <- struct{}{}:
			default:
			}
		},
		OnResync: func(*client.Joined, pb.ResumeFailure) { p.mu.Lock(); p.resyncs++; p.mu.Unlock() },
		OnReconnect: func(*client.Resumed) {
			p.mu.Lock()
			p.reconns++
			p.mu.Unlock()
			select {
			case p.arrived <- struct{}{}:
			default:
			}
		},
		OnDisconnect: func(err error) { t.Logf("%s: disconnected: %v", name, err) },
		ReconnectMin: 20 * time.Millisecond,
		ReconnectMax: 200 * time.Millisecond,
		AckInterval:  50 * time.Millisecond,
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := client.Connect(ctx, url, o)
	if err != nil {
		return nil, fmt.Errorf("%s joins %s: %w", name, roomID, err)
	}
	p.s = s
	t.Cleanup(func() { _ = s.Close() })
	return p, nil
}

// waitFor waits until the player holds at least n deliveries whose
// payload has prefix from sender.
func (p *player) waitCount(pred func(got []string) bool) {
	p.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		p.mu.Lock()
		ok := pred(p.got)
		n := len(p.got)
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-p.arrived:
		case <-deadline:
			p.t.Fatalf("%s: condition not met with %d deliveries", p.name, n)
		}
	}
}

// snapshot returns copies of what the player recorded.
func (p *player) snapshot() (got []string, seqs []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...), append([]uint64(nil), p.seqs...)
}

// balancer stands for a load balancer in front of the nodes: clients
// connect to it, and it sends new connections to one node.
type balancer struct{ p *splitproxy.Proxy }

func newBalancer(t *testing.T, to *node) *balancer {
	return &balancer{p: splitproxy.ForTest(t, to.srv.Addr(), nil)}
}

func (b *balancer) url() string       { return "ws://" + b.p.Addr() + "/ws" }
func (b *balancer) retarget(to *node) { b.p.SetTarget(to.srv.Addr()) }

// waitReconnect waits until the player's session reconnected once.
func (p *player) waitReconnect() {
	p.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		p.mu.Lock()
		n := p.reconns
		p.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-p.arrived:
		case <-deadline:
			p.t.Fatalf("%s: no reconnect", p.name)
		}
	}
}
