package cluster_test

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/cluster"
	"github.com/tickrelay/tickrelay/internal/splitproxy"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server"
)

// helperEnv, set, makes TestHelperNode run a relay node in this process
// (a child of a test), for faults only a process can have: SIGKILL and
// SIGSTOP.
const helperEnv = "TICKRELAY_CLUSTER_HELPER"

// TestHelperNode is not a test: it is the body of a child process (see
// startProcessNode). It serves until it is killed, and prints the relay's
// address first.
func TestHelperNode(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("only runs as a child process of the cluster's process tests")
	}
	natsURL, id, _ := strings.Cut(spec, " ")
	srv, err := server.New(server.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: server.AdminOff,
		EventLoops:  1,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		Room:        room.Config{DefaultTickRate: 50, Workers: 1},
		Cluster:     cluster.Config{NATSURL: natsURL, NodeID: id, LeaseTTL: leaseTTL},
	})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if err := srv.Start(); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("listening", srv.Addr())
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM)
	<-stop
	os.Exit(0)
}

// processNode is a relay node in a child process.
type processNode struct {
	cmd  *exec.Cmd
	addr string
}

// startProcessNode starts a node in a child process (this test binary,
// running TestHelperNode) and waits for it to listen.
func startProcessNode(t *testing.T, natsURL, id string) *processNode {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperNode$", "-test.v=false")
	cmd.Env = append(os.Environ(), helperEnv+"="+natsURL+" "+id)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &processNode{cmd: cmd}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening ") || strings.HasPrefix(sc.Text(), "error ") {
				lines <- sc.Text()
			}
		}
	}()
	select {
	case l := <-lines:
		addr, ok := strings.CutPrefix(l, "listening ")
		require.True(t, ok, "the child node failed: %s", l)
		p.addr = addr
	case <-time.After(waitTimeout):
		t.Fatal("the child node did not start")
	}
	return p
}

// startProcessCluster is a cluster of three on one NATS server: node n1 in
// a child process (so that it can be killed or paused), n2 and n3 in this
// one; it returns once every node has seen the others.
func startProcessCluster(t *testing.T) (owner *processNode, nodes []*node) {
	t.Helper()
	ns := startNATS(t, t.TempDir(), -1)
	owner = startProcessNode(t, ns.ClientURL(), "n1")
	nodes = []*node{startNode(t, ns.ClientURL(), "n2", nil), startNode(t, ns.ClientURL(), "n3", nil)}
	for _, n := range nodes {
		require.Eventually(t, func() bool { return n.srv.Cluster().PeersSeen() >= 3 }, waitTimeout, 10*time.Millisecond)
	}
	return owner, nodes
}

// The owner's process is killed (SIGKILL: no goodbye of any kind): as with
// an in-process crash, the players on the other nodes keep going without a
// reconnect and lose nothing.
func TestClusterOwnerProcessKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	owner, nodes := startProcessCluster(t)
	lb := &balancer{p: splitproxy.ForTest(t, owner.addr, nil)}
	p1 := joinPlayer(t, "p1", lb.url(), "sigkill")
	p2 := joinPlayer(t, "p2", nodes[0].url(), "sigkill")
	p3 := joinPlayer(t, "p3", nodes[1].url(), "sigkill")
	require.Equal(t, "n1", nodes[0].srv.Cluster().Owner("sigkill"))
	stop2 := streamFrom(p2, 5*time.Millisecond)
	stop3 := streamFrom(p3, 5*time.Millisecond)
	waitAll(t, p3, "p2", 20)

	killed := time.Now()
	require.NoError(t, owner.cmd.Process.Signal(syscall.SIGKILL))
	lb.retarget(nodes[0])
	p2.mu.Lock()
	before := len(fromSender(p2.got, "p3"))
	p2.mu.Unlock()
	waitAll(t, p2, "p3", before+50)
	t.Logf("blackout after SIGKILL: at most %v", time.Since(killed))
	sent2, sent3 := stop2(), stop3()
	waitAll(t, p3, "p2", sent2)
	waitAll(t, p2, "p3", sent3)
	checkExact(t, p3, "p2", sent2)
	checkExact(t, p2, "p3", sent3)
	for _, p := range []*player{p2, p3} {
		require.Zero(t, p.s.Stats().Reconnects, p.name)
	}
	p1.waitReconnect()
}

// The owner's process is paused (SIGSTOP) for longer than its lease: a
// surviving node takes the room over. When the zombie wakes (SIGCONT) it
// must not speak for the room any more: nothing it sends reaches a player,
// and the players on the other nodes lose nothing and see nothing twice.
func TestClusterOwnerProcessPaused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Parallel()
	owner, nodes := startProcessCluster(t)
	joinPlayer(t, "p1", "ws://"+owner.addr+"/ws", "sigstop") // makes n1 the owner
	p2 := joinPlayer(t, "p2", nodes[0].url(), "sigstop")
	p3 := joinPlayer(t, "p3", nodes[1].url(), "sigstop")
	require.Equal(t, "n1", nodes[0].srv.Cluster().Owner("sigstop"))
	stop2 := streamFrom(p2, 5*time.Millisecond)
	stop3 := streamFrom(p3, 5*time.Millisecond)
	waitAll(t, p3, "p2", 20)

	require.NoError(t, owner.cmd.Process.Signal(syscall.SIGSTOP))
	require.Eventually(t, func() bool {
		o := nodes[0].srv.Cluster().Owner("sigstop")
		return o == "n2" || o == "n3"
	}, waitTimeout, 10*time.Millisecond, "a surviving node takes the room over")
	p2.mu.Lock()
	before := len(fromSender(p2.got, "p3"))
	p2.mu.Unlock()
	waitAll(t, p2, "p3", before+50)
	require.NoError(t, owner.cmd.Process.Signal(syscall.SIGCONT))
	// Let the zombie run a while (its ticks, its lease loop) while the
	// room goes on: the stream below spans its wake-up.
	p2.mu.Lock()
	before = len(fromSender(p2.got, "p3"))
	p2.mu.Unlock()
	waitAll(t, p2, "p3", before+100)
	sent2, sent3 := stop2(), stop3()
	waitAll(t, p3, "p2", sent2)
	waitAll(t, p2, "p3", sent3)
	checkExact(t, p3, "p2", sent2)
	checkExact(t, p2, "p3", sent3)
	for _, p := range []*player{p2, p3} {
		require.Zero(t, p.s.Stats().Reconnects, p.name)
	}
	var stale uint64
	for _, n := range nodes {
		stale += n.srv.Cluster().Stats().StaleDropped
	}
	t.Logf("downlinks of the zombie dropped as stale: %d", stale)
}
