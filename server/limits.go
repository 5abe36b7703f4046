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
// Its token buckets are made only when the connection first sends faster
// than they refill, not at its upgrade: most connections of a game (a
// lobby, players waiting, a player sending 20 updates a second, an idle
// one acknowledging frames) never come near their limits, and two buckets
// with their bookkeeping are a tenth of what an idle connection costs. A
// full bucket lets any one message through (MessageBurst >= 1, ByteBurst >=
// MaxMessageBytes), and is full again once its tokens came back; so while
// every message comes after the last one's tokens were refilled (twice
// over: a margin for rate.Limiter's floating point), the buckets are
// known to be full at each message and only the last message is noted.
// The first message that comes sooner makes the buckets, with that last
// one replayed into them at its own time: every decision is the one
// buckets made at the upgrade would take. (Except across two reloads with
// no message between them: the connection's last limits are gone, and it
// is treated as full under the current ones.)
type connLimits struct {
	lastAt   int64  // unix nanos of the last message while there are no buckets; 0 before the first
	lastSize int32  // its payload bytes (-1 for a ping: no bytes counted)
	lastGen  uint32 // the policy generation it was admitted under (low 32 bits)
	b        *connBuckets
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
	// refusedUntil (unix nanos) is when the message bucket, which last
	// refused a message, holds a token again: a refusal takes nothing from
	// it, so every message before then is refused too, and a flood is
	// dropped without a limiter call per message. 0: not refusing.
	refusedUntil int64
}

// takeMessage takes a token from the message bucket for a message at now,
// or reports that it has none: known without asking it while refusedUntil
// has not come.
func (b *connBuckets) takeMessage(now time.Time) bool {
	if b.refusedUntil != 0 && now.UnixNano() < b.refusedUntil {
		return false
	}
	if b.messages.AllowN(now, 1) {
		return true
	}
	b.noteRefusal(now)
	return false
}

// noteRefusal records, after the message bucket refused a message at now,
// until when it will go on refusing: a microsecond before its next token,
// a margin over the limiter's floating point.
func (b *connBuckets) noteRefusal(now time.Time) {
	r := float64(b.messages.Limit())
	missing := 1 - b.messages.TokensAt(now)
	switch {
	case r <= 0:
		b.refusedUntil = math.MaxInt64 // no tokens ever come back
	case missing <= 0 || math.IsInf(r, 1):
		b.refusedUntil = 0
	default:
		b.refusedUntil = now.UnixNano() + int64(missing/r*float64(time.Second)) - int64(time.Microsecond)
	}
}

// buckets returns the connection's buckets for a message of size bytes at
// now, made (with the last message replayed) when they are needed; nil
// while they would be full: the message passes.
func (l *connLimits) buckets(p *livePolicy, now time.Time, size int) *connBuckets {
	if l.b != nil {
		l.b.refresh(p, now)
		return l.b
	}
	at := max(now.UnixNano(), 1)
	last := p
	if l.lastAt != 0 {
		last = p.ofGen(l.lastGen)
	}
	if l.lastAt == 0 || last == nil || last == p && l.refilled(&p.rate, at) {
		l.lastAt, l.lastSize, l.lastGen = at, int32(size), uint32(p.gen)
		return nil
	}
	// Made with the limits the last message was admitted under, then
	// brought to the current ones at now, as upgrade-time buckets are.
	b := &connBuckets{
		gen:      last.gen,
		messages: rate.NewLimiter(rate.Limit(last.rate.MessagesPerSecond), last.rate.MessageBurst),
		bytes:    rate.NewLimiter(rate.Limit(last.rate.BytesPerSecond), last.rate.ByteBurst),
	}
	lastAt := time.Unix(0, l.lastAt)
	b.messages.AllowN(lastAt, 1)
	if l.lastSize >= 0 {
		b.bytes.AllowN(lastAt, int(l.lastSize))
	}
	b.refresh(p, now)
	l.b = b
	return b
}

// refilled reports whether, at unix nanos at, the buckets have had twice
// the tokens back that the last message took from them (under limits r).
func (l *connLimits) refilled(r *RateLimits, at int64) bool {
	gap := float64(at-l.lastAt) / float64(time.Second)
	return gap*r.MessagesPerSecond >= 2 && gap*float64(r.BytesPerSecond) >= 2*float64(max(l.lastSize, 0))
}

// refresh applies a reloaded policy.
func (b *connBuckets) refresh(p *livePolicy, now time.Time) {
	if b.gen == p.gen {
		return
	}
	b.gen = p.gen
	b.refusedUntil = 0
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
	if b == nil || b.takeMessage(now) && b.bytes.AllowN(now, size) {
		return rateAllow
	}
	return b.drop(p, now)
}

// allowControl decides on one WebSocket control frame (a ping): it counts
// as a message; over the limit it is not answered.
func (l *connLimits) allowControl(p *livePolicy, now time.Time) bool {
	b := l.buckets(p, now, -1)
	return b == nil || b.takeMessage(now)
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
