package room

import (
	"math/bits"
	"sync"
)

// Outbound buffers are pooled by power-of-two size class, from 64 B to
// 64 KiB. One pool per class (rather than one pool of mixed sizes) is what
// makes steady state allocation-free: a 50-byte Joined never takes a frame
// buffer, and a 7 KiB frame never gets a buffer it has to grow. The small
// classes matter for memory: an idle seat's replay ring holds the frames of
// its room's presence events (tens of bytes each) until the client
// acknowledges them, and a 256-byte buffer for each would be most of what
// an idle connection keeps. Buffers
// above the largest class are allocated for the one message and left to the
// GC, so a rare huge frame does not pin memory in the pool.
const (
	minClassShift = 6  // 64 B
	maxClassShift = 16 // 64 KiB
	numClasses    = maxClassShift - minClassShift + 1
)

// outboundPool hands out Outbound buffers with headroom bytes free in front.
// get is called on worker goroutines; put (Outbound.Release) on any
// goroutine, typically the transport's write completion. sync.Pool keeps
// both lock-free in the common case.
type outboundPool struct {
	headroom int
	classes  [numClasses]sync.Pool
}

// classOf returns the size class holding n bytes, or -1 if n is above the
// largest class.
func classOf(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	c := bits.Len(uint(n-1)) - minClassShift
	if c >= numClasses {
		return -1
	}
	return c
}

// get returns an Outbound whose buffer has room for headroom plus size
// bytes; buf holds the headroom (len == headroom), the caller appends the
// message.
func (p *outboundPool) get(size int) *Outbound {
	n := p.headroom + size
	c := classOf(n)
	var o *Outbound
	if c < 0 {
		o = &Outbound{buf: make([]byte, p.headroom, n), headroom: p.headroom, pool: p}
	} else if cached, ok := p.classes[c].Get().(*Outbound); ok {
		o = cached
		o.buf = o.buf[:p.headroom]
	} else {
		o = &Outbound{buf: make([]byte, p.headroom, 1<<(c+minClassShift)), headroom: p.headroom, pool: p}
	}
	o.refs.Store(1)
	return o
}

// put returns o to the class of its buffer's capacity. A buffer that grew
// past its class (an encoder appended more than announced) or is above the
// largest class is dropped.
func (p *outboundPool) put(o *Outbound) {
	c := classOf(cap(o.buf))
	if c < 0 || cap(o.buf) != 1<<(c+minClassShift) {
		o.buf = nil
		return
	}
	o.buf = o.buf[:0]
	p.classes[c].Put(o)
}
