package room_test

import (
	"fmt"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/room"
)

// discardPeer releases every Outbound at once, as a transport whose writes
// complete immediately would.
type discardPeer struct{}

func (discardPeer) Deliver(o *room.Outbound)      { o.Release() }
func (discardPeer) Congested() bool               { return false }
func (discardPeer) Evict(room.EvictCause, string) {}
func (discardPeer) Ready()                        {}
func (discardPeer) JoinRefused(pb.ErrorCode)      {}
func (discardPeer) Address() netip.Addr           { return netip.Addr{} }

// BenchmarkTickBuild measures one tick of a room where every member sends
// one 64-byte message to everyone else: Send (copy into a pooled record),
// the inbox, routing (encode once), building one frame per member and
// handing it over. Reported per delivered message.
func BenchmarkTickBuild(b *testing.B) {
	for _, players := range []int{8, 100} {
		b.Run(fmt.Sprintf("players=%d", players), func(b *testing.B) {
			tb, err := room.NewTickBench(players, 64, discardPeer{})
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				tb.Step()
			}
			b.StopTimer()
			perTick := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perTick/float64(tb.DeliveriesPerStep()), "ns/delivery")
			b.ReportMetric(float64(tb.DeliveriesPerStep()), "deliveries/tick")
		})
	}
}

// TestTickBuildAllocations is the allocation budget of the hot path: in
// steady state a tick allocates nothing, whatever the number of deliveries.
func TestTickBuildAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	for _, players := range []int{8, 100} {
		tb, err := room.NewTickBench(players, 64, discardPeer{})
		require.NoError(t, err)
		// Steady state: the seats' replay rings (never acknowledged here)
		// grow until they hold replay-bytes-per-seat, and the frame pool
		// fills, in the first few hundred ticks.
		for range 2000 {
			tb.Step()
		}
		allocs := testing.AllocsPerRun(50, tb.Step)
		require.Zero(t, allocs, "players=%d: %v allocations per tick of %d deliveries",
			players, allocs, tb.DeliveriesPerStep())
	}
}

// BenchmarkLockstepTick measures one tick of a LOCKSTEP room: every member
// sends one 16-byte Input (copied, queued, slotted), then the tick closes:
// one InputSet encoded once, a lead record per member, one frame per
// member handed over, the log appended. Reported per InputSet delivered.
func BenchmarkLockstepTick(b *testing.B) {
	for _, players := range []int{2, 8, 32} {
		b.Run(fmt.Sprintf("players=%d", players), func(b *testing.B) {
			tb, err := room.NewLockstepBench(players, 16, discardPeer{})
			require.NoError(b, err)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				tb.Step()
			}
			b.StopTimer()
			perTick := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perTick/float64(players), "ns/inputset")
		})
	}
}

// TestLockstepTickAllocations: in steady state a lockstep tick allocates
// nothing either.
func TestLockstepTickAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	for _, players := range []int{2, 32} {
		tb, err := room.NewLockstepBench(players, 16, discardPeer{})
		require.NoError(t, err)
		allocs := testing.AllocsPerRun(200, tb.Step)
		require.Zero(t, allocs, "players=%d: %v allocations per tick", players, allocs)
	}
}
