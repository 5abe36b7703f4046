// Package wstest builds and reads raw WebSocket frames for tests that need
// what no WebSocket library produces: frames cut at any byte, reserved bits,
// bad opcodes, odd fragmentation. It speaks the client side of RFC 6455
// (masked frames out, unmasked frames in).
package wstest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// Opcodes.
const (
	OpCont   byte = 0x0
	OpText   byte = 0x1
	OpBinary byte = 0x2
	OpClose  byte = 0x8
	OpPing   byte = 0x9
	OpPong   byte = 0xA
)

// Frame is one client frame to build.
type Frame struct {
	Fin      bool
	Rsv      byte // the three RSV bits, 0-7
	Op       byte
	Payload  []byte
	Unmasked bool
	// Length, if not negative, is the length the header announces instead
	// of len(Payload).
	Length int
}

// Bytes encodes f as a client would (masked with a fixed key unless
// Unmasked).
func (f Frame) Bytes() []byte {
	b0 := f.Op | f.Rsv<<4
	if f.Fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mask := byte(0x80)
	if f.Unmasked {
		mask = 0
	}
	n := len(f.Payload)
	if f.Length > 0 {
		n = f.Length
	}
	switch {
	case n < 126:
		out = append(out, mask|byte(n))
	case n <= 0xffff:
		out = append(out, mask|126, byte(n>>8), byte(n))
	default:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if f.Unmasked {
		return append(out, f.Payload...)
	}
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key[:]...)
	for i, c := range f.Payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// Data is a final, masked frame of op.
func Data(op byte, payload []byte) Frame { return Frame{Fin: true, Op: op, Payload: payload} }

// Fragment is a masked frame of op with fin as given.
func Fragment(fin bool, op byte, payload []byte) Frame {
	return Frame{Fin: fin, Op: op, Payload: payload}
}

// Close is a Close frame with code (0: empty payload) and reason.
func Close(code uint16, reason string) Frame {
	var p []byte
	if code != 0 {
		p = binary.BigEndian.AppendUint16(nil, code)
		p = append(p, reason...)
	}
	return Data(OpClose, p)
}

// Stream concatenates frames.
func Stream(frames ...Frame) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f.Bytes()...)
	}
	return b
}

// ServerFrame is one frame read from the server.
type ServerFrame struct {
	Fin     bool
	Op      byte
	Payload []byte
}

// CloseCode is the code of a Close frame (1005 when it has none).
func (f ServerFrame) CloseCode() int {
	if len(f.Payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(f.Payload))
}

func (f ServerFrame) String() string {
	if f.Op == OpClose {
		return fmt.Sprintf("Close(%d)", f.CloseCode())
	}
	if len(f.Payload) > 24 {
		return fmt.Sprintf("op%d(%d bytes)", f.Op, len(f.Payload))
	}
	return fmt.Sprintf("op%d(%q)", f.Op, f.Payload)
}

// ErrMasked is returned for a masked server frame (servers must not mask).
var ErrMasked = errors.New("wstest: server frame is masked")

// ReadFrame reads one server frame.
func ReadFrame(r *bufio.Reader) (ServerFrame, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return ServerFrame{}, err
	}
	if hdr[1]&0x80 != 0 {
		return ServerFrame{}, ErrMasked
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return ServerFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return ServerFrame{}, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 64<<20 {
		return ServerFrame{}, fmt.Errorf("wstest: server frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return ServerFrame{}, err
	}
	return ServerFrame{Fin: hdr[0]&0x80 != 0, Op: hdr[0] & 0x0f, Payload: p}, nil
}

// ReadAll reads server frames until the server closes TCP (EOF) and
// returns them; an error other than EOF (a reset, a timeout) is returned
// with the frames read before it.
func ReadAll(r *bufio.Reader) ([]ServerFrame, error) {
	var out []ServerFrame
	for {
		f, err := ReadFrame(r)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

// WriteCut writes b to c in pieces cut at random points (pieces of 1 byte up
// to maxPiece), pausing up to maxPause after each so that the receiver
// reads them separately. The pauses are the condition under test, not a
// synchronisation.
func WriteCut(c net.Conn, b []byte, rng *rand.Rand, maxPiece int, maxPause time.Duration) error {
	for len(b) > 0 {
		n := 1 + rng.IntN(min(maxPiece, len(b)))
		if rng.IntN(3) == 0 {
			n = 1 + rng.IntN(min(8, len(b))) // often inside a header
		}
		if _, err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if len(b) > 0 && maxPause > 0 {
			time.Sleep(time.Duration(rng.Int64N(int64(maxPause))) + time.Millisecond/4)
		}
	}
	return nil
}
