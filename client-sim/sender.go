package main

import (
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tickrelay/tickrelay/client"
)

// sendShard paces the sends of a subset of the clients from one goroutine:
// a min-heap of next-send times and one timer, instead of a ticker and a
// goroutine per client (1,000 tickers at 20 Hz cost more CPU than the sends
// they pace). A few shards, not one, so that a write blocked on one slow
// connection delays only its shard.
type sendShard struct {
	queue   sendQueue
	payload []byte
	// stampSender writes the sender's client number into bytes 16-23
	// (-protocol centrifugo: the publication has no sender field).
	stampSender bool
	sent        atomic.Uint64           // sends so far, for the progress line
	lag         *hdrhistogram.Histogram // how late sends went out vs their schedule; owned by run
}

func newSendShard(payloadSize int, stampSender bool) *sendShard {
	p := make([]byte, payloadSize)
	for i := payloadHeader; i < len(p); i++ {
		p[i] = byte(i) // filler; the relay treats payloads as opaque
	}
	return &sendShard{payload: p, stampSender: stampSender, lag: newHist()}
}

// add schedules c with a random phase within one period, so that clients do
// not all fire together.
func (sh *sendShard) add(c *simClient, period int64) {
	c.next = rand.Int64N(period)
	sh.queue = append(sh.queue, c)
}

// run sends until end (ns since start) or ctx is done. Sends are paced on an
// absolute schedule (next += period), so the rate does not drift, and a
// shard that falls behind catches up instead of silently sending less: the
// delay shows in the send-lag histogram instead.
func (sh *sendShard) run(ctx context.Context, s *sim, start time.Time, period, end int64) {
	heap.Init(&sh.queue)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	winStart, winEnd := s.winStart.Load(), s.winEnd.Load()
	for len(sh.queue) > 0 {
		c := sh.queue[0]
		if c.next >= end {
			return // the earliest is past the end: so is everyone else
		}
		now := int64(time.Since(start))
		if wait := c.next - now; wait > 0 {
			timer.Reset(time.Duration(wait))
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
			continue
		}
		if c.dead.Load() {
			heap.Pop(&sh.queue)
			continue
		}
		_ = sh.lag.RecordValue(clampUs((now - c.next) / 1000))

		c.seq++
		sentAt := time.Now().UnixNano()
		binary.LittleEndian.PutUint64(sh.payload[0:], uint64(sentAt))
		binary.LittleEndian.PutUint64(sh.payload[8:], c.seq)
		var err error
		switch {
		case c.sess != nil:
			err = c.sess.Send(sh.payload, client.SendOptions{})
			if errors.Is(err, client.ErrBacklogFull) {
				// Reconnecting for long: this send is dropped (not counted
				// as sent), the next ones go on.
				s.errors.add("send:backlog_full")
				c.next += period
				heap.Fix(&sh.queue, 0)
				continue
			}
		case c.cf == nil:
			err = c.c.Send(sh.payload, client.SendOptions{})
		default:
			if sh.stampSender {
				binary.LittleEndian.PutUint64(sh.payload[payloadHeader:], uint64(c.idx))
			}
			err = c.cf.Publish(c.channel, sh.payload)
		}
		if err != nil {
			// The connection is gone; its OnClose counts the disconnect,
			// this counts the send that found it gone first.
			if !c.dead.Swap(true) {
				s.errors.add("send")
			}
			heap.Pop(&sh.queue)
			continue
		}
		c.sentTotal++
		if sentAt >= winStart && sentAt < winEnd {
			c.sentMeasured++
		}
		sh.sent.Add(1)
		c.next += period
		heap.Fix(&sh.queue, 0)
	}
}

// sendQueue is a min-heap of clients by next send time.
type sendQueue []*simClient

func (q sendQueue) Len() int           { return len(q) }
func (q sendQueue) Less(i, j int) bool { return q[i].next < q[j].next }
func (q sendQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *sendQueue) Push(x any)        { *q = append(*q, x.(*simClient)) }
func (q *sendQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return c
}
