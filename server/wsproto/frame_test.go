package wsproto

import (
	"bytes"
	"strings"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

func TestDecodeSingleFrameAliasesInput(t *testing.T) {
	t.Parallel()
	in := frame(ws.OpBinary, []byte("hello")).bytes()
	d := NewDecoder(Limits{})
	m, n, ok, err := d.Next(in)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, len(in), n)
	require.Equal(t, Binary, m.Kind)
	require.Equal(t, "hello", string(m.Payload))
	// Unmasked in place: the payload is the tail of the input itself.
	require.Same(t, &in[len(in)-5], &m.Payload[0])
	require.Equal(t, 5, cap(m.Payload), "capacity is clipped so appends cannot overwrite the next frame")
}

func TestDecodeZeroValueDecoder(t *testing.T) {
	t.Parallel()
	var d Decoder
	m, _, ok, err := d.Next(frame(ws.OpText, []byte("hi")).bytes())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, Text, m.Kind)
	require.Equal(t, "hi", string(m.Payload))

	// Default limits apply to a zero Decoder.
	_, _, _, err = d.Next(frame(ws.OpBinary, nil).declare(DefaultMaxMessageBytes + 1).bytes())
	requireClose(t, err, ws.StatusMessageTooBig)
}

func TestDecodeKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		op   ws.OpCode
		kind MessageKind
	}{
		{op: ws.OpBinary, kind: Binary},
		{op: ws.OpText, kind: Text},
		{op: ws.OpPing, kind: Ping},
		{op: ws.OpPong, kind: Pong},
	} {
		out := decodeWhole(Limits{}, frame(tc.op, []byte("x")).bytes())
		require.Equal(t, []decoded{{Kind: tc.kind, Payload: "x"}}, out.Msgs, tc.kind.String())
	}
}

func TestDecodeLengthForms(t *testing.T) {
	t.Parallel()
	l := Limits{MaxMessageBytes: 1 << 20}
	for _, tc := range []struct {
		name  string
		f     *cframe
		size  int
		hsize int
	}{
		{name: "7-bit 0", f: frame(ws.OpBinary, nil), size: 0, hsize: 6},
		{name: "7-bit 125", f: frame(ws.OpBinary, bytes.Repeat([]byte{'a'}, 125)), size: 125, hsize: 6},
		{name: "16-bit 126", f: frame(ws.OpBinary, bytes.Repeat([]byte{'b'}, 126)), size: 126, hsize: 8},
		{name: "16-bit 65535", f: frame(ws.OpBinary, bytes.Repeat([]byte{'c'}, 65535)), size: 65535, hsize: 8},
		{name: "64-bit 65536", f: frame(ws.OpBinary, bytes.Repeat([]byte{'d'}, 65536)), size: 65536, hsize: 14},
		// RFC 6455 asks senders for minimal encodings; receivers accept others.
		{name: "16-bit form for 5", f: frame(ws.OpBinary, []byte("abcde")).form16(), size: 5, hsize: 8},
		{name: "64-bit form for 5", f: frame(ws.OpBinary, []byte("abcde")).form64(), size: 5, hsize: 14},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := tc.f.bytes()
			require.Len(t, in, tc.hsize+tc.size)
			d := NewDecoder(l)
			// One byte short: need more, nothing consumed.
			_, n, ok, err := d.Next(in[:len(in)-1])
			require.NoError(t, err)
			require.False(t, ok)
			require.Zero(t, n)
			m, n, ok, err := d.Next(in)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, len(in), n)
			require.Equal(t, string(tc.f.payload), string(m.Payload))
		})
	}
}

func TestDecodeByteAtATime(t *testing.T) {
	t.Parallel()
	in := cat(
		frame(ws.OpBinary, []byte("first")).bytes(),
		frame(ws.OpPing, []byte("p")).bytes(),
		frame(ws.OpBinary, []byte("ab")).more().bytes(),
		frame(ws.OpPong, nil).bytes(),
		frame(ws.OpContinuation, []byte("cd")).bytes(),
		frame(ws.OpBinary, bytes.Repeat([]byte{7}, 300)).bytes(),
		frame(ws.OpClose, closePayload(1000, "bye")).bytes(),
	)
	want := []decoded{
		{Kind: Binary, Payload: "first"},
		{Kind: Ping, Payload: "p"},
		{Kind: Pong, Payload: ""},
		{Kind: Binary, Payload: "abcd"},
		{Kind: Binary, Payload: string(bytes.Repeat([]byte{7}, 300))},
		{Kind: Close, Payload: string(closePayload(1000, "bye")), CloseCode: 1000, CloseReason: "bye"},
	}
	whole := decodeWhole(Limits{}, in)
	require.Equal(t, outcome{Msgs: want}, whole)

	// One byte at a time: every call before a frame completes is "need
	// more"; a message appears exactly when its last byte arrives.
	f := newFeeder(Limits{})
	ends := map[int]bool{}
	off := 0
	for _, fr := range []struct {
		b      []byte
		yields bool
	}{
		{b: frame(ws.OpBinary, []byte("first")).bytes(), yields: true},
		{b: frame(ws.OpPing, []byte("p")).bytes(), yields: true},
		{b: frame(ws.OpBinary, []byte("ab")).more().bytes(), yields: false}, // absorbed
		{b: frame(ws.OpPong, nil).bytes(), yields: true},
		{b: frame(ws.OpContinuation, []byte("cd")).bytes(), yields: true},
		{b: frame(ws.OpBinary, bytes.Repeat([]byte{7}, 300)).bytes(), yields: true},
		{b: frame(ws.OpClose, closePayload(1000, "bye")).bytes(), yields: true},
	} {
		off += len(fr.b)
		ends[off] = fr.yields
	}
	require.Equal(t, len(in), off)
	buf := append([]byte(nil), in...)
	for i := range buf {
		got := f.feed(buf[i : i+1])
		if ends[i+1] {
			require.Equal(t, 1, got, "byte %d completes a message", i)
		} else {
			require.Zero(t, got, "byte %d", i)
		}
	}
	require.Equal(t, outcome{Msgs: want}, f.result())
	require.Equal(t, whole, decodeBytewise(Limits{}, in))
}

func TestDecodeSeveralFramesInOneBuffer(t *testing.T) {
	t.Parallel()
	in := cat(
		frame(ws.OpBinary, []byte("one")).bytes(),
		frame(ws.OpBinary, []byte("two")).bytes(),
		frame(ws.OpPing, []byte("three")).bytes(),
		frame(ws.OpBinary, []byte("four")).bytes()[:5], // partial tail
	)
	d := NewDecoder(Limits{})
	var got []string
	off := 0
	for {
		m, n, ok, err := d.Next(in[off:])
		require.NoError(t, err)
		off += n
		if !ok {
			break
		}
		got = append(got, m.Kind.String()+":"+string(m.Payload))
	}
	require.Equal(t, []string{"Binary:one", "Binary:two", "Ping:three"}, got)
	require.Equal(t, len(in)-5, off, "the partial frame stays unconsumed")
}

func TestDecodeFragmentedWithPingBetween(t *testing.T) {
	t.Parallel()
	f1 := frame(ws.OpBinary, []byte("ab")).more().bytes()
	ping := frame(ws.OpPing, []byte("are you there")).bytes()
	f2 := frame(ws.OpContinuation, []byte("cd")).more().bytes()
	f3 := frame(ws.OpContinuation, []byte("ef")).bytes()
	in := cat(f1, ping, f2, f3)

	d := NewDecoder(Limits{})
	m, n, ok, err := d.Next(in)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, Ping, m.Kind, "a control frame between fragments comes out at once")
	require.Equal(t, "are you there", string(m.Payload))
	require.Equal(t, len(f1)+len(ping), n, "the absorbed fragment is consumed with it")

	m, n2, ok, err := d.Next(in[n:])
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, Binary, m.Kind)
	require.Equal(t, "abcdef", string(m.Payload))
	require.Equal(t, len(f2)+len(f3), n2)
	// Assembled: the payload is the decoder's buffer, not the input.
	inStart, inEnd := uintptr(unsafe.Pointer(&in[0])), uintptr(unsafe.Pointer(&in[len(in)-1]))
	p := uintptr(unsafe.Pointer(&m.Payload[0]))
	require.False(t, p >= inStart && p <= inEnd, "assembled payload must not alias the input")
}

func TestDecodeAbsorbedFragmentsAreConsumed(t *testing.T) {
	t.Parallel()
	f1 := frame(ws.OpText, []byte("hel")).more().bytes()
	f2 := frame(ws.OpContinuation, []byte("lo ")).more().bytes()
	f3 := frame(ws.OpContinuation, []byte("world")).bytes()
	d := NewDecoder(Limits{})

	// Two whole fragments and part of the third: need more, but the two are
	// consumed (their bytes were copied into the assembly buffer).
	in := cat(f1, f2, f3[:3])
	_, n, ok, err := d.Next(in)
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, len(f1)+len(f2), n)

	m, n, ok, err := d.Next(f3)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, len(f3), n)
	require.Equal(t, Text, m.Kind)
	require.Equal(t, "hello world", string(m.Payload))
	require.NotNil(t, d.asm)

	// The next call takes the buffer back.
	_, _, ok, err = d.Next(nil)
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, d.asm)
}

func TestDecodeEmptyFragments(t *testing.T) {
	t.Parallel()
	in := cat(
		frame(ws.OpBinary, nil).more().bytes(),
		frame(ws.OpContinuation, nil).more().bytes(),
		frame(ws.OpContinuation, nil).bytes(),
	)
	out := decodeWhole(Limits{}, in)
	require.Equal(t, []decoded{{Kind: Binary, Payload: ""}}, out.Msgs)
	require.Zero(t, out.ErrCode)
}

func requireClose(t *testing.T, err error, code ws.StatusCode) {
	t.Helper()
	require.Error(t, err)
	var ce *CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, code, ce.Code, "reason: %s", ce.Reason)
	require.LessOrEqual(t, len(ce.Reason), MaxCloseReasonBytes)
}

func TestDecodeProtocolErrors(t *testing.T) {
	t.Parallel()
	frag := frame(ws.OpBinary, []byte("a")).more().bytes()
	for _, tc := range []struct {
		name string
		in   []byte
		code ws.StatusCode
	}{
		{name: "unmasked binary", in: frame(ws.OpBinary, []byte("x")).noMask().bytes(), code: 1002},
		{name: "unmasked ping", in: frame(ws.OpPing, nil).noMask().bytes(), code: 1002},
		{name: "rsv1", in: frame(ws.OpBinary, []byte("x")).withRsv(4).bytes(), code: 1002},
		{name: "rsv2", in: frame(ws.OpBinary, []byte("x")).withRsv(2).bytes(), code: 1002},
		{name: "rsv3", in: frame(ws.OpBinary, []byte("x")).withRsv(1).bytes(), code: 1002},
		{name: "rsv on control", in: frame(ws.OpPing, nil).withRsv(4).bytes(), code: 1002},
		{name: "opcode 3", in: frame(3, nil).bytes(), code: 1002},
		{name: "opcode 7", in: frame(7, nil).bytes(), code: 1002},
		{name: "opcode 0xB", in: frame(0xb, nil).bytes(), code: 1002},
		{name: "opcode 0xF", in: frame(0xf, nil).bytes(), code: 1002},
		{name: "64-bit length MSB", in: frame(ws.OpBinary, nil).form64().declare(1 << 63).bytes(), code: 1002},
		{name: "ping without FIN", in: frame(ws.OpPing, nil).more().bytes(), code: 1002},
		{name: "close without FIN", in: frame(ws.OpClose, nil).more().bytes(), code: 1002},
		{name: "ping of 126 bytes", in: frame(ws.OpPing, bytes.Repeat([]byte{1}, 126)).bytes(), code: 1002},
		{name: "pong announcing 126", in: frame(ws.OpPong, nil).declare(126).bytes(), code: 1002},
		{name: "continuation first", in: frame(ws.OpContinuation, []byte("x")).bytes(), code: 1002},
		{name: "final continuation first", in: frame(ws.OpContinuation, nil).more().bytes(), code: 1002},
		{name: "binary inside fragmented", in: cat(frag, frame(ws.OpBinary, []byte("b")).bytes()), code: 1002},
		{name: "text inside fragmented", in: cat(frag, frame(ws.OpText, []byte("b")).more().bytes()), code: 1002},
		{name: "continuation after end", in: cat(frag, frame(ws.OpContinuation, nil).bytes(), frame(ws.OpContinuation, nil).bytes()), code: 1002},
		{name: "close length 1", in: frame(ws.OpClose, []byte{3}).bytes(), code: 1002},
		{name: "close reason not UTF-8", in: frame(ws.OpClose, closePayload(1000, "ok\xff")).bytes(), code: 1007},
		{name: "close reason truncated rune", in: frame(ws.OpClose, closePayload(1000, "\xe2\x82")).bytes(), code: 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := decodeWhole(Limits{}, tc.in)
			require.Equal(t, tc.code, out.ErrCode, out.ErrText)
			require.Equal(t, out, decodeBytewise(Limits{}, tc.in), "same verdict byte by byte")
		})
	}
}

func TestDecodeCloseCodes(t *testing.T) {
	t.Parallel()
	invalid := []uint16{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}
	valid := []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4500, 4999}
	for _, c := range invalid {
		out := decodeWhole(Limits{}, frame(ws.OpClose, closePayload(c, "")).bytes())
		require.Equal(t, ws.StatusProtocolError, out.ErrCode, "code %d", c)
	}
	for _, c := range valid {
		out := decodeWhole(Limits{}, frame(ws.OpClose, closePayload(c, "why")).bytes())
		require.Zero(t, out.ErrCode, "code %d: %s", c, out.ErrText)
		require.Equal(t, []decoded{{Kind: Close, Payload: string(closePayload(c, "why")), CloseCode: ws.StatusCode(c), CloseReason: "why"}}, out.Msgs)
	}
}

func TestDecodeCloseParsing(t *testing.T) {
	t.Parallel()
	out := decodeWhole(Limits{}, frame(ws.OpClose, nil).bytes())
	require.Equal(t, []decoded{{Kind: Close, CloseCode: ws.StatusNoStatusRcvd}}, out.Msgs)

	out = decodeWhole(Limits{}, frame(ws.OpClose, closePayload(1001, "")).bytes())
	require.Equal(t, ws.StatusGoingAway, out.Msgs[0].CloseCode)
	require.Empty(t, out.Msgs[0].CloseReason)

	reason := strings.Repeat("é", 61) + "x" // 123 bytes, multi-byte runes
	out = decodeWhole(Limits{}, frame(ws.OpClose, closePayload(4000, reason)).bytes())
	require.Equal(t, ws.StatusCode(4000), out.Msgs[0].CloseCode)
	require.Equal(t, reason, out.Msgs[0].CloseReason)

	// The reason is a copy: it survives the input being overwritten.
	in := frame(ws.OpClose, closePayload(1000, "keep")).bytes()
	m, _, ok, err := NewDecoder(Limits{}).Next(in)
	require.NoError(t, err)
	require.True(t, ok)
	clear(in)
	require.Equal(t, "keep", m.CloseReason)

	// A Close between fragments is a control frame like any other.
	out = decodeWhole(Limits{}, cat(
		frame(ws.OpBinary, []byte("a")).more().bytes(),
		frame(ws.OpClose, closePayload(1000, "")).bytes(),
	))
	require.Equal(t, Close, out.Msgs[0].Kind)
}

func TestDecodeTooBigDecidedAtHeader(t *testing.T) {
	t.Parallel()
	// A header announcing 10 MB with nothing behind it fails at once,
	// without waiting for the payload. (TestAllocationBudgets checks that it
	// allocates nothing for it either.)
	hdr := frame(ws.OpBinary, nil).declare(10 << 20).bytes()
	require.Len(t, hdr, 14)
	_, n, ok, err := NewDecoder(Limits{}).Next(hdr)
	require.False(t, ok)
	require.Zero(t, n)
	requireClose(t, err, ws.StatusMessageTooBig)

	// 16-bit form over a small limit.
	_, _, _, err = NewDecoder(Limits{MaxMessageBytes: 1000}).Next(frame(ws.OpBinary, nil).declare(1001).bytes())
	requireClose(t, err, ws.StatusMessageTooBig)

	// Exactly at the limit is fine.
	out := decodeWhole(Limits{MaxMessageBytes: 1000}, frame(ws.OpBinary, make([]byte, 1000)).bytes())
	require.Zero(t, out.ErrCode)
	require.Len(t, out.Msgs, 1)

	// Fragmented: the sum counts, and the fragment that would pass the cap
	// fails on its header, before its payload arrives.
	l := Limits{MaxMessageBytes: 1000}
	in := cat(
		frame(ws.OpBinary, make([]byte, 600)).more().bytes(),
		frame(ws.OpContinuation, make([]byte, 400)).more().bytes(),
		frame(ws.OpContinuation, nil).declare(1).bytes()[:6],
	)
	out = decodeWhole(l, in)
	require.Equal(t, ws.StatusMessageTooBig, out.ErrCode)

	// The same data in a message that stays within the cap is fine.
	in = cat(
		frame(ws.OpBinary, make([]byte, 600)).more().bytes(),
		frame(ws.OpContinuation, make([]byte, 400)).bytes(),
	)
	out = decodeWhole(l, in)
	require.Zero(t, out.ErrCode)
	require.Len(t, out.Msgs[0].Payload, 1000)
}

func TestDecodeTooManyFragments(t *testing.T) {
	t.Parallel()
	l := Limits{MaxFragments: 3}
	ok3 := cat(
		frame(ws.OpBinary, []byte("a")).more().bytes(),
		frame(ws.OpContinuation, []byte("b")).more().bytes(),
		frame(ws.OpContinuation, []byte("c")).bytes(),
	)
	out := decodeWhole(l, ok3)
	require.Equal(t, []decoded{{Kind: Binary, Payload: "abc"}}, out.Msgs)

	four := cat(
		frame(ws.OpBinary, []byte("a")).more().bytes(),
		frame(ws.OpContinuation, nil).more().bytes(),
		frame(ws.OpContinuation, nil).more().bytes(),
		frame(ws.OpContinuation, nil).bytes(),
	)
	out = decodeWhole(l, four)
	require.Equal(t, ws.StatusMessageTooBig, out.ErrCode)
	require.Equal(t, reasonTooManyFragments, out.ErrText)

	// Control frames between fragments do not count.
	withPings := cat(
		frame(ws.OpBinary, []byte("a")).more().bytes(),
		frame(ws.OpPing, nil).bytes(),
		frame(ws.OpPing, nil).bytes(),
		frame(ws.OpPing, nil).bytes(),
		frame(ws.OpContinuation, []byte("b")).bytes(),
	)
	out = decodeWhole(l, withPings)
	require.Zero(t, out.ErrCode)
	require.Len(t, out.Msgs, 4)
}

func TestDecodeErrorIsSticky(t *testing.T) {
	t.Parallel()
	d := NewDecoder(Limits{})
	_, _, _, err := d.Next(frame(ws.OpBinary, nil).noMask().bytes())
	requireClose(t, err, ws.StatusProtocolError)
	_, n, ok, err2 := d.Next(frame(ws.OpBinary, []byte("fine")).bytes())
	require.Same(t, err, err2)
	require.False(t, ok)
	require.Zero(t, n)

	d.Reset()
	m, _, ok, err := d.Next(frame(ws.OpBinary, []byte("fine")).bytes())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "fine", string(m.Payload))
}

func TestDecodeResetReleasesAssembly(t *testing.T) {
	t.Parallel()
	d := NewDecoder(Limits{MaxMessageBytes: 100, MaxFragments: 2})
	_, n, ok, err := d.Next(frame(ws.OpBinary, []byte("part")).more().bytes())
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, 10, n)
	require.NotNil(t, d.asm)
	require.LessOrEqual(t, len(*d.asm), 100)
	d.Reset()
	require.Nil(t, d.asm)
	require.Equal(t, Limits{MaxMessageBytes: 100, MaxFragments: 2}, d.Limits(), "Reset keeps the limits")
	// After Reset a continuation is unexpected again.
	_, _, _, err = d.Next(frame(ws.OpContinuation, nil).bytes())
	requireClose(t, err, ws.StatusProtocolError)
	require.Nil(t, d.asm, "an error releases the buffer too")
}

func TestMessageKindString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "Close", Close.String())
	require.Equal(t, "MessageKind(0)", MessageKind(0).String())
	require.Equal(t, "MessageKind(9)", MessageKind(9).String())
}

func TestCloseErrorMessage(t *testing.T) {
	t.Parallel()
	e := &CloseError{Code: 1009, Reason: "message too big"}
	require.Equal(t, "wsproto: close 1009: message too big", e.Error())
}

func TestValidUTF8(t *testing.T) {
	t.Parallel()
	require.True(t, ValidUTF8([]byte("héllo")))
	require.False(t, ValidUTF8([]byte{0xff}))
	require.False(t, ValidUTF8([]byte("\xed\xa0\x80")), "surrogates are invalid UTF-8")
}
