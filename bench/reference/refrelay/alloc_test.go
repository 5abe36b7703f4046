//go:build !race

// Under -race sync.Pool drops items on purpose, so allocation counts only
// mean something without it.

package refrelay

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client"
)

// Steady state allocates nothing per delivery: the whole process (server
// and the SDK clients, which allocate nothing per delivery either) makes
// far fewer allocations than it delivers messages. What remains is per
// frame, inside gnet's AsyncWrite (its task), about two per frame.
func TestNoAllocationPerDelivery(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const members = 20
	var delivered atomic.Int64
	clients := make([]*client.Client, members)
	for i := range clients {
		c, err := client.Dial(ctx, "ws://"+s.Addr()+"/ws", client.Options{OnFrame: func(f *client.FrameView) {
			delivered.Add(int64(len(f.Deliveries)))
		}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Join(ctx, client.JoinOptions{RoomID: "alloc", CreateIfMissing: true, Room: client.RoomOptions{MaxPlayers: members}})
		require.NoError(t, err)
		clients[i] = c
	}
	payload := make([]byte, 64)
	round := func(n int) {
		want := delivered.Load() + int64(n*members*(members-1))
		for range n {
			for _, c := range clients {
				require.NoError(t, c.Send(payload, client.SendOptions{}))
			}
			time.Sleep(5 * time.Millisecond) // paced sends, a few per tick: the load's shape, not synchronisation
		}
		require.Eventually(t, func() bool { return delivered.Load() >= want }, 20*time.Second, 5*time.Millisecond)
	}
	round(20) // warm up: buffers grow to their steady size
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	d0 := delivered.Load()
	round(100)
	runtime.ReadMemStats(&m1)
	deliveries := delivered.Load() - d0
	allocs := int64(m1.Mallocs - m0.Mallocs)
	t.Logf("%d deliveries, %d allocations in the process (%.3f per delivery)", deliveries, allocs, float64(allocs)/float64(deliveries))
	require.Less(t, float64(allocs)/float64(deliveries), 0.2)
}
