package iplimit

import (
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// numShards splits the table so that event loops working on different
// addresses rarely wait for one another. A power of two.
const numShards = 64

// Limiter applies per-address limits. It is safe for concurrent use; every
// method holds one shard's mutex for a map lookup and a few arithmetic
// operations, never for I/O, so it may be called from event loops. Methods
// taking a time use it instead of the clock, which makes them
// deterministic to test; pass time.Now() in production.
//
// Addresses are normalised before use: IPv4-mapped IPv6 becomes IPv4,
// zones are dropped, IPv6 is grouped by Config.IPv6PrefixBits. The zero
// Addr (a peer with no IP, such as a Unix socket) and Config.Exempt
// addresses are never limited.
type Limiter struct {
	lim     limits
	seed    maphash.Seed
	shards  [numShards]shard
	tracked atomic.Int64
	stats   counters
}

type shard struct {
	mu sync.Mutex
	m  map[netip.Addr]*entry
	_  [64 - 16]byte // keep neighbouring shards' mutexes off one cache line
}

// entry is one address's state. Buckets are created on first use, so an
// address that only connects costs no join buckets.
type entry struct {
	conns       int
	lockedUntil time.Time
	// seen is the latest time passed in for this address. Earlier times
	// (callers on several goroutines read the clock before taking the
	// lock, in any order) are moved up to it, so a bucket's clock never
	// runs backwards, which would refill it for the time repeated.
	seen       time.Time
	handshakes *rate.Limiter
	joins      *rate.Limiter
	failures   *rate.Limiter
}

type counters struct {
	untracked, refusedConns, refusedHandshakes, refusedJoins, refusedLockedOut, lockouts, swept atomic.Uint64
}

// New builds a Limiter from cfg (zero fields are defaults).
func New(cfg Config) (*Limiter, error) {
	lim, err := cfg.limits()
	if err != nil {
		return nil, fmt.Errorf("iplimit: invalid config: %w", err)
	}
	l := &Limiter{lim: lim, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = make(map[netip.Addr]*entry)
	}
	return l, nil
}

// OpenConn records a new connection from ip. It reports false when ip is
// already at Config.MaxConnsPerIP; the caller then refuses the connection
// and must not call CloseConn for it. After true, CloseConn must follow
// when the connection ends.
//
// A connection allowed while the table was full is not counted, and its
// CloseConn may later release a slot counted for another connection of the
// same address (the count never goes below zero): under that overload the
// limit is approximate, never stricter than configured.
func (l *Limiter) OpenConn(ip netip.Addr) bool {
	if l.lim.maxConns == 0 {
		return true
	}
	key, ok := l.key(ip)
	if !ok {
		return true
	}
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := l.entryLocked(sh, key)
	if e == nil {
		return true
	}
	if e.conns >= l.lim.maxConns {
		l.stats.refusedConns.Add(1)
		return false
	}
	e.conns++
	return true
}

// CloseConn records the end of a connection that OpenConn allowed.
func (l *Limiter) CloseConn(ip netip.Addr) {
	if l.lim.maxConns == 0 {
		return
	}
	key, ok := l.key(ip)
	if !ok {
		return
	}
	sh := l.shard(key)
	sh.mu.Lock()
	if e := sh.m[key]; e != nil && e.conns > 0 {
		e.conns--
	}
	sh.mu.Unlock()
}

// AllowHandshake spends one handshake token of ip at now. When it reports
// false the handshake should be refused (HTTP 429); retryAfter is when the
// next token is due, for a Retry-After header.
func (l *Limiter) AllowHandshake(ip netip.Addr, now time.Time) (ok bool, retryAfter time.Duration) {
	if !l.lim.handshakeOn {
		return true, 0
	}
	key, tracked := l.key(ip)
	if !tracked {
		return true, 0
	}
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := l.entryLocked(sh, key)
	if e == nil {
		return true, 0
	}
	now = e.clock(now)
	if e.handshakes == nil {
		e.handshakes = rate.NewLimiter(l.lim.handshakeRate, l.lim.handshakeB)
	}
	if ok, retryAfter = take(e.handshakes, now); !ok {
		l.stats.refusedHandshakes.Add(1)
	}
	return ok, retryAfter
}

// AllowJoin decides whether a Join request from ip may proceed at now: not
// while the address is locked out (see JoinFailed), and only with a join
// token to spend. retryAfter says when to try again.
func (l *Limiter) AllowJoin(ip netip.Addr, now time.Time) (ok bool, retryAfter time.Duration) {
	if !l.lim.joinOn && !l.lim.failOn {
		return true, 0
	}
	key, tracked := l.key(ip)
	if !tracked {
		return true, 0
	}
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e != nil {
		now = e.clock(now)
	}
	if e != nil && now.Before(e.lockedUntil) {
		l.stats.refusedLockedOut.Add(1)
		return false, e.lockedUntil.Sub(now)
	}
	if !l.lim.joinOn {
		return true, 0
	}
	if e == nil {
		if e = l.entryLocked(sh, key); e == nil {
			return true, 0
		}
		now = e.clock(now)
	}
	if e.joins == nil {
		e.joins = rate.NewLimiter(l.lim.joinRate, l.lim.joinB)
	}
	if ok, retryAfter = take(e.joins, now); !ok {
		l.stats.refusedJoins.Add(1)
	}
	return ok, retryAfter
}

// JoinFailed records a failed join of ip at now: a wrong room code, a full
// room, a refused token. The failure that exceeds the budget of
// Config.FailedJoinsPerMinute locks the address out of joining for
// Config.Lockout. It reports whether the address is locked out afterwards.
func (l *Limiter) JoinFailed(ip netip.Addr, now time.Time) (lockedOut bool) {
	if !l.lim.failOn {
		return false
	}
	key, tracked := l.key(ip)
	if !tracked {
		return false
	}
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := l.entryLocked(sh, key)
	if e == nil {
		return false
	}
	now = e.clock(now)
	if now.Before(e.lockedUntil) {
		return true // a join admitted before the lockout began
	}
	if e.failures == nil {
		e.failures = rate.NewLimiter(l.lim.failRate, l.lim.failB)
	}
	if e.failures.AllowN(now, 1) {
		return false
	}
	e.lockedUntil = now.Add(l.lim.lockout)
	l.stats.lockouts.Add(1)
	return true
}

// LockedOut reports whether ip is locked out of joining at now, and for how
// much longer. It records nothing.
func (l *Limiter) LockedOut(ip netip.Addr, now time.Time) (locked bool, remaining time.Duration) {
	if !l.lim.failOn {
		return false, 0
	}
	key, tracked := l.key(ip)
	if !tracked {
		return false, 0
	}
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[key]; e != nil && now.Before(e.lockedUntil) {
		return true, e.lockedUntil.Sub(now)
	}
	return false, 0
}

// Sweep forgets the addresses whose state at now is the same as a fresh
// address's: no open connection, no lockout, every bucket full. Forgetting
// them loses nothing, so Sweep may run as often as convenient (the server's
// sweeper, every few seconds); it holds one shard's mutex at a time. It
// returns how many addresses it forgot.
func (l *Limiter) Sweep(now time.Time) int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.idle(now) {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	l.tracked.Add(-int64(n))
	l.stats.swept.Add(uint64(n))
	return n
}

// clock returns the time to use for e: now, or seen if that is later.
func (e *entry) clock(now time.Time) time.Time {
	if now.Before(e.seen) {
		return e.seen
	}
	e.seen = now
	return now
}

func (e *entry) idle(now time.Time) bool {
	return e.conns == 0 && !now.Before(e.lockedUntil) &&
		full(e.handshakes, now) && full(e.joins, now) && full(e.failures, now)
}

func full(b *rate.Limiter, now time.Time) bool {
	return b == nil || b.TokensAt(now) >= float64(b.Burst())
}

// Stats are counters since the Limiter was made, and the current size of
// its table. The Refused counters suit a metric labelled by kind.
type Stats struct {
	Tracked           int    // addresses (IPv6 prefixes) in the table now
	Untracked         uint64 // calls allowed without tracking because the table was full
	RefusedConns      uint64 // OpenConn refusals (MaxConnsPerIP)
	RefusedHandshakes uint64 // AllowHandshake refusals
	RefusedJoins      uint64 // AllowJoin refusals for the join rate
	RefusedLockedOut  uint64 // AllowJoin refusals during a lockout
	Lockouts          uint64 // lockouts started by JoinFailed
	Swept             uint64 // addresses forgotten by Sweep
}

// Stats returns a snapshot of the counters.
func (l *Limiter) Stats() Stats {
	return Stats{
		Tracked:           int(l.tracked.Load()),
		Untracked:         l.stats.untracked.Load(),
		RefusedConns:      l.stats.refusedConns.Load(),
		RefusedHandshakes: l.stats.refusedHandshakes.Load(),
		RefusedJoins:      l.stats.refusedJoins.Load(),
		RefusedLockedOut:  l.stats.refusedLockedOut.Load(),
		Lockouts:          l.stats.lockouts.Load(),
		Swept:             l.stats.swept.Load(),
	}
}

// key normalises ip to the table key; false: not limited (invalid, exempt).
func (l *Limiter) key(ip netip.Addr) (netip.Addr, bool) {
	if !ip.IsValid() {
		return ip, false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range l.lim.exempt {
		if p.Contains(ip) {
			return ip, false
		}
	}
	if ip.Is6() && l.lim.v6Bits < 128 {
		ip = netip.PrefixFrom(ip, l.lim.v6Bits).Masked().Addr()
	}
	return ip, true
}

func (l *Limiter) shard(key netip.Addr) *shard {
	b := key.As16()
	return &l.shards[maphash.Bytes(l.seed, b[:])&(numShards-1)]
}

// entryLocked returns key's entry, creating it if the table has room; nil
// when it is full (the caller allows, untracked). sh.mu is held.
func (l *Limiter) entryLocked(sh *shard, key netip.Addr) *entry {
	if e := sh.m[key]; e != nil {
		return e
	}
	if l.tracked.Add(1) > int64(l.lim.maxTracked) {
		l.tracked.Add(-1)
		l.stats.untracked.Add(1)
		return nil
	}
	e := &entry{}
	sh.m[key] = e
	return e
}

// take spends one token of b at now, or says how long until one is due.
func take(b *rate.Limiter, now time.Time) (bool, time.Duration) {
	if b.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - b.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / float64(b.Limit()) * float64(time.Second)))
	return false, max(wait, time.Nanosecond)
}
