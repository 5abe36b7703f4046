package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/room"
)

func startTestNode(t *testing.T, url, id string) *Node {
	t.Helper()
	// A TTL no lease can outlive in the test, however loaded the machine:
	// a lapsed lease would let a second node win a race fairly.
	n, err := New(Config{NATSURL: url, NodeID: id, LeaseTTL: time.Minute}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	rooms, err := room.New(room.Config{Hooks: n.Hooks(), Workers: 1})
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

// Nodes racing for the same rooms' leases: every race has exactly one
// winner (the compare-and-set of the leases bucket decides, never a read).
func TestLeaseRacesHaveOneWinner(t *testing.T) {
	t.Parallel()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	require.True(t, ns.ReadyForConnections(10*time.Second))
	t.Cleanup(ns.Shutdown)
	nodes := []*Node{startTestNode(t, ns.ClientURL(), "a"), startTestNode(t, ns.ClientURL(), "b"), startTestNode(t, ns.ClientURL(), "c")}

	const races = 300
	wins := make([]int, races)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range races {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := n.acquire(ctx, fmt.Sprintf("race-%d", i), false)
				cancel()
				if err == nil {
					mu.Lock()
					wins[i]++
					mu.Unlock()
				} else if !errors.Is(err, errTaken) {
					t.Errorf("acquire: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	for i, w := range wins {
		require.Equal(t, 1, w, "race %d", i)
	}
}
