package server

import (
	"math"
	"time"

	"golang.org/x/time/rate"
)

// RateLimits bound what one connection may send, enforced on its event loop
// before anything reaches a room. A zero field means the default in its
// comment. They are reloadable: connections pick up new values at their
// next message.
type RateLimits struct {
	// MessagesPerSecond and MessageBurst are a token bucket on the messages
	// a connection sends (protocol envelopes and WebSocket pings). Zero
	// means 200 per second and a burst of 1,000.
	MessagesPerSecond float64
	MessageBurst      int
	// BytesPerSecond and ByteBurst are a token bucket on their payload
	// bytes. Zero means 256 KiB/s and a burst of 1 MiB; the burst is raised
	// to MaxMessageBytes if it is below, so one largest message always
	// passes. The rate is what one sender may make its whole room receive
	// (times its room-mates), so it is set for game traffic (tens of KiB/s a
	// player) with room to spare, not for bulk transfers; and low enough
	// that a busy relay still reads a client faster than it, so that a
	// client sending faster is told and closed instead of only slowed down
	// by TCP.
	BytesPerSecond int
	ByteBurst      int
	// Grace is how long a connection may keep sending over its limits:
	// past it, it is closed with 4003. Before that its excess messages are
	// dropped, and it is told with Error{RATE_LIMITED} at most once a second.
	// Zero means 5s.
	Grace time.Duration
}

func (l RateLimits) withDefaults(maxMessage int) RateLimits {
	if l.MessagesPerSecond == 0 {
		l.MessagesPerSecond = 200
	}
	if l.MessageBurst == 0 {
		l.MessageBurst = 1000
	}
	if l.BytesPerSecond == 0 {
		l.BytesPerSecond = 256 << 10
	}
	if l.ByteBurst == 0 {
		l.ByteBurst = 1 << 20
	}
	l.ByteBurst = max(l.ByteBurst, maxMessage)
	if l.Grace == 0 {
		l.Grace = 5 * time.Second
	}
	return l
}

// rateVerdict is what happens to one message.
type rateVerdict uint8

const (
	rateAllow  rateVerdict = iota
	rateDrop               // over the limit: drop it silently
	rateNotify             // over the limit: drop it and send RATE_LIMITED
	rateClose              // over the limit for longer than the grace: close 4003
)

// connLimits is one connection's rate state. Loop only.
type connLimits struct {
	gen      uint64 // policy generation the buckets were set from
	messages *rate.Limiter
	bytes    *rate.Limiter
	// limitedSince is the start of the current episode of dropped messages
	// (zero when none); an episode ends after a second without drops.
	limitedSince time.Time
	lastDrop     time.Time
	lastNotice   time.Time
}

func (l *connLimits) init(p *livePolicy, now time.Time) {
	l.messages = rate.NewLimiter(rate.Limit(p.rate.MessagesPerSecond), p.rate.MessageBurst)
	l.bytes = rate.NewLimiter(rate.Limit(p.rate.BytesPerSecond), p.rate.ByteBurst)
	l.gen = p.gen
	_ = now
}

// refresh applies a reloaded policy.
func (l *connLimits) refresh(p *livePolicy, now time.Time) {
	if l.gen == p.gen {
		return
	}
	l.gen = p.gen
	l.messages.SetLimitAt(now, rate.Limit(p.rate.MessagesPerSecond))
	l.messages.SetBurstAt(now, p.rate.MessageBurst)
	l.bytes.SetLimitAt(now, rate.Limit(p.rate.BytesPerSecond))
	l.bytes.SetBurstAt(now, p.rate.ByteBurst)
}

// admit decides on one message of size payload bytes. A message counts
// against the message rate whether or not its bytes pass: it was sent. (Two
// limiter calls for a message that passes, one for most of a flood, where
// reading both buckets first and then taking from both was four.)
func (l *connLimits) admit(p *livePolicy, now time.Time, size int) rateVerdict {
	l.refresh(p, now)
	if l.messages.AllowN(now, 1) && l.bytes.AllowN(now, size) {
		return rateAllow
	}
	return l.drop(p, now)
}

// allowControl decides on one WebSocket control frame (a ping): it counts
// as a message; over the limit it is not answered.
func (l *connLimits) allowControl(p *livePolicy, now time.Time) bool {
	l.refresh(p, now)
	return l.messages.AllowN(now, 1)
}

func (l *connLimits) drop(p *livePolicy, now time.Time) rateVerdict {
	if l.limitedSince.IsZero() || now.Sub(l.lastDrop) > time.Second {
		l.limitedSince = now
	}
	l.lastDrop = now
	if now.Sub(l.limitedSince) > p.rate.Grace {
		return rateClose
	}
	if now.Sub(l.lastNotice) >= time.Second {
		l.lastNotice = now
		return rateNotify
	}
	return rateDrop
}

// retryAfter is how long until a message of size bytes would pass.
func (l *connLimits) retryAfter(p *livePolicy, now time.Time, size int) time.Duration {
	wait := func(lim *rate.Limiter, n float64, per float64) time.Duration {
		missing := n - lim.TokensAt(now)
		if missing <= 0 || per <= 0 {
			return 0
		}
		return time.Duration(math.Ceil(missing / per * float64(time.Second)))
	}
	return max(wait(l.messages, 1, p.rate.MessagesPerSecond),
		wait(l.bytes, float64(size), float64(p.rate.BytesPerSecond)))
}
