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
//
// Its buckets are made at the connection's second message, not at its
// upgrade: most connections of a quiet game (a lobby, players waiting) send
// one Join and then little or nothing, and two token buckets with their
// bookkeeping are a tenth of what an idle connection costs. The first
// message always passes a full bucket (MessageBurst >= 1, ByteBurst >=
// MaxMessageBytes), so it is only noted, and replayed into the buckets at
// its own time when they are made: every later decision is the one buckets
// made at the upgrade would take.
type connLimits struct {
	firstAt   int64 // unix nanos of the first message; 0 before it
	firstSize int   // its payload bytes (-1 for a ping: no bytes counted)
	b         *connBuckets
}

// connBuckets is the state of a connection past its first message.
type connBuckets struct {
	gen      uint64 // policy generation the buckets were set from
	messages *rate.Limiter
	bytes    *rate.Limiter
	// limitedSince is the start of the current episode of dropped messages
	// (zero when none); an episode ends after a second without drops.
	limitedSince time.Time
	lastDrop     time.Time
	lastNotice   time.Time
}

// buckets returns the connection's buckets, made (with the first message
// replayed) on first use; nil while the message at now is the first.
func (l *connLimits) buckets(p *livePolicy, now time.Time, size int) *connBuckets {
	if l.b != nil {
		l.b.refresh(p, now)
		return l.b
	}
	if l.firstAt == 0 {
		l.firstAt, l.firstSize = max(now.UnixNano(), 1), size
		return nil
	}
	b := &connBuckets{
		gen:      p.gen,
		messages: rate.NewLimiter(rate.Limit(p.rate.MessagesPerSecond), p.rate.MessageBurst),
		bytes:    rate.NewLimiter(rate.Limit(p.rate.BytesPerSecond), p.rate.ByteBurst),
	}
	first := time.Unix(0, l.firstAt)
	b.messages.AllowN(first, 1)
	if l.firstSize >= 0 {
		b.bytes.AllowN(first, l.firstSize)
	}
	l.b = b
	return b
}

// refresh applies a reloaded policy.
func (b *connBuckets) refresh(p *livePolicy, now time.Time) {
	if b.gen == p.gen {
		return
	}
	b.gen = p.gen
	b.messages.SetLimitAt(now, rate.Limit(p.rate.MessagesPerSecond))
	b.messages.SetBurstAt(now, p.rate.MessageBurst)
	b.bytes.SetLimitAt(now, rate.Limit(p.rate.BytesPerSecond))
	b.bytes.SetBurstAt(now, p.rate.ByteBurst)
}

// admit decides on one message of size payload bytes. A message counts
// against the message rate whether or not its bytes pass: it was sent. (Two
// limiter calls for a message that passes, one for most of a flood, where
// reading both buckets first and then taking from both was four.)
func (l *connLimits) admit(p *livePolicy, now time.Time, size int) rateVerdict {
	b := l.buckets(p, now, size)
	if b == nil || b.messages.AllowN(now, 1) && b.bytes.AllowN(now, size) {
		return rateAllow
	}
	return b.drop(p, now)
}

// allowControl decides on one WebSocket control frame (a ping): it counts
// as a message; over the limit it is not answered.
func (l *connLimits) allowControl(p *livePolicy, now time.Time) bool {
	b := l.buckets(p, now, -1)
	return b == nil || b.messages.AllowN(now, 1)
}

func (b *connBuckets) drop(p *livePolicy, now time.Time) rateVerdict {
	if b.limitedSince.IsZero() || now.Sub(b.lastDrop) > time.Second {
		b.limitedSince = now
	}
	b.lastDrop = now
	if now.Sub(b.limitedSince) > p.rate.Grace {
		return rateClose
	}
	if now.Sub(b.lastNotice) >= time.Second {
		b.lastNotice = now
		return rateNotify
	}
	return rateDrop
}

// retryAfter is how long until a message of size bytes would pass.
func (l *connLimits) retryAfter(p *livePolicy, now time.Time, size int) time.Duration {
	if l.b == nil {
		return 0 // the first message always passes
	}
	wait := func(lim *rate.Limiter, n float64, per float64) time.Duration {
		missing := n - lim.TokensAt(now)
		if missing <= 0 || per <= 0 {
			return 0
		}
		return time.Duration(math.Ceil(missing / per * float64(time.Second)))
	}
	return max(wait(l.b.messages, 1, p.rate.MessagesPerSecond),
		wait(l.b.bytes, float64(size), float64(p.rate.BytesPerSecond)))
}
