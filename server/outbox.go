package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/tickrelay/tickrelay/proto/closes"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// outbox is a connection's queue of encoded WebSocket frames on their way to
// its event loop, which writes them. Every byte the relay sends a
// connection goes through it — room frames from the workers, and pongs,
// errors and closes from the loop itself — so every byte counts against the
// connection's budget: bytes queued here plus gnet's unwritten outbound
// buffer (gnet's own buffer has no limit). Past Config.OutboundHardBytes the
// connection is closed as a slow consumer; past OutboundSoftBytes the room
// holds its messages back (Congested) and the loop stops reading its input.
//
// Workers push and wake the loop (one wake for all the connections of a
// loop that a tick gave frames: wakebatch.go); the loop flushes everything
// queued in one write (writev when several frames wait), so a burst costs
// one syscall.
// When a close starts, frames not yet written are dropped and the close
// frames go out next: a client that is cut off learns why.
type outbox struct {
	c *conn

	mu        sync.Mutex
	items     []outItem // guarded by mu
	spare     []outItem // the slice flush emptied last; guarded by mu
	scheduled bool      // a wake is on its way to flush; guarded by mu
	sealed    bool      // a Close is queued: nothing more is accepted; guarded by mu
	killing   bool      // the connection is to be dropped once sealed (conn.kill); guarded by mu
	pushed    bool      // something was queued since the sweeper last trimmed; guarded by mu

	queued atomic.Int64 // bytes in items
	net    atomic.Int64 // gnet's unwritten outbound bytes, as last seen on the loop
	// Its two flags are the conn's (flagOutHeld, flagRefreshing).
}

// outItem is one frame: b, and the pooled buffer to release after writing
// it (nil for bytes the loop allocated).
type outItem struct {
	b []byte
	o *room.Outbound
}

func (q *outbox) init(c *conn) { q.c = c }

// total is the connection's unwritten bytes: queued here plus gnet's buffer.
func (q *outbox) total() int64 { return q.queued.Load() + q.net.Load() }

func (q *outbox) overSoft() bool {
	return q.total() > int64(q.c.loop.srv.cfg.OutboundSoftBytes)
}

// refreshNet takes a fresh figure of gnet's unwritten bytes and reports
// whether the connection is still over its soft limit. gnet drains its
// buffer without telling, so the figure goes stale when nothing is written
// (input held back by the connection's own pongs and errors would be held
// for ever). Loop only.
func (q *outbox) refreshNet() bool {
	q.net.Store(int64(q.c.gc.OutboundBuffered()))
	return q.overSoft()
}

func (q *outbox) pending() bool { return q.queued.Load() > 0 }

// push queues b (releasing o after it is written). It returns false, having
// released o, when the connection is closing or b would take it past its
// hard limit; the caller starts the slow-consumer close in that case
// (overHard tells which).
func (q *outbox) push(b []byte, o *room.Outbound) (ok, overHard, wake bool) {
	n := int64(len(b))
	q.mu.Lock()
	if q.sealed {
		q.mu.Unlock()
		release(o)
		return false, false, false
	}
	if q.queued.Load()+q.net.Load()+n > int64(q.c.loop.srv.cfg.OutboundHardBytes) {
		q.mu.Unlock()
		release(o)
		return false, true, false
	}
	q.items = append(q.items, outItem{b, o})
	q.pushed = true
	q.queued.Add(n)
	wake = !q.scheduled
	q.scheduled = true
	q.mu.Unlock()
	return true, false, wake
}

// seal queues final (the Error and Close frames of a close) as the last
// bytes of the connection; nothing is accepted after it. With drop, the
// frames not yet written are dropped first, so final goes out next (a
// failing close: the client must learn why before the connection goes);
// otherwise they go out before it (a clean close: a kicked player still gets
// its Left). It reports whether a wake is needed, and whether a kill is
// waiting for the seal to drop the connection.
func (q *outbox) seal(final []byte, drop bool) (wake, kill bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sealed {
		return false, false
	}
	q.sealed = true
	kill = q.killing
	if drop {
		for i := range q.items {
			release(q.items[i].o)
			q.queued.Add(-int64(len(q.items[i].b)))
			q.items[i] = outItem{}
		}
		q.items = q.items[:0]
	}
	q.items = append(q.items, outItem{b: final})
	q.queued.Add(int64(len(final)))
	wake = !q.scheduled
	q.scheduled = true
	return wake, kill
}

// markKilling notes that the connection is to be dropped as soon as its
// Close is queued, and reports whether it is already.
func (q *outbox) markKilling() (sealed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.killing = true
	return q.sealed
}

// requeue puts back, in front, frames the loop took but did not write.
func (q *outbox) requeue(rest []outItem) {
	q.mu.Lock()
	q.items = append(append(make([]outItem, 0, len(rest)+len(q.items)), rest...), q.items...)
	q.mu.Unlock()
}

// take hands the queued frames to the loop. Loop only.
func (q *outbox) take() []outItem {
	q.mu.Lock()
	items := q.items
	q.items = q.spare[:0]
	q.spare = nil
	q.scheduled = false
	q.mu.Unlock()
	return items
}

// giveBack returns the emptied slice for reuse. Where nothing was queued
// while the loop wrote, it becomes items again rather than the spare: a
// connection that gets one frame at a time then holds one slice, not two.
func (q *outbox) giveBack(items []outItem) {
	clear(items)
	if cap(items) > 64 {
		return
	}
	q.mu.Lock()
	switch {
	case q.items == nil:
		q.items = items[:0]
	case q.spare == nil:
		q.spare = items[:0]
	}
	q.mu.Unlock()
}

// trimIdle lets the emptied slices of a connection go when nothing was
// queued for it since the previous sweep: an idle player then holds no
// outbox memory, and one that gets frames keeps its slices (a frame every
// sweep period is enough). Sweeper only.
func (q *outbox) trimIdle() {
	q.mu.Lock()
	if !q.pushed && len(q.items) == 0 && !q.scheduled {
		q.items, q.spare = nil, nil
	}
	q.pushed = false
	q.mu.Unlock()
}

// discard releases everything queued: the connection is gone.
func (q *outbox) discard() {
	q.mu.Lock()
	q.sealed = true
	for i := range q.items {
		release(q.items[i].o)
		q.items[i] = outItem{}
	}
	q.items = q.items[:0]
	q.queued.Store(0)
	q.mu.Unlock()
}

func release(o *room.Outbound) {
	if o != nil {
		o.Release()
	}
}

// Deliver implements room.Peer: it queues one room message for the
// connection's event loop. Called from room workers; never blocks.
func (c *conn) Deliver(msg *room.Outbound) {
	n := len(msg.Bytes())
	frame := msg.WithHeader(wsproto.HeaderLen(n))
	wsproto.PutHeader(frame, ws.OpBinary, n)
	c.queue(frame, msg)
}

// queue puts a frame built off the loop in the outbox, and wakes the loop
// (in its batch) when the outbox had nothing on its way. Goroutine-safe.
func (c *conn) queue(frame []byte, msg *room.Outbound) {
	ok, overHard, wake := c.out.push(frame, msg)
	switch {
	case overHard:
		c.loop.srv.stats.slowConsumers.Add(1)
		c.close(closes.SlowConsumer, "outbound queue over its limit: the connection cannot keep up", false)
	case ok && wake && c.state.Load() != stateClosed:
		c.loop.wakes.wake(c)
	}
}

// answer queues bytes the event loop itself sends (pongs, errors) and
// writes them at once. Loop only.
func (c *conn) answer(b []byte) {
	ok, overHard, _ := c.out.push(b, nil)
	switch {
	case overHard:
		c.loop.srv.stats.slowConsumers.Add(1)
		c.close(closes.SlowConsumer, "outbound queue over its limit: the connection does not read its answers", true)
	case ok:
		c.flush()
	}
}

// writeFinal writes the last bytes of a connection the loop is about to
// close (the answer to a client's Close). Loop only.
func (c *conn) writeFinal(b []byte) {
	c.flush()
	_, _ = c.gc.Write(b)
}

// drop closes the connection now, from any goroutine, after handing gnet
// everything queued (the Error and Close of a failing close included), so
// that gnet's close writes whatever the kernel still takes.
func (c *conn) drop() {
	err := c.gc.Wake(func(gc gnet.Conn, err error) error {
		if err == nil && c.state.Load() != stateClosed {
			c.flushOut(true)
		}
		return gc.Close()
	})
	if err != nil {
		_ = c.gc.Close()
	}
}

// wake asks the connection's event loop to run OnTraffic for it: to flush
// queued frames, or to look again at input it held back. Goroutine-safe.
func (c *conn) wake() {
	if c.state.Load() == stateClosed {
		return
	}
	_ = c.gc.Wake(nil)
}

// gnetBufferCap is how much unwritten data the relay lets pile up in gnet's
// outbound buffer (which nothing can take back) before it keeps frames in the
// outbox instead (where a failing close can drop them, so its Error and Close
// go out next).
const gnetBufferCap = 64 << 10

// flush writes the queued frames: one write for one frame, one writev for
// several. While gnet's own buffer holds more than gnetBufferCap (the kernel
// is not taking bytes: the client reads slowly), frames stay in the outbox;
// the sweeper wakes the connection to try again. Loop only.
func (c *conn) flush() { c.flushOut(false) }

// flushOut is flush; with all, everything queued goes to gnet whatever its
// buffer holds (the connection is about to be dropped: gnet's close writes
// what the kernel still takes).
func (c *conn) flushOut(all bool) {
	if !all && c.gc.OutboundBuffered() > gnetBufferCap {
		c.outHeld().Store(true)
		c.afterFlush()
		return
	}
	items := c.out.take()
	var written int64
	n := 0 // items handed to gnet
	closed := c.state.Load() == stateClosed
	for n < len(items) && !closed {
		// gnet's Writev fails with EINVAL beyond 1,024 slices (IOV_MAX).
		end := min(n+1024, len(items))
		var err error
		if end-n == 1 {
			_, err = c.gc.Write(items[n].b)
		} else {
			iov := c.loop.iov[:0]
			for _, it := range items[n:end] {
				iov = append(iov, it.b)
			}
			_, err = c.gc.Writev(iov)
			clear(iov)
			c.loop.iov = iov
		}
		for _, it := range items[n:end] {
			written += int64(len(it.b))
			release(it.o)
		}
		n = end
		if err != nil {
			closed = true // gnet has closed the connection (OnClose ran)
		} else if !all && n < len(items) && c.gc.OutboundBuffered() > gnetBufferCap {
			break
		}
	}
	c.out.queued.Add(-written)
	if closed {
		for _, it := range items[n:] {
			release(it.o)
		}
		c.out.giveBack(items)
		return
	}
	if n < len(items) {
		c.out.requeue(items[n:])
		c.outHeld().Store(true)
	} else {
		c.outHeld().Store(false)
	}
	c.out.giveBack(items)
	c.afterFlush()
}

// afterFlush refreshes the outbound figure and, for a failing close whose
// frames are all out, shuts down the write side (RFC 6455 section 7.1.7: the
// client reads our Close, then sees our FIN, and its own FIN or Close ends
// the connection; the sweeper drops it after the linger otherwise). Loop
// only.
func (c *conn) afterFlush() {
	buffered := int64(c.gc.OutboundBuffered())
	c.out.net.Store(buffered)
	c.refreshing().Store(false)
	if c.failing().Load() && !c.shutWrite && buffered == 0 && c.out.queued.Load() == 0 && c.out.isSealed() {
		c.shutWriteSide()
	}
}

// shutWriteSide shuts down the write side of a connection whose last bytes
// are out (a failing close, an answer before the upgrade): the client
// reads them, then our FIN; the sweeper drops it fail-linger later if the
// client does not end it first. Loop only.
func (c *conn) shutWriteSide() {
	c.shutWrite = true
	c.rare().shutAt.Store(time.Now().UnixNano())
	_ = unix.Shutdown(c.gc.Fd(), unix.SHUT_WR)
}

func (q *outbox) isSealed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.sealed
}

// Congested implements room.Peer. When the last seen outbound size says the
// peer is behind, it asks the loop for a fresh figure, so a peer that
// catches up is noticed even while the room sends it nothing.
func (c *conn) Congested() bool {
	if !c.out.overSoft() {
		return false
	}
	if c.refreshing().CompareAndSwap(false, true) {
		c.wake()
	}
	return true
}

// Evict implements room.Peer: the room removed this player for a cause that
// ends the connection. detail explains it in the Error sent before the
// Close (for causes that send one).
func (c *conn) Evict(cause room.EvictCause, detail string) {
	switch cause {
	case room.EvictSlowConsumer:
		c.loop.srv.stats.slowConsumers.Add(1)
		c.close(closes.SlowConsumer, detail, false)
	case room.EvictKicked:
		c.close(closes.Kicked, detail, false)
	case room.EvictReplaced:
		c.close(closes.Replaced, detail, false)
	case room.EvictMoved:
		c.close(closes.Restart, detail, false)
	default:
		c.close(closes.Internal, detail, false)
	}
}

// Ready implements room.Peer: the seat can take requests again. If the loop
// parked one, wake it.
func (c *conn) Ready() {
	if c.held().Load() {
		c.wake()
	}
}
