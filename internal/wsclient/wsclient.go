// Package wsclient is the write half a WebSocket client needs on a hot path:
// masked frames built in place in front of their payload, so that header
// and payload go out in one write with no copy, and write deadlines that do
// not cost a timer update per write. The Go SDK (client) and client-sim's
// Centrifugo client share it.
package wsclient

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"time"

	"github.com/gobwas/ws"
)

// MaxHeader is the largest header of a client frame: 2 bytes, a 64-bit
// length, a 4-byte mask. Buffers passed to Frame keep this many scratch
// bytes in front of the payload.
const MaxHeader = 14

// Frame masks buf[MaxHeader:] in place and writes the header of one final
// frame of opcode op into the scratch bytes just before it. It returns the
// frame: the suffix of buf that starts at the header.
func Frame(op ws.OpCode, buf []byte) []byte {
	payload := buf[MaxHeader:]
	n := len(payload)
	var hs int
	switch {
	case n <= 125:
		hs = 2 + 4
	case n <= 0xffff:
		hs = 4 + 4
	default:
		hs = 10 + 4
	}
	start := MaxHeader - hs
	h := buf[start:MaxHeader]
	h[0] = 0x80 | byte(op) // FIN
	switch {
	case n <= 125:
		h[1] = 0x80 | byte(n) // MASK bit
	case n <= 0xffff:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	// RFC 6455 wants an unpredictable mask; math/rand/v2's global source is
	// ChaCha8 per thread: unpredictable enough, lock-free and allocation-free.
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	copy(h[hs-4:], mask[:])
	ws.Cipher(payload, mask, 0)
	return buf[start:]
}

// WriteDeadline keeps a connection's write deadline at most timeout ahead.
// Moving the deadline costs a runtime timer update per write (3-4% of
// client-sim's CPU), so Refresh moves it only when less than half of the
// timeout is left, or when a write wants a shorter one (a Close). Not safe
// for concurrent use: keep it under the lock that serialises the writes.
type WriteDeadline struct {
	at time.Time
}

// Refresh makes sure conn's write deadline is between timeout/2 and
// timeout from now.
func (d *WriteDeadline) Refresh(conn net.Conn, timeout time.Duration) error {
	now := time.Now()
	if left := d.at.Sub(now); left < timeout/2 || left > timeout {
		d.at = now.Add(timeout)
		return conn.SetWriteDeadline(d.at)
	}
	return nil
}
