package iplimit

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for the zero fields of Config.
const (
	DefaultMaxConnsPerIP        = 64
	DefaultHandshakesPerSecond  = 10
	DefaultJoinsPerSecond       = 10
	DefaultFailedJoinsPerMinute = 30
	DefaultLockout              = time.Minute
	DefaultMaxTracked           = 65536
	DefaultIPv6PrefixBits       = 64
	// defaultBurstSeconds: a zero burst holds this many seconds of its rate.
	defaultBurstSeconds = 4
)

// Config sets the limits of a Limiter. A zero field means its default
// (the Default... constants); a negative value turns a limit off.
type Config struct {
	// MaxConnsPerIP bounds the concurrent connections of one address.
	// Default 64; negative: no limit.
	MaxConnsPerIP int

	// HandshakesPerSecond and HandshakeBurst shape WebSocket handshakes
	// (new connections) per address: a bucket of HandshakeBurst tokens
	// refilled at HandshakesPerSecond. Defaults 10/s; a zero burst is 4
	// seconds' worth of the rate (40), at least 1. A negative rate: no
	// limit.
	HandshakesPerSecond float64
	HandshakeBurst      int

	// JoinsPerSecond and JoinBurst shape Join requests per address, like
	// the handshake bucket. Defaults 10/s, burst 40; negative rate: no
	// limit.
	JoinsPerSecond float64
	JoinBurst      int

	// FailedJoinsPerMinute is the budget of failed joins (unknown room
	// code, full room, refused token) per address: a bucket of that many,
	// refilled at that many per minute. The failure that finds the bucket
	// empty locks the address out of joining for Lockout. Sustained, an
	// address can fail at most FailedJoinsPerMinute times a minute, which
	// bounds guessing of room codes. Defaults 30 and one minute; a
	// negative budget: no lockout.
	FailedJoinsPerMinute int
	Lockout              time.Duration

	// MaxTracked bounds the addresses remembered at once, and with it the
	// memory (a few hundred bytes each, see the package documentation).
	// When the table is full a new address is neither tracked nor limited —
	// the limiter fails open rather than refusing players — and
	// Stats.Untracked counts it. Default 65536; it must not be negative.
	MaxTracked int

	// IPv6PrefixBits groups IPv6 addresses into one limit per prefix of
	// this length: a home or a host usually gets a whole /64, so per
	// address limits would not hold anyone back. Default 64; 128 limits
	// each address on its own. IPv4 addresses are never grouped.
	IPv6PrefixBits int

	// Exempt lists addresses that are never limited nor tracked: health
	// checkers, load-test hosts, a venue known to put many players behind
	// one address.
	Exempt []netip.Prefix
}

// limits is Config with the defaults applied and each limit's on/off state
// explicit.
type limits struct {
	maxConns      int // 0: off
	handshakeRate rate.Limit
	handshakeOn   bool
	handshakeB    int
	joinRate      rate.Limit
	joinOn        bool
	joinB         int
	failRate      rate.Limit
	failOn        bool
	failB         int
	lockout       time.Duration
	maxTracked    int
	v6Bits        int
	exempt        []netip.Prefix
}

func (c Config) limits() (limits, error) {
	var l limits
	switch {
	case c.MaxConnsPerIP == 0:
		l.maxConns = DefaultMaxConnsPerIP
	case c.MaxConnsPerIP > 0:
		l.maxConns = c.MaxConnsPerIP
	}
	var err error
	if l.handshakeRate, l.handshakeB, l.handshakeOn, err = bucket("HandshakesPerSecond", "HandshakeBurst", c.HandshakesPerSecond, c.HandshakeBurst, DefaultHandshakesPerSecond); err != nil {
		return l, err
	}
	if l.joinRate, l.joinB, l.joinOn, err = bucket("JoinsPerSecond", "JoinBurst", c.JoinsPerSecond, c.JoinBurst, DefaultJoinsPerSecond); err != nil {
		return l, err
	}
	switch {
	case c.FailedJoinsPerMinute == 0:
		l.failB = DefaultFailedJoinsPerMinute
	case c.FailedJoinsPerMinute > 0:
		l.failB = c.FailedJoinsPerMinute
	}
	if l.failOn = l.failB > 0; l.failOn {
		l.failRate = rate.Limit(float64(l.failB) / 60)
	}
	switch {
	case c.Lockout == 0:
		l.lockout = DefaultLockout
	case c.Lockout > 0:
		l.lockout = c.Lockout
	default:
		return l, fmt.Errorf("negative Lockout %v", c.Lockout)
	}
	switch {
	case c.MaxTracked == 0:
		l.maxTracked = DefaultMaxTracked
	case c.MaxTracked > 0:
		l.maxTracked = c.MaxTracked
	default:
		return l, fmt.Errorf("MaxTracked %d is negative", c.MaxTracked)
	}
	switch {
	case c.IPv6PrefixBits == 0:
		l.v6Bits = DefaultIPv6PrefixBits
	case c.IPv6PrefixBits >= 1 && c.IPv6PrefixBits <= 128:
		l.v6Bits = c.IPv6PrefixBits
	default:
		return l, fmt.Errorf("IPv6PrefixBits %d is not in 1..128", c.IPv6PrefixBits)
	}
	for _, p := range c.Exempt {
		if !p.IsValid() {
			return l, fmt.Errorf("invalid Exempt prefix %v", p)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		l.exempt = append(l.exempt, p.Masked())
	}
	return l, nil
}

// bucket applies the defaults of one token bucket.
func bucket(rateName, burstName string, perSecond float64, burst int, def float64) (rate.Limit, int, bool, error) {
	switch {
	case math.IsNaN(perSecond) || math.IsInf(perSecond, 0):
		return 0, 0, false, fmt.Errorf("%s %v is not a number", rateName, perSecond)
	case perSecond < 0:
		return 0, 0, false, nil
	case perSecond == 0:
		perSecond = def
	}
	switch {
	case burst < 0:
		return 0, 0, false, fmt.Errorf("%s %d is negative", burstName, burst)
	case burst == 0:
		burst = max(1, int(math.Ceil(perSecond*defaultBurstSeconds)))
	}
	return rate.Limit(perSecond), burst, true, nil
}
