package room

import (
	"sync"

	"github.com/tickrelay/tickrelay/proto/wire"
)

// maxPooledRecord is the largest record buffer kept for reuse; bigger ones
// are left to the GC so one huge message does not pin memory in the pool.
const maxPooledRecord = 64 << 10

// record is one relayed message or room event on its way to the members of
// a room, encoded once as a Frame field (a Delivery or RoomEvent record) and
// shared by every recipient's pending list or backlog.
//
// Life cycle: Manager.Send takes a record from the pool on the caller's
// goroutine and copies the borrowed payload and targets into it; from the
// moment it is queued, the record belongs to the worker. The worker encodes
// it (it alone knows the sender's player id), counts one reference per
// recipient list holding it, and returns it to the pool when the last
// reference is released. refs is therefore a plain int: only the worker
// touches it.
type record struct {
	// buf holds the payload copy (buf[:payloadLen]) followed by the encoded
	// record; enc is the encoded part, the bytes copied into frames.
	buf        []byte
	enc        []byte
	payloadLen int
	targets    []uint32
	requestID  uint32
	// bcastIdx is 1 + the record's index in its room's broadcast log while
	// it is there (0: not logged). Worker only.
	bcastIdx   int32
	seq        uint64 // Send.seq (0: none)
	sender     uint32 // player id, set by the worker
	kind       uint32
	echo       bool
	latestOnly bool
	event      bool // a RoomEvent record, not a Delivery
	// Lockstep: inputSet marks a Frame.input_set record (of tick tick),
	// lead a Frame.input_lead_us record; a frame holds at most one
	// InputSet, last, with the lead that follows it. An Input on its way
	// to the worker uses tick (its target), checksumTick, checksum and at
	// (arrival, unix nanos).
	inputSet     bool
	lead         bool
	tick         uint64
	checksumTick uint64
	checksum     uint64
	at           int64
	// superseded: a newer latest-only update of the same sender, kind and
	// recipients replaced this one before its tick; lists holding it skip
	// it. Worker only.
	superseded bool
	refs       int32
}

// recordPool recycles records across goroutines (Send allocates on the
// caller's goroutine, the worker frees).
type recordPool struct{ p sync.Pool }

func (p *recordPool) get() *record {
	if r, ok := p.p.Get().(*record); ok {
		return r
	}
	return &record{}
}

func (p *recordPool) put(r *record) {
	if cap(r.buf) > maxPooledRecord {
		r.buf = nil
	}
	if cap(r.targets) > wire.MaxTargets {
		r.targets = nil
	}
	*r = record{buf: r.buf[:0], targets: r.targets[:0]}
	p.p.Put(r)
}

// fill copies a Send into r. The payload and targets of msg are borrowed by
// the caller and invalid after Send returns, hence the copies.
func (r *record) fill(requestID uint32, msg *wire.SendView) {
	// Reserve room for the payload and the encoded record after it, so the
	// worker's encode does not grow the buffer.
	need := 2*len(msg.Payload) + 32
	if cap(r.buf) < need {
		r.buf = make([]byte, 0, need)
	}
	r.buf = append(r.buf[:0], msg.Payload...)
	r.payloadLen = len(msg.Payload)
	r.targets = append(r.targets[:0], msg.Targets...)
	r.requestID = requestID
	r.seq = msg.Seq
	r.kind = msg.Kind
	r.echo = msg.Echo
	r.latestOnly = msg.LatestOnly
}

// encode appends the Delivery record of r (sent by player sender) after the
// payload copy. Called once, by the worker, when it routes the message.
func (r *record) encode(sender uint32) {
	r.sender = sender
	b := wire.AppendDelivery(r.buf[:r.payloadLen], sender, r.kind, r.buf[:r.payloadLen])
	r.buf = b
	r.enc = b[r.payloadLen:]
}
