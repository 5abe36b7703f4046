package server

import (
	"math/rand"

	"golang.org/x/time/rate"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// The Error before close 4003 carries the limiter's real retry hint, as the
// RATE_LIMITED answers before it do: a client that backs off by it does not
// come back too early.
func TestRateLimitCloseCarriesRetryHint(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.RateLimits.MessagesPerSecond = 5
		c.RateLimits.MessageBurst = 5
		c.RateLimits.Grace = 300 * time.Millisecond
	})
	r := dialRaw(t, srv)
	r.upgrade()
	msg := clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("x")}}}), false)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.nc.Write(msg); err != nil {
				return
			}
		}
	}()
	code, errMsg := r.expectClose()
	require.Equal(t, 4003, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, errMsg.GetCode())
	require.Positive(t, errMsg.GetRetryAfterMs(), "the close's Error says when to come back")
	require.LessOrEqual(t, errMsg.GetRetryAfterMs(), uint32(60_000))
}

// Buckets made only once a message comes before the last one's tokens are
// back, with that one replayed, take the decisions that buckets made at the
// upgrade would: over random traffic (bursts, pauses, pings, a reload that
// changes the limits) the two agree on every message.
func TestLazyBucketsDecideAsEagerOnes(t *testing.T) {
	t.Parallel()
	made, reloadedLazy, mostLazy := 0, 0, 0
	for seed := int64(1); seed <= 100; seed++ {
		rng := rand.New(rand.NewSource(seed))
		pol := &livePolicy{gen: 1, rate: RateLimits{MessagesPerSecond: 20, MessageBurst: 1 + rng.Intn(10), BytesPerSecond: 4000, ByteBurst: 6000}}
		now := time.Unix(1_700_000_000, 0)
		eagerMsgs := rate.NewLimiter(rate.Limit(pol.rate.MessagesPerSecond), pol.rate.MessageBurst)
		eagerBytes := rate.NewLimiter(rate.Limit(pol.rate.BytesPerSecond), pol.rate.ByteBurst)
		var lazy connLimits
		lazyFor := 0 // messages decided without buckets
		// Some connections pause long enough between messages to stay
		// without buckets for a while, some do not.
		maxGap, maxSize := 150+rng.Intn(3000), 1+rng.Intn(3000)
		reloadAt := 2 + rng.Intn(200)
		for i := range 400 {
			now = now.Add(time.Duration(rng.Intn(maxGap)) * time.Millisecond)
			if i == reloadAt {
				// A reload: connections apply it at their next message, as
				// the upgrade-time buckets did.
				if lazy.b == nil {
					reloadedLazy++
				}
				burst := 1 + rng.Intn(10)
				pol = &livePolicy{gen: 2, rate: RateLimits{MessagesPerSecond: 5, MessageBurst: burst, BytesPerSecond: 1000, ByteBurst: 6000}, prev: pol}
				eagerMsgs.SetLimitAt(now, 5)
				eagerMsgs.SetBurstAt(now, burst)
				eagerBytes.SetLimitAt(now, 1000)
			}
			if rng.Intn(5) == 0 {
				want := eagerMsgs.AllowN(now, 1)
				require.Equal(t, want, lazy.allowControl(pol, now), "seed %d ping %d", seed, i)
				continue
			}
			size := rng.Intn(maxSize)
			want := eagerMsgs.AllowN(now, 1) && eagerBytes.AllowN(now, size)
			got := lazy.admit(pol, now, size)
			require.Equal(t, want, got == rateAllow, "seed %d message %d", seed, i)
			if lazy.b == nil {
				lazyFor++
			}
		}
		if lazy.b != nil {
			made++
		}
		mostLazy = max(mostLazy, lazyFor)
	}
	require.Positive(t, made, "some connections made their buckets")
	require.Greater(t, mostLazy, 20, "some went without buckets for many messages")
	require.Positive(t, reloadedLazy, "some saw the reload without buckets")
}

// A reload between two messages of a connection without buckets: the
// buckets it then makes start from the limits its last message was
// admitted under and take the new ones at this message, as upgrade-time
// buckets would.
func TestLazyBucketsAcrossAReload(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name          string
		before, after RateLimits
		gap           time.Duration // between the message before the reload and the one after
	}{
		{"the new limits are tighter", RateLimits{MessagesPerSecond: 10, MessageBurst: 2, BytesPerSecond: 1 << 20, ByteBurst: 1 << 20},
			RateLimits{MessagesPerSecond: 1, MessageBurst: 5, BytesPerSecond: 1 << 20, ByteBurst: 1 << 20}, 50 * time.Millisecond},
		{"the new limits are looser", RateLimits{MessagesPerSecond: 1, MessageBurst: 1, BytesPerSecond: 1 << 20, ByteBurst: 1 << 20},
			RateLimits{MessagesPerSecond: 100, MessageBurst: 1, BytesPerSecond: 1 << 20, ByteBurst: 1 << 20}, 100 * time.Millisecond},
	} {
		pol := &livePolicy{gen: 1, rate: c.before}
		eager := rate.NewLimiter(rate.Limit(c.before.MessagesPerSecond), c.before.MessageBurst)
		var lazy connLimits
		now := time.Unix(1_700_000_000, 0)
		require.Equal(t, eager.AllowN(now, 1), lazy.admit(pol, now, 1) == rateAllow, c.name)
		now = now.Add(c.gap)
		pol = &livePolicy{gen: 2, rate: c.after, prev: pol}
		eager.SetLimitAt(now, rate.Limit(c.after.MessagesPerSecond))
		eager.SetBurstAt(now, c.after.MessageBurst)
		for i := range 10 {
			require.Equal(t, eager.AllowN(now, 1), lazy.admit(pol, now, 1) == rateAllow, "%s: message %d after the reload", c.name, i)
			now = now.Add(20 * time.Millisecond)
		}
	}
}

// A player sending at a game's pace, and an idle one acknowledging its
// frames, never come near their limits: they make no buckets.
func TestSteadySendersMakeNoBuckets(t *testing.T) {
	t.Parallel()
	pol := &livePolicy{gen: 1, rate: RateLimits{}.withDefaults(64 << 10)}
	for _, c := range []struct {
		name  string
		every time.Duration
		size  int
	}{
		{"20 updates a second", 50 * time.Millisecond, 200},
		{"60 updates a second", time.Second / 60, 100},
		{"acks of an idle player", 250 * time.Millisecond, 4},
	} {
		var l connLimits
		now := time.Unix(1_700_000_000, 0)
		for range 1000 {
			require.Equal(t, rateAllow, l.admit(pol, now, c.size), c.name)
			now = now.Add(c.every)
		}
		require.Nil(t, l.b, c.name)
	}
}

// An idle connection (one Join, then nothing) never makes its buckets.
func TestFirstMessageMakesNoBuckets(t *testing.T) {
	t.Parallel()
	pol := &livePolicy{gen: 1, rate: RateLimits{}.withDefaults(64 << 10)}
	var l connLimits
	require.Equal(t, rateAllow, l.admit(pol, time.Now(), 64<<10))
	require.Nil(t, l.b)
	require.Zero(t, l.retryAfter(pol, time.Now(), 1))
	require.Equal(t, rateAllow, l.admit(pol, time.Now(), 10))
	require.NotNil(t, l.b, "a message right after it does")
}
