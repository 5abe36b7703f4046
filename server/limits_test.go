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

// Buckets made at the second message, with the first replayed, take the
// decisions that buckets made at the upgrade would: over random traffic
// (bursts, pauses, pings, a reload that lowers the limits) the two agree on
// every message.
func TestLazyBucketsDecideAsEagerOnes(t *testing.T) {
	t.Parallel()
	for seed := int64(1); seed <= 50; seed++ {
		rng := rand.New(rand.NewSource(seed))
		pol := &livePolicy{gen: 1, rate: RateLimits{MessagesPerSecond: 20, MessageBurst: 1 + rng.Intn(10), BytesPerSecond: 4000, ByteBurst: 6000}}
		now := time.Unix(1_700_000_000, 0)
		eagerMsgs := rate.NewLimiter(rate.Limit(pol.rate.MessagesPerSecond), pol.rate.MessageBurst)
		eagerBytes := rate.NewLimiter(rate.Limit(pol.rate.BytesPerSecond), pol.rate.ByteBurst)
		var lazy connLimits
		for i := range 400 {
			now = now.Add(time.Duration(rng.Intn(150)) * time.Millisecond)
			if i == 200 {
				// A reload: connections apply it at their next message, as
				// the upgrade-time buckets did.
				pol = &livePolicy{gen: 2, rate: RateLimits{MessagesPerSecond: 5, MessageBurst: 3, BytesPerSecond: 1000, ByteBurst: 6000}}
				eagerMsgs.SetLimitAt(now, 5)
				eagerMsgs.SetBurstAt(now, 3)
				eagerBytes.SetLimitAt(now, 1000)
			}
			if rng.Intn(5) == 0 {
				want := eagerMsgs.AllowN(now, 1)
				require.Equal(t, want, lazy.allowControl(pol, now), "seed %d ping %d", seed, i)
				continue
			}
			size := rng.Intn(3000)
			want := eagerMsgs.AllowN(now, 1) && eagerBytes.AllowN(now, size)
			got := lazy.admit(pol, now, size)
			require.Equal(t, want, got == rateAllow, "seed %d message %d", seed, i)
		}
		require.NotNil(t, lazy.b, "seed %d: the buckets were made", seed)
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
	require.NotNil(t, l.b)
}
