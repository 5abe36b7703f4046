package wsproto

import (
	"encoding/binary"
	"math/rand/v2"

	"github.com/gobwas/ws"
)

// cframe builds a client frame byte by byte, able to express anything a
// broken or hostile client might send: any opcode, flags, RSV bits, length
// encoding (including non-minimal ones and lengths it does not deliver), with
// or without a mask.
type cframe struct {
	fin      bool
	rsv      byte // 3 bits
	op       ws.OpCode
	payload  []byte
	unmasked bool
	mask     [4]byte
	form     int     // 0: minimal; 7, 16 or 64: force that length encoding
	announce *uint64 // declared length when it differs from len(payload)
}

// frame returns a final, masked frame.
func frame(op ws.OpCode, payload []byte) *cframe {
	return &cframe{fin: true, op: op, payload: payload, mask: [4]byte{0x37, 0xfa, 0x21, 0x3d}}
}

func (f *cframe) more() *cframe            { f.fin = false; return f }
func (f *cframe) withRsv(r byte) *cframe   { f.rsv = r; return f }
func (f *cframe) noMask() *cframe          { f.unmasked = true; return f }
func (f *cframe) form16() *cframe          { f.form = 16; return f }
func (f *cframe) form64() *cframe          { f.form = 64; return f }
func (f *cframe) declare(n uint64) *cframe { f.announce = &n; return f }

func (f *cframe) bytes() []byte {
	n := uint64(len(f.payload))
	if f.announce != nil {
		n = *f.announce
	}
	b := make([]byte, 0, 14+len(f.payload))
	b0 := f.rsv<<4 | byte(f.op)&0x0f
	if f.fin {
		b0 |= 0x80
	}
	b = append(b, b0)
	var maskBit byte
	if !f.unmasked {
		maskBit = 0x80
	}
	form := f.form
	if form == 0 {
		switch {
		case n < 126:
			form = 7
		case n <= 0xffff:
			form = 16
		default:
			form = 64
		}
	}
	switch form {
	case 7:
		b = append(b, maskBit|byte(n))
	case 16:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, n)
	}
	p := append([]byte(nil), f.payload...)
	if !f.unmasked {
		b = append(b, f.mask[:]...)
		ws.Cipher(p, f.mask, 0)
	}
	return append(b, p...)
}

func cat(frames ...[]byte) []byte {
	var out []byte
	for _, f := range frames {
		out = append(out, f...)
	}
	return out
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// decoded is one Next result kept after the input is gone.
type decoded struct {
	Kind        MessageKind
	Payload     string
	CloseCode   ws.StatusCode
	CloseReason string
}

// outcome is everything a stream of input produced.
type outcome struct {
	Msgs    []decoded
	ErrCode ws.StatusCode // 0: no error
	ErrText string
	Pending int // bytes left unconsumed at the end
}

// feeder plays gnet: it appends arriving chunks to a buffer, calls Next
// until it needs more, and discards consumed bytes, as OnTraffic would.
type feeder struct {
	d       *Decoder
	pending []byte
	out     outcome
	done    bool
	// check, if set, runs after every Next (fuzz invariants).
	check func(d *Decoder, m Message, ok bool)
}

func newFeeder(l Limits) *feeder { return &feeder{d: NewDecoder(l)} }

// feed delivers one chunk. It reports how many messages it yielded.
func (f *feeder) feed(chunk []byte) int {
	if f.done {
		return 0
	}
	f.pending = append(f.pending, chunk...)
	got := 0
	off := 0
	for {
		m, n, ok, err := f.d.Next(f.pending[off:])
		if n < 0 || off+n > len(f.pending) {
			panic("consumed out of range")
		}
		off += n
		if f.check != nil {
			f.check(f.d, m, ok)
		}
		if err != nil {
			ce := err.(*CloseError)
			f.out.ErrCode, f.out.ErrText = ce.Code, ce.Reason
			f.done = true
			break
		}
		if !ok {
			break
		}
		got++
		f.out.Msgs = append(f.out.Msgs, decoded{m.Kind, string(m.Payload), m.CloseCode, m.CloseReason})
	}
	// Discard: what the decoder consumed is gone; the rest moves to the
	// front like a ring buffer's read pointer.
	if off > 0 {
		f.pending = append(f.pending[:0], f.pending[off:]...)
	}
	f.out.Pending = len(f.pending)
	return got
}

func (f *feeder) result() outcome {
	if f.done {
		f.out.Pending = 0 // meaningless after an error
	}
	return f.out
}

// decodeWhole feeds input in one chunk (on a copy: decoding unmasks in place).
func decodeWhole(l Limits, input []byte) outcome {
	f := newFeeder(l)
	f.feed(append([]byte(nil), input...))
	return f.result()
}

// decodeChunks feeds input in chunks of the given sizes, then the rest.
func decodeChunks(l Limits, input []byte, sizes []int) outcome {
	f := newFeeder(l)
	in := append([]byte(nil), input...)
	for _, s := range sizes {
		s = min(s, len(in))
		f.feed(in[:s])
		in = in[s:]
	}
	f.feed(in)
	return f.result()
}

func decodeBytewise(l Limits, input []byte) outcome {
	sizes := make([]int, len(input))
	for i := range sizes {
		sizes[i] = 1
	}
	return decodeChunks(l, input, sizes)
}

func randomSizes(r *rand.Rand, total int) []int {
	var sizes []int
	for total > 0 {
		s := 1 + r.IntN(min(total, 64))
		if r.IntN(8) == 0 {
			s = 0 // an empty read: OnTraffic with nothing new must be harmless
		}
		sizes = append(sizes, s)
		total -= s
	}
	return sizes
}
