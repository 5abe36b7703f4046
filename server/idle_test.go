package server

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// The tests of what keeps an idle connection small (bench S3): the packed
// flags, the registry's slices, the outbox letting its slices go, the
// reused Join.

func TestConnFlagsBehaveLikeAtomicBools(t *testing.T) {
	t.Parallel()
	var c conn
	flags := []connFlag{c.closing(), c.failing(), c.forfeitSeat(), c.answered(), c.held(), c.outHeld(), c.refreshing()}
	want := make([]bool, len(flags))
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		i := rng.IntN(len(flags))
		old, nw := rng.IntN(2) == 1, rng.IntN(2) == 1
		switch rng.IntN(3) {
		case 0:
			flags[i].Store(nw)
			want[i] = nw
		case 1:
			swapped := flags[i].CompareAndSwap(old, nw)
			require.Equal(t, want[i] == old, swapped, "CompareAndSwap(%v, %v) on %v", old, nw, want[i])
			if swapped {
				want[i] = nw
			}
		}
		for j, f := range flags {
			require.Equal(t, want[j], f.Load(), "flag %d", j)
		}
	}
}

func TestRegistryTracksAddsAndRemoves(t *testing.T) {
	t.Parallel()
	var r registry
	live := map[*conn]int{} // conn -> fd
	rng := rand.New(rand.NewPCG(3, 4))
	fd := 0
	for range 5000 {
		if len(live) == 0 || rng.IntN(3) > 0 {
			fd++
			c := new(conn)
			r.add(fd, c)
			live[c] = fd
		} else {
			for c, f := range live { // any one
				r.remove(f, c)
				r.remove(f, c) // twice: ignored
				delete(live, c)
				break
			}
		}
	}
	r.remove(1, new(conn)) // never added: ignored
	seen := map[*conn]bool{}
	r.each(func(c *conn) {
		require.False(t, seen[c], "each gives a connection once")
		seen[c] = true
	})
	require.Len(t, seen, len(live))
	for c := range live {
		require.True(t, seen[c])
	}
}

func TestOutboxLetsIdleSlicesGo(t *testing.T) {
	t.Parallel()
	c := &conn{loop: &loopScratch{srv: &Server{cfg: Config{OutboundHardBytes: 1 << 20}}}}
	c.out.init(c)
	ok, _, _ := c.out.push([]byte("frame"), nil)
	require.True(t, ok)
	c.out.giveBack(c.out.take()) // written
	c.out.trimIdle()
	require.NotNil(t, c.out.items, "a frame since the last sweep: kept")
	c.out.trimIdle()
	require.Nil(t, c.out.items, "nothing since the last sweep: let go")
	require.Nil(t, c.out.spare)

	ok, _, _ = c.out.push([]byte("frame"), nil)
	require.True(t, ok)
	c.out.trimIdle()
	c.out.trimIdle()
	require.Len(t, c.out.items, 1, "a frame waiting is never let go")
}

// The loop's reused Join decodes every Join as proto.Unmarshal does (an
// absent options message reads as empty ones), whatever the Join before it
// held.
func TestReusedJoinDecodesLikeUnmarshal(t *testing.T) {
	t.Parallel()
	joins := []*pb.Join{
		{RoomId: "a", CreateIfMissing: true, PlayerMetadata: map[string]string{"name": "ann"}, AuthToken: "tok",
			Options: &pb.RoomOptions{MaxPlayers: 3, TickRate: 20, Metadata: map[string]string{"mode": "ctf"},
				Mode: pb.RoomMode_ROOM_MODE_LOCKSTEP, Lockstep: &pb.LockstepOptions{ToleranceMs: 40}}},
		{RoomId: "b"},
		{Options: &pb.RoomOptions{Immediate: true}},
		{},
		{RoomId: "c", PlayerMetadata: map[string]string{"x": "y"}, Options: &pb.RoomOptions{SeatGraceMs: 500}},
	}
	var l loopScratch
	for i, want := range joins {
		b, err := proto.Marshal(want)
		require.NoError(t, err)
		got := l.resetJoin()
		require.NoError(t, (proto.UnmarshalOptions{Merge: true}).Unmarshal(b, got))
		norm := proto.CloneOf(want)
		if norm.Options == nil {
			norm.Options = &pb.RoomOptions{}
		}
		require.True(t, proto.Equal(norm, got), "join %d: got %v", i, got)
	}
}
