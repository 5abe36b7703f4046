package room

import (
	"sync"

	"github.com/tickrelay/tickrelay/proto/wire"
)

// recordHeadroom is the space a record keeps in front of its payload copy
// for the Delivery header, which the worker writes there once it knows the
// sender: the payload is copied once, and a record holds one copy of it.
const recordHeadroom = wire.MaxDeliveryHeader

// Record buffers up to smallRecordBuf stay with their record in the pool:
// most messages are small, and one that is not leaves at most that much
// unused behind a small message that reuses its record. Larger buffers are
// pooled apart, by size class (recordPool.big), so that a big message's
// buffer is reused only for another big message. Kept with their records,
// the buffers of a soak's bursters (64 KiB messages) ended up under honest
// players' 64-byte messages waiting for their tick: 58 MB of the relay's
// heap (a heap profile of the soak).
const (
	smallRecordBuf = 4 << 10
	// bigRecordClasses are for payloads of up to 8, 16, 32, 64 and
	// 128 KiB (plus the header's room); bigger ones are not pooled, so
	// that a huge message does not pin memory in the pool.
	bigRecordClasses = 5
	bigRecordMin     = 8 << 10
)

// bigRecordClass is the smallest class whose buffers hold need bytes, or -1
// when need is above the largest class.
func bigRecordClass(need int) int {
	for c := range bigRecordClasses {
		if need <= bigRecordCap(c) {
			return c
		}
	}
	return -1
}

// bigRecordCap is the capacity of the buffers of class c.
func bigRecordCap(c int) int { return recordHeadroom + bigRecordMin<<c }

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
	// buf holds the payload copy at buf[recordHeadroom:][:payloadLen], the
	// Delivery header in front of it once encoded; enc is the encoded
	// record (header and payload), the bytes copied into frames. Records of
	// events and lockstep inputs use buf from its start.
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
	// heldBack: a Send the transport held back unread (Manager.SendHeldBack).
	heldBack bool
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
// caller's goroutine, the worker frees), and their large buffers apart.
type recordPool struct {
	p   sync.Pool
	big [bigRecordClasses]sync.Pool // *[]byte of capacity bigRecordCap(class)
}

func (p *recordPool) get() *record {
	if r, ok := p.p.Get().(*record); ok {
		return r
	}
	return &record{}
}

func (p *recordPool) put(r *record) {
	if cap(r.buf) > smallRecordBuf {
		p.putBuffer(r.buf)
		r.buf = nil
	}
	if cap(r.targets) > wire.MaxTargets {
		r.targets = nil
	}
	*r = record{buf: r.buf[:0], targets: r.targets[:0]}
	p.p.Put(r)
}

// buffer returns a buffer of length recordHeadroom and capacity at least
// need, r's own if it has room: from a size class above smallRecordBuf.
func (p *recordPool) buffer(r *record, need int) []byte {
	if cap(r.buf) >= need {
		return r.buf[:recordHeadroom]
	}
	if cap(r.buf) > smallRecordBuf {
		p.putBuffer(r.buf)
	}
	if need <= smallRecordBuf {
		return make([]byte, recordHeadroom, need)
	}
	c := bigRecordClass(need)
	if c < 0 {
		return make([]byte, recordHeadroom, need)
	}
	if b, ok := p.big[c].Get().(*[]byte); ok {
		return (*b)[:recordHeadroom]
	}
	return make([]byte, recordHeadroom, bigRecordCap(c))
}

// putBuffer keeps b for reuse when its capacity is a class's; others (too
// big, or grown by an append) are left to the GC.
func (p *recordPool) putBuffer(b []byte) {
	if c := bigRecordClass(cap(b)); c >= 0 && cap(b) == bigRecordCap(c) {
		b = b[:0]
		p.big[c].Put(&b)
	}
}

// fill copies a Send into r. The payload and targets of msg are borrowed by
// the caller and invalid after Send returns, hence the copies.
func (r *record) fill(p *recordPool, requestID uint32, msg *wire.SendView) {
	r.buf = append(p.buffer(r, recordHeadroom+len(msg.Payload)), msg.Payload...)
	r.payloadLen = len(msg.Payload)
	r.targets = append(r.targets[:0], msg.Targets...)
	r.requestID = requestID
	r.seq = msg.Seq
	r.kind = msg.Kind
	r.echo = msg.Echo
	r.latestOnly = msg.LatestOnly
}

// encode makes the Delivery record of r (sent by player sender): its header
// written just in front of the payload copy. Called by the worker when it
// routes the message.
func (r *record) encode(sender uint32) {
	r.sender = sender
	var scratch [wire.MaxDeliveryHeader]byte
	h := wire.AppendDeliveryHeader(scratch[:0], sender, r.kind, r.payloadLen)
	start := recordHeadroom - len(h)
	copy(r.buf[start:], h)
	r.enc = r.buf[start : recordHeadroom+r.payloadLen]
}
