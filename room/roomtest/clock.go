// Package roomtest provides fakes for testing code built on package room: a
// Clock whose time moves only when told to, and a Peer that records what it
// is delivered.
package roomtest

import (
	"sync"
	"time"

	"github.com/tickrelay/tickrelay/room"
)

// Clock is a fake room.Clock. Time stands still until Advance moves it;
// Advance fires the timers that are due. Goroutine-safe.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

// NewClock returns a Clock reading start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer firing once the fake time reaches now+d.
func (c *Clock) NewTimer(d time.Duration) room.Timer {
	t := &timer{c: c, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the time forward by d and fires every timer that is then
// due (each at most once; the send never blocks).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		c.fireLocked(t)
	}
}

// fireLocked fires t if it is active and due. c.mu must be held.
func (c *Clock) fireLocked(t *timer) {
	if !t.active || t.when.After(c.now) {
		return
	}
	t.active = false
	select {
	case t.ch <- c.now:
	default:
	}
}

type timer struct {
	c      *Clock
	ch     chan time.Time
	when   time.Time // guarded by c.mu
	active bool      // guarded by c.mu
}

func (t *timer) C() <-chan time.Time { return t.ch }

// Reset re-arms the timer for now+d, discarding a pending fire.
func (t *timer) Reset(d time.Duration) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t.drain()
	t.when = c.now.Add(d)
	if !t.active {
		t.active = true
		if !c.registeredLocked(t) {
			c.timers = append(c.timers, t)
		}
	}
	c.fireLocked(t)
}

// Stop disarms the timer, discarding a pending fire.
func (t *timer) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.active = false
	t.drain()
}

func (t *timer) drain() {
	select {
	case <-t.ch:
	default:
	}
}

func (c *Clock) registeredLocked(t *timer) bool {
	for _, x := range c.timers {
		if x == t {
			return true
		}
	}
	return false
}
