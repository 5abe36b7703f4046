package wsproto

import (
	"encoding/binary"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Defaults for zero Limits fields.
const (
	DefaultMaxMessageBytes = 64 << 10
	DefaultMaxFragments    = 128
)

// Limits bound what one connection's decoder accepts and holds.
type Limits struct {
	// MaxMessageBytes bounds the payload of one data message, whether it
	// arrives in one frame or in fragments. It is enforced when a frame
	// header arrives, before its payload: a header whose length would pass
	// the cap fails at once with 1009. Zero (or negative) means 64 KiB.
	MaxMessageBytes int
	// MaxFragments bounds the number of frames of one fragmented message,
	// empty ones included, so that a client cannot keep a message open
	// forever with empty continuations. Passing it fails with 1009. Zero (or
	// negative) means 128.
	MaxFragments int
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxFragments <= 0 {
		l.MaxFragments = DefaultMaxFragments
	}
	return l
}

// MessageKind says what a decoded Message is.
type MessageKind uint8

// Message kinds. The zero value is not a kind.
const (
	Binary MessageKind = iota + 1
	Text
	Ping
	Pong
	Close
)

var kindNames = [...]string{Binary: "Binary", Text: "Text", Ping: "Ping", Pong: "Pong", Close: "Close"}

func (k MessageKind) String() string {
	if k == 0 || int(k) >= len(kindNames) {
		return "MessageKind(" + strconv.Itoa(int(k)) + ")"
	}
	return kindNames[k]
}

func kindOf(op ws.OpCode) MessageKind {
	switch op {
	case ws.OpText:
		return Text
	case ws.OpBinary:
		return Binary
	case ws.OpPing:
		return Ping
	case ws.OpPong:
		return Pong
	default: // ws.OpClose: CheckHeader let nothing else through
		return Close
	}
}

// Message is one decoded data message or control frame.
type Message struct {
	Kind MessageKind
	// Payload is unmasked. It is valid until the next call to Next or Reset
	// on the same Decoder, and, when it points into the input, only as long
	// as the caller keeps those input bytes (gnet: until Discard or the end
	// of OnTraffic). Copy it to keep it longer or to hand it to another
	// goroutine. For a Close it is the raw close payload (code + reason),
	// which a server echoes back.
	Payload []byte
	// CloseCode and CloseReason are set for Close only. CloseCode is 1005
	// (ws.StatusNoStatusRcvd) when the payload was empty; never send 1005
	// back (AppendClose turns it into an empty payload). CloseReason is a
	// copy and stays valid.
	CloseCode   ws.StatusCode
	CloseReason string
}

// CloseError is a protocol violation found by the Decoder: close the
// connection with a Close frame carrying Code and Reason (AppendClose), then
// close TCP. Reason is at most 123 bytes.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return "wsproto: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

// Reasons of the CloseErrors the Decoder returns. They are fixed strings, so
// a CloseError costs one small allocation on a path that ends a connection.
const (
	reasonLengthMSB        = "frame length has the most significant bit set"
	reasonTooBig           = "message too big"
	reasonTooManyFragments = "too many fragments"
	reasonCloseLength1     = "close payload of 1 byte"
	reasonCloseCode        = "invalid close code"
	reasonCloseUTF8        = "close reason is not UTF-8"
)

func closeError(code ws.StatusCode, reason string) *CloseError {
	return &CloseError{Code: code, Reason: reason}
}

// ValidUTF8 reports whether b is valid UTF-8. A Text message must be (RFC
// 6455 section 8.1); the caller checks it where it accepts Text (the echo
// endpoint) and closes with 1007 (CauseInvalidData) otherwise.
func ValidUTF8(b []byte) bool { return utf8.Valid(b) }

// Decoder decodes the frames a client sends to the server, one connection's
// worth, from bytes the caller has buffered. It never reads a socket, never
// blocks, and unmasks payloads in place in the caller's buffer.
//
// The zero value is ready to use with default Limits. A Decoder is not safe
// for concurrent use: it belongs to the event loop that owns the connection.
type Decoder struct {
	// The limits (zero: the default) as 32-bit numbers: a Decoder is part of
	// what every idle connection costs, and 32 bytes (a size class) is what
	// this struct fits in with them. Message sizes past 2 GiB are no WebSocket
	// relay's business.
	maxMessageBytes int32
	maxFragments    int32

	// asm assembles a fragmented message. It comes from assemblyPool when
	// the first non-empty fragment arrives and goes back when the message has
	// been handed out (at the next Next), on error, or on Reset, so that an
	// idle connection holds no assembly memory. Most clients (browsers
	// included) never fragment, and then asm stays nil.
	asm *[]byte
	// err is sticky: once the stream is broken every later call returns it.
	err *CloseError
	// fragments counts the frames of the message being assembled so far
	// (at most Limits.MaxFragments, which the relay bounds to 2^20).
	fragments int32
	// assembling: a Text or Binary frame without FIN was received and its
	// final continuation has not been.
	assembling bool
	asmKind    MessageKind
	// lent: the last Message returned points into asm; recycle it at the
	// next call.
	lent bool
}

// NewDecoder returns a Decoder with limits l (zero fields mean defaults).
func NewDecoder(l Limits) *Decoder {
	l = l.withDefaults()
	return &Decoder{maxMessageBytes: clampInt32(l.MaxMessageBytes), maxFragments: clampInt32(l.MaxFragments)}
}

func clampInt32(n int) int32 { return int32(min(n, math.MaxInt32)) }

// Limits returns the decoder's limits, defaults resolved (a zero Decoder
// has the defaults).
func (d *Decoder) Limits() Limits {
	return Limits{MaxMessageBytes: int(d.maxMessageBytes), MaxFragments: int(d.maxFragments)}.withDefaults()
}

// Assembling reports whether a fragmented message is open: its first
// fragment arrived and its last has not.
func (d *Decoder) Assembling() bool { return d.assembling }

// Next decodes at most one message from in: a data message (from one frame,
// or assembled from fragments) or one control frame.
//
// in is the caller's buffered, not yet consumed input. Next unmasks payloads
// in place, so in must be writable and must not be decoded twice.
//
// consumed is how many bytes at the front of in Next has used, whatever the
// other results; the caller discards exactly those. A frame is consumed only
// when it is complete. Fragments of a message are consumed as they arrive
// (their payload is copied into the Decoder's assembly buffer), so Next can
// return ok=false with consumed > 0: the fragments are absorbed and the rest
// of the message is not here yet. Never feed the same bytes twice.
//
// Results:
//   - ok=true, err=nil: msg is complete. A control frame arriving between
//     fragments is returned at once; the assembly is kept.
//   - ok=false, err=nil: need more bytes. Discard consumed, call again when
//     more have arrived (with what is left plus the new bytes).
//   - err != nil: err is a *CloseError; close the connection with its code.
//     The error is sticky: later calls return it until Reset.
//
// The decoder does not act on messages: it does not answer Pings, does not
// check that Text is UTF-8 (see ValidUTF8), and keeps decoding after a Close
// (the caller should stop reading then).
func (d *Decoder) Next(in []byte) (msg Message, consumed int, ok bool, err error) {
	if d.err != nil {
		return Message{}, 0, false, d.err
	}
	if d.lent {
		// The previous message's payload is no longer the caller's.
		d.lent = false
		d.releaseAssembly()
	}
	lim := d.Limits()
	for {
		rest := in[consumed:]
		h, hlen, cerr := parseHeader(rest)
		if cerr != nil {
			return d.fail(consumed, cerr)
		}
		if hlen == 0 {
			return Message{}, consumed, false, nil
		}
		if cerr := d.checkHeader(h, lim); cerr != nil {
			return d.fail(consumed, cerr)
		}
		// Length is at most 125 for control frames and at most
		// MaxMessageBytes for data frames here, so this cannot overflow.
		end := hlen + int(h.Length)
		if len(rest) < end {
			return Message{}, consumed, false, nil
		}
		payload := rest[hlen:end:end]
		ws.Cipher(payload, h.Mask, 0)
		consumed += end
		if h.OpCode.IsControl() {
			m, cerr := controlMessage(h.OpCode, payload)
			if cerr != nil {
				return d.fail(consumed, cerr)
			}
			return m, consumed, true, nil
		}
		if m, complete := d.assemble(h, payload, lim.MaxMessageBytes); complete {
			return m, consumed, true, nil
		}
		// A fragment absorbed: look for the next frame.
	}
}

// checkHeader applies the frame policy to a header, before any of its
// payload is waited for or stored: RFC 6455's rules (mask, RSV bits,
// reserved opcodes, control frame FIN and size, continuation order: all
// 1002) and the decoder's limits on data frames (message size counting what
// is assembled already, and the number of fragments: 1009). A peer's
// declared length never makes the decoder buffer.
func (d *Decoder) checkHeader(h ws.Header, lim Limits) *CloseError {
	state := ws.StateServerSide
	if d.assembling {
		state = state.Set(ws.StateFragmented)
	}
	if e := ws.CheckHeader(h, state); e != nil {
		return closeError(ws.StatusProtocolError, e.Error())
	}
	if !h.OpCode.IsData() {
		return nil
	}
	have := 0
	if d.assembling && d.asm != nil {
		have = len(*d.asm)
	}
	if h.Length > int64(lim.MaxMessageBytes-have) {
		return closeError(ws.StatusMessageTooBig, reasonTooBig)
	}
	if (d.assembling || !h.Fin) && int(d.fragments) >= lim.MaxFragments {
		return closeError(ws.StatusMessageTooBig, reasonTooManyFragments)
	}
	return nil
}

// controlMessage is the Message of a control frame's unmasked payload; a
// Close payload is validated.
func controlMessage(op ws.OpCode, payload []byte) (Message, *CloseError) {
	m := Message{Kind: kindOf(op), Payload: payload}
	if op == ws.OpClose {
		code, reason, cerr := parseClose(payload)
		if cerr != nil {
			return Message{}, cerr
		}
		m.CloseCode, m.CloseReason = code, reason
	}
	return m, nil
}

// assemble takes one checked data frame's unmasked payload. A whole message
// in one frame (the common case) is returned in place; a fragment is copied
// into the assembly buffer (at most limit bytes in all), and the message is
// returned, lent from that buffer, with its final fragment. complete is
// false while fragments are still to come.
func (d *Decoder) assemble(h ws.Header, payload []byte, limit int) (m Message, complete bool) {
	switch {
	case h.OpCode != ws.OpContinuation && h.Fin:
		return Message{Kind: kindOf(h.OpCode), Payload: payload}, true
	case h.OpCode != ws.OpContinuation:
		// First fragment.
		d.assembling = true
		d.asmKind = kindOf(h.OpCode)
		d.fragments = 1
	default:
		d.fragments++
	}
	d.appendAssembly(payload, limit)
	if !h.Fin {
		return Message{}, false
	}
	m = Message{Kind: d.asmKind}
	if d.asm != nil {
		m.Payload = *d.asm
		d.lent = true
	}
	d.assembling = false
	d.asmKind = 0
	d.fragments = 0
	return m, true
}

// Reset returns the assembly buffer to its pool and forgets all state,
// errors included, keeping the limits. Call it when the connection closes;
// the Decoder can then serve a new connection. Payloads returned earlier are
// invalid after Reset.
func (d *Decoder) Reset() {
	d.releaseAssembly()
	*d = Decoder{maxMessageBytes: d.maxMessageBytes, maxFragments: d.maxFragments}
}

func (d *Decoder) fail(consumed int, e *CloseError) (Message, int, bool, error) {
	d.err = e
	d.assembling = false
	d.lent = false
	// The connection is going away; do not make it hold a buffer until the
	// caller gets round to Reset.
	d.releaseAssembly()
	return Message{}, consumed, false, e
}

// parseHeader parses the frame header at the front of b. hlen is 0 when b
// does not yet hold the whole header (2 to 14 bytes). It validates only what
// ws.Header cannot represent (the 64-bit length's most significant bit);
// ws.CheckHeader does the rest.
func parseHeader(b []byte) (h ws.Header, hlen int, err *CloseError) {
	if len(b) < 2 {
		return h, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Rsv = (b0 & 0x70) >> 4
	h.OpCode = ws.OpCode(b0 & 0x0f)
	h.Masked = b1&0x80 != 0
	l7 := b1 & 0x7f
	hlen = 2
	switch l7 {
	case 126:
		hlen += 2
	case 127:
		hlen += 8
	}
	if h.Masked {
		hlen += 4
	}
	if len(b) < hlen {
		return h, 0, nil
	}
	// Non-minimal length encodings (5 in the 16-bit form) are accepted:
	// RFC 6455 makes minimal encoding a duty of the sender only.
	switch l7 {
	case 126:
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		v := binary.BigEndian.Uint64(b[2:10])
		if v>>63 != 0 {
			return h, 0, closeError(ws.StatusProtocolError, reasonLengthMSB)
		}
		h.Length = int64(v)
	default:
		h.Length = int64(l7)
	}
	if h.Masked {
		copy(h.Mask[:], b[hlen-4:hlen])
	}
	return h, hlen, nil
}

// parseClose validates a Close payload (RFC 6455 sections 5.5.1 and 7.4).
// The reason is copied: a Close is rare and the string outlives the buffer.
func parseClose(p []byte) (ws.StatusCode, string, *CloseError) {
	switch len(p) {
	case 0:
		return ws.StatusNoStatusRcvd, "", nil
	case 1:
		return 0, "", closeError(ws.StatusProtocolError, reasonCloseLength1)
	}
	code := ws.StatusCode(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", closeError(ws.StatusProtocolError, reasonCloseCode)
	}
	reason := p[2:]
	if !utf8.Valid(reason) {
		return 0, "", closeError(ws.StatusInvalidFramePayloadData, reasonCloseUTF8)
	}
	return code, string(reason), nil
}

// Assembly buffers are pooled because a client that fragments tends to do it
// for every large message; a connection holds one only while a fragmented
// message is open (and until the next Next after it is handed out).
const (
	assemblyMinCap     = 4 << 10
	assemblyPoolMaxCap = DefaultMaxMessageBytes // bigger ones are left to the GC
)

var assemblyPool = sync.Pool{
	New: func() any { return new([]byte) },
}

// appendAssembly appends p to the assembly buffer. The caller has checked
// that the total stays within limit. The buffer grows with the bytes that
// actually arrived, never to a length a header announced, and never past
// limit.
func (d *Decoder) appendAssembly(p []byte, limit int) {
	if len(p) == 0 {
		return
	}
	if d.asm == nil {
		d.asm = assemblyPool.Get().(*[]byte)
	}
	b := *d.asm
	if need := len(b) + len(p); need > cap(b) {
		// Doubling amortises growth; the cap keeps a buffer grown here
		// within the message limit.
		nc := min(max(2*cap(b), need, assemblyMinCap), limit)
		nb := make([]byte, len(b), nc)
		copy(nb, b)
		b = nb
	}
	*d.asm = append(b, p...)
}

func (d *Decoder) releaseAssembly() {
	if d.asm == nil {
		return
	}
	if cap(*d.asm) <= assemblyPoolMaxCap {
		*d.asm = (*d.asm)[:0]
		assemblyPool.Put(d.asm)
	}
	d.asm = nil
}
