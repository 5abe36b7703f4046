package iplimit_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/iplimit"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func newLimiter(t testing.TB, cfg iplimit.Config) *iplimit.Limiter {
	t.Helper()
	l, err := iplimit.New(cfg)
	require.NoError(t, err)
	return l
}

// off turns every limit off; tests then set the ones they exercise.
func off() iplimit.Config {
	return iplimit.Config{MaxConnsPerIP: -1, HandshakesPerSecond: -1, JoinsPerSecond: -1, FailedJoinsPerMinute: -1}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  iplimit.Config
		want string
	}{
		{iplimit.Config{Lockout: -time.Second}, "negative Lockout"},
		{iplimit.Config{MaxTracked: -1}, "MaxTracked"},
		{iplimit.Config{IPv6PrefixBits: 129}, "IPv6PrefixBits"},
		{iplimit.Config{IPv6PrefixBits: -64}, "IPv6PrefixBits"},
		{iplimit.Config{HandshakeBurst: -1}, "HandshakeBurst"},
		{iplimit.Config{JoinBurst: -2}, "JoinBurst"},
		{iplimit.Config{HandshakesPerSecond: nan()}, "HandshakesPerSecond"},
		{iplimit.Config{Exempt: []netip.Prefix{{}}}, "invalid Exempt"},
	} {
		_, err := iplimit.New(tc.cfg)
		require.ErrorContains(t, err, "iplimit: invalid config: "+tc.want)
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestDefaults(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, iplimit.Config{})
	a := ip("203.0.113.5")
	for i := range iplimit.DefaultMaxConnsPerIP {
		require.True(t, l.OpenConn(a), "connection %d", i)
	}
	require.False(t, l.OpenConn(a))

	// Burst: 4 seconds of the default rate.
	for i := range 4 * iplimit.DefaultHandshakesPerSecond {
		ok, _ := l.AllowHandshake(a, t0)
		require.True(t, ok, "handshake %d", i)
	}
	ok, retry := l.AllowHandshake(a, t0)
	require.False(t, ok)
	require.Equal(t, time.Second/iplimit.DefaultHandshakesPerSecond, retry)

	for i := range 4 * iplimit.DefaultJoinsPerSecond {
		ok, _ := l.AllowJoin(a, t0)
		require.True(t, ok, "join %d", i)
	}
	ok, _ = l.AllowJoin(a, t0)
	require.False(t, ok)

	b := ip("198.51.100.1")
	for i := range iplimit.DefaultFailedJoinsPerMinute {
		require.False(t, l.JoinFailed(b, t0), "failure %d", i)
	}
	require.True(t, l.JoinFailed(b, t0))
	locked, left := l.LockedOut(b, t0)
	require.True(t, locked)
	require.Equal(t, iplimit.DefaultLockout, left)
}

func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.MaxConnsPerIP = 2
	l := newLimiter(t, cfg)
	a, b := ip("203.0.113.5"), ip("203.0.113.6")
	require.True(t, l.OpenConn(a))
	require.True(t, l.OpenConn(a))
	require.False(t, l.OpenConn(a), "third connection of a")
	require.True(t, l.OpenConn(b), "b has its own limit")
	l.CloseConn(a)
	require.True(t, l.OpenConn(a), "a slot was released")
	require.False(t, l.OpenConn(a))
	require.Equal(t, uint64(2), l.Stats().RefusedConns)

	// More closes than opens never make room beyond the limit.
	for range 5 {
		l.CloseConn(b)
	}
	l.CloseConn(ip("192.0.2.200")) // never opened
	require.True(t, l.OpenConn(b))
	require.True(t, l.OpenConn(b))
	require.False(t, l.OpenConn(b))
}

func TestHandshakeRateIsDeterministic(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.HandshakesPerSecond, cfg.HandshakeBurst = 2, 3
	l := newLimiter(t, cfg)
	a := ip("203.0.113.5")
	for range 3 {
		ok, retry := l.AllowHandshake(a, t0)
		require.True(t, ok)
		require.Zero(t, retry)
	}
	ok, retry := l.AllowHandshake(a, t0)
	require.False(t, ok)
	require.Equal(t, 500*time.Millisecond, retry, "one token every 500ms")

	ok, retry = l.AllowHandshake(a, t0.Add(200*time.Millisecond))
	require.False(t, ok)
	require.Equal(t, 300*time.Millisecond, retry)

	ok, _ = l.AllowHandshake(a, t0.Add(500*time.Millisecond))
	require.True(t, ok, "the token is due")
	ok, _ = l.AllowHandshake(a, t0.Add(500*time.Millisecond))
	require.False(t, ok)

	// A long pause refills to the burst, not beyond.
	later := t0.Add(time.Hour)
	for range 3 {
		ok, _ := l.AllowHandshake(a, later)
		require.True(t, ok)
	}
	ok, _ = l.AllowHandshake(a, later)
	require.False(t, ok)
	require.Equal(t, uint64(4), l.Stats().RefusedHandshakes)

	// A clock that steps back does not mint tokens.
	ok, _ = l.AllowHandshake(a, t0)
	require.False(t, ok)
	ok, _ = l.AllowHandshake(a, later)
	require.False(t, ok, "nor does it rewind the bucket")
}

func TestJoinRateAndLockout(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.JoinsPerSecond, cfg.JoinBurst = 1, 5
	cfg.FailedJoinsPerMinute, cfg.Lockout = 3, 10*time.Second
	l := newLimiter(t, cfg)
	a := ip("203.0.113.5")

	now := t0
	for i := range 3 {
		ok, _ := l.AllowJoin(a, now)
		require.True(t, ok)
		require.False(t, l.JoinFailed(a, now), "failure %d is within the budget", i)
	}
	ok, _ := l.AllowJoin(a, now)
	require.True(t, ok)
	require.True(t, l.JoinFailed(a, now), "the fourth failure locks out")

	ok, retry := l.AllowJoin(a, now.Add(4*time.Second))
	require.False(t, ok)
	require.Equal(t, 6*time.Second, retry)
	locked, left := l.LockedOut(a, now.Add(4*time.Second))
	require.True(t, locked)
	require.Equal(t, 6*time.Second, left)
	require.True(t, l.JoinFailed(a, now.Add(5*time.Second)), "a late failure during the lockout")
	other := ip("203.0.113.6")
	ok, _ = l.AllowJoin(other, now)
	require.True(t, ok, "other addresses are not affected")

	now = now.Add(10 * time.Second)
	locked, _ = l.LockedOut(a, now)
	require.False(t, locked)
	ok, _ = l.AllowJoin(a, now)
	require.True(t, ok, "lockout over")
	// 10s refilled half a failure (3 per minute): the next failure locks again.
	require.True(t, l.JoinFailed(a, now))

	s := l.Stats()
	require.Equal(t, uint64(2), s.Lockouts)
	require.Equal(t, uint64(1), s.RefusedLockedOut)
	require.Zero(t, s.RefusedJoins)

	// The join rate itself: burst 5, then 1 per second.
	b := ip("198.51.100.9")
	for range 5 {
		ok, _ := l.AllowJoin(b, t0)
		require.True(t, ok)
	}
	ok, retry = l.AllowJoin(b, t0)
	require.False(t, ok)
	require.Equal(t, time.Second, retry)
	require.Equal(t, uint64(1), l.Stats().RefusedJoins)
}

func TestSustainedFailuresAreBounded(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.FailedJoinsPerMinute, cfg.Lockout = 30, time.Minute
	l := newLimiter(t, cfg)
	a := ip("203.0.113.5")
	// A guesser that tries every 100ms for an hour, respecting nothing.
	attempts := 0
	for now := t0; now.Before(t0.Add(time.Hour)); now = now.Add(100 * time.Millisecond) {
		if ok, _ := l.AllowJoin(a, now); ok {
			attempts++
			l.JoinFailed(a, now)
		}
	}
	// 30 of budget, then 30 a minute, plus the one failure that starts
	// each lockout: far fewer than the 36,000 tries made.
	require.LessOrEqual(t, attempts, 30+60*30+61)
	require.GreaterOrEqual(t, attempts, 60*30/2, "the budget still refills")
}

func TestLimitsOff(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, off())
	a := ip("203.0.113.5")
	for range 1000 {
		require.True(t, l.OpenConn(a))
		ok, _ := l.AllowHandshake(a, t0)
		require.True(t, ok)
		ok, _ = l.AllowJoin(a, t0)
		require.True(t, ok)
		require.False(t, l.JoinFailed(a, t0))
	}
	locked, _ := l.LockedOut(a, t0)
	require.False(t, locked)
	require.Zero(t, l.Stats().Tracked, "nothing to remember")
}

func TestAddressNormalisation(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.MaxConnsPerIP = 1
	l := newLimiter(t, cfg)

	require.True(t, l.OpenConn(ip("203.0.113.5")))
	require.False(t, l.OpenConn(ip("::ffff:203.0.113.5")), "IPv4-mapped is the same address")
	require.True(t, l.OpenConn(ip("203.0.113.6")), "IPv4 is never grouped")

	require.True(t, l.OpenConn(ip("2001:db8:1:2::1")))
	require.False(t, l.OpenConn(ip("2001:db8:1:2:ffff::9")), "same /64")
	require.False(t, l.OpenConn(ip("2001:db8:1:2::1%eth0")), "zone dropped")
	require.True(t, l.OpenConn(ip("2001:db8:1:3::1")), "next /64")
	l.CloseConn(ip("2001:db8:1:2:aaaa::1"))
	require.True(t, l.OpenConn(ip("2001:db8:1:2::77")), "released by any address of the /64")

	for range 10 {
		require.True(t, l.OpenConn(netip.Addr{}), "the zero Addr is never limited")
	}

	cfg.IPv6PrefixBits = 128
	per := newLimiter(t, cfg)
	require.True(t, per.OpenConn(ip("2001:db8::1")))
	require.True(t, per.OpenConn(ip("2001:db8::2")), "/128: every address on its own")
	require.False(t, per.OpenConn(ip("2001:db8::2")))

	cfg.IPv6PrefixBits = 48
	wide := newLimiter(t, cfg)
	require.True(t, wide.OpenConn(ip("2001:db8:1:2::1")))
	require.False(t, wide.OpenConn(ip("2001:db8:1:ffff::1")), "same /48")
}

func TestExempt(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.MaxConnsPerIP = 1
	cfg.HandshakesPerSecond, cfg.HandshakeBurst = 1, 1
	cfg.Exempt = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("::ffff:198.51.100.7/128"),
		netip.MustParsePrefix("2001:db8:5::/48")}
	l := newLimiter(t, cfg)
	for _, a := range []string{"192.0.2.9", "::ffff:192.0.2.9", "198.51.100.7", "2001:db8:5::1"} {
		for range 5 {
			require.True(t, l.OpenConn(ip(a)), a)
			ok, _ := l.AllowHandshake(ip(a), t0)
			require.True(t, ok, a)
		}
	}
	require.Zero(t, l.Stats().Tracked)
	require.True(t, l.OpenConn(ip("198.51.100.8")))
	require.False(t, l.OpenConn(ip("198.51.100.8")), "outside the exempt prefixes")
}

func TestMaxTrackedFailsOpen(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.MaxConnsPerIP = 1
	cfg.HandshakesPerSecond, cfg.HandshakeBurst = 1, 1
	cfg.MaxTracked = 10
	l := newLimiter(t, cfg)
	addr := func(i int) netip.Addr { return ip(fmt.Sprintf("10.0.%d.%d", i/256, i%256)) }
	for i := range 10 {
		require.True(t, l.OpenConn(addr(i)))
	}
	require.Equal(t, 10, l.Stats().Tracked)

	// The table is full: new addresses pass, unlimited and counted.
	for range 3 {
		require.True(t, l.OpenConn(addr(100)))
		ok, _ := l.AllowHandshake(addr(100), t0)
		require.True(t, ok)
	}
	s := l.Stats()
	require.Equal(t, 10, s.Tracked, "the bound holds")
	require.Equal(t, uint64(6), s.Untracked)
	// Known addresses keep their limits.
	require.False(t, l.OpenConn(addr(3)))

	// Connections end, Sweep forgets, room for newcomers again.
	for i := range 10 {
		l.CloseConn(addr(i))
	}
	require.Equal(t, 10, l.Sweep(t0))
	require.Zero(t, l.Stats().Tracked)
	require.True(t, l.OpenConn(addr(100)))
	require.False(t, l.OpenConn(addr(100)), "tracked now")
}

func TestMaxTrackedUnderConcurrency(t *testing.T) {
	t.Parallel()
	cfg := off()
	cfg.HandshakesPerSecond = 1
	cfg.MaxTracked = 100
	l := newLimiter(t, cfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				l.AllowHandshake(ip(fmt.Sprintf("10.%d.%d.1", g, i)), t0)
			}
		})
	}
	wg.Wait()
	s := l.Stats()
	require.Equal(t, 100, s.Tracked)
	require.Equal(t, uint64(8*200-100), s.Untracked)
}

func TestSweepForgetsOnlyWhatIsIdle(t *testing.T) {
	t.Parallel()
	cfg := iplimit.Config{
		MaxConnsPerIP:       4,
		HandshakesPerSecond: 1, HandshakeBurst: 2,
		JoinsPerSecond: 1, JoinBurst: 2,
		FailedJoinsPerMinute: 1, Lockout: time.Minute,
	}
	l := newLimiter(t, cfg)
	conn, hs, join, locked, fresh := ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3"), ip("192.0.2.4"), ip("192.0.2.5")
	require.True(t, l.OpenConn(conn))
	l.AllowHandshake(hs, t0)
	l.AllowJoin(join, t0)
	l.JoinFailed(locked, t0)
	l.JoinFailed(locked, t0) // locked until t0+1m
	l.AllowHandshake(fresh, t0)
	l.AllowHandshake(fresh, t0.Add(-time.Hour)) // an old clock reading changes nothing
	require.Equal(t, 5, l.Stats().Tracked)

	require.Zero(t, l.Sweep(t0), "everyone has state at t0")
	require.Equal(t, 3, l.Sweep(t0.Add(2*time.Second)), "buckets refilled: hs, join, fresh")
	require.Equal(t, 2, l.Stats().Tracked)
	require.Zero(t, l.Sweep(t0.Add(59*time.Second)), "still locked out; connection open")
	require.Equal(t, 1, l.Sweep(t0.Add(time.Minute)), "lockout over and its failure budget full")
	l.CloseConn(conn)
	require.Equal(t, 1, l.Sweep(t0.Add(time.Minute)))
	s := l.Stats()
	require.Zero(t, s.Tracked)
	require.Equal(t, uint64(5), s.Swept)

	// Forgotten addresses start afresh, exactly as if they had been kept.
	ok, _ := l.AllowHandshake(hs, t0.Add(time.Minute))
	require.True(t, ok)
}

// TestConcurrentUse runs every method from many goroutines on overlapping
// addresses (under -race in make test) and checks the connection counts add
// up exactly.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	const (
		goroutines = 8
		perG       = 30
		limit      = 100
	)
	cfg := iplimit.Config{MaxConnsPerIP: limit, HandshakesPerSecond: 1000, JoinsPerSecond: 1000}
	l := newLimiter(t, cfg)
	shared := ip("203.0.113.1")
	opened := make(chan int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			n := 0
			own := ip(fmt.Sprintf("198.51.100.%d", g))
			for i := range perG {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				if l.OpenConn(shared) {
					n++
				}
				require.True(t, l.OpenConn(own))
				l.AllowHandshake(shared, now)
				l.AllowJoin(shared, now)
				if i%10 == 0 {
					l.JoinFailed(own, now)
				}
				l.LockedOut(shared, now)
				l.Stats()
				if i%7 == 0 {
					l.Sweep(now)
				}
				l.CloseConn(own)
			}
			opened <- n
		})
	}
	wg.Wait()
	close(opened)
	total := 0
	for n := range opened {
		total += n
	}
	require.Equal(t, min(limit, goroutines*perG), total, "exactly the limit of the shared address")
	require.Equal(t, uint64(goroutines*perG-limit), l.Stats().RefusedConns)
	for range total {
		l.CloseConn(shared)
	}
	l.Sweep(t0.Add(time.Hour))
	require.Zero(t, l.Stats().Tracked)
}
