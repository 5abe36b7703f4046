package roomtest

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

// Peer is a fake room.Peer that decodes and records every message delivered
// to it, releasing the Outbound at once. SetCongested makes it report
// congestion. Close makes any later call an error (see Err), to check that
// nothing reaches a peer after its seat's Disconnect. Goroutine-safe.
type Peer struct {
	// Addr is what Address reports; set it before the seat's first Join.
	Addr netip.Addr

	headroom int

	mu        sync.Mutex
	msgs      []*pb.ServerMessage
	evictions []room.EvictCause
	details   []string
	readies   int
	refusals  []pb.ErrorCode
	err       error
	closed    bool
	notify    chan struct{}

	congested atomic.Bool
	// congestAfter, when positive, turns congestion on once that many
	// messages have been delivered: a peer that falls behind mid-tick.
	congestAfter atomic.Int64
}

// NewPeer returns a Peer. headroom is the Config.Headroom of the Manager it
// is used with (0 for the default); Deliver checks that WithHeader(headroom)
// covers the message.
func NewPeer(headroom int) *Peer {
	if headroom == 0 {
		headroom = 10
	}
	return &Peer{headroom: headroom, notify: make(chan struct{}, 1)}
}

// Deliver decodes and records o, then releases it.
func (p *Peer) Deliver(o *room.Outbound) {
	b := o.Bytes()
	var msg pb.ServerMessage
	err := proto.Unmarshal(b, &msg)
	if err == nil {
		// The hand-written decoder must agree with the generated one.
		var view wire.ServerMessage
		err = wire.ParseServerMessage(b, &view)
	}
	if err == nil && len(o.WithHeader(p.headroom)) != len(b)+p.headroom {
		err = fmt.Errorf("roomtest: WithHeader(%d) is %d bytes for a %d-byte message",
			p.headroom, len(o.WithHeader(p.headroom)), len(b))
	}
	o.Release()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		p.setErrLocked(fmt.Errorf("roomtest: Deliver after Close: %v", &msg))
	case err != nil:
		p.setErrLocked(fmt.Errorf("roomtest: undecodable message: %w", err))
	default:
		p.msgs = append(p.msgs, &msg)
		if n := p.congestAfter.Load(); n > 0 && int64(len(p.msgs)) >= n {
			p.congested.Store(true)
		}
	}
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// Congested reports what SetCongested set.
func (p *Peer) Congested() bool {
	p.mu.Lock()
	if p.closed {
		p.setErrLocked(fmt.Errorf("roomtest: Congested after Close"))
	}
	p.mu.Unlock()
	return p.congested.Load()
}

// Evict records cause and detail.
func (p *Peer) Evict(cause room.EvictCause, detail string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.setErrLocked(fmt.Errorf("roomtest: Evict(%d) after Close", cause))
	}
	p.evictions = append(p.evictions, cause)
	p.details = append(p.details, detail)
}

// Ready counts the call.
func (p *Peer) Ready() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.setErrLocked(fmt.Errorf("roomtest: Ready after Close"))
	}
	p.readies++
}

// JoinRefused records the refusal's code.
func (p *Peer) JoinRefused(code pb.ErrorCode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.setErrLocked(fmt.Errorf("roomtest: JoinRefused after Close"))
	}
	p.refusals = append(p.refusals, code)
}

// Address returns Addr.
func (p *Peer) Address() netip.Addr { return p.Addr }

// Refusals returns the codes of the JoinRefused calls so far.
func (p *Peer) Refusals() []pb.ErrorCode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pb.ErrorCode(nil), p.refusals...)
}

// Readies is the number of Ready calls so far.
func (p *Peer) Readies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readies
}

// EvictionDetails returns the details of the Evict calls so far.
func (p *Peer) EvictionDetails() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.details...)
}

func (p *Peer) setErrLocked(err error) {
	if p.err == nil {
		p.err = err
	}
}

// SetCongested sets what Congested reports.
func (p *Peer) SetCongested(on bool) { p.congested.Store(on) }

// CongestAfter makes the peer report congestion once it has recorded n
// messages in all (n <= 0 turns this off).
func (p *Peer) CongestAfter(n int) { p.congestAfter.Store(int64(n)) }

// Close marks the peer closed: any later call records an error.
func (p *Peer) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// Err returns the first problem seen: an undecodable message, a bad
// headroom, or a call after Close.
func (p *Peer) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Messages returns everything delivered so far, in order.
func (p *Peer) Messages() []*pb.ServerMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*pb.ServerMessage(nil), p.msgs...)
}

// Take returns everything delivered since the last Take and forgets it.
func (p *Peer) Take() []*pb.ServerMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs := p.msgs
	p.msgs = nil
	return msgs
}

// Len is the number of messages recorded and not yet taken.
func (p *Peer) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// Evictions returns the causes of the Evict calls so far.
func (p *Peer) Evictions() []room.EvictCause {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]room.EvictCause(nil), p.evictions...)
}

// Notify is signalled (capacity 1, never blocks) after each Deliver.
func (p *Peer) Notify() <-chan struct{} { return p.notify }
