package wsproto

import (
	"encoding/binary"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxCloseReasonBytes is the longest close reason that fits a Close frame:
// 125 bytes of control payload minus the 2-byte code.
const MaxCloseReasonBytes = ws.MaxControlFramePayloadSize - 2

// HeaderLen returns the size of the header of an unmasked (server) frame
// carrying payloadLen bytes: 2, 4 or 10. It panics if payloadLen < 0.
func HeaderLen(payloadLen int) int {
	switch {
	case payloadLen < 0:
		panic("wsproto: negative payload length")
	case payloadLen < 126:
		return 2
	case payloadLen <= 0xffff:
		return 4
	default:
		return 10
	}
}

// PutHeader writes the header of a final, unmasked frame with opcode op and
// payloadLen bytes of payload into dst[0:HeaderLen(payloadLen)]. It panics
// if dst is shorter. Used to fill the headroom the caller reserved in front
// of an already encoded payload, so that header and payload go out in one
// write.
func PutHeader(dst []byte, op ws.OpCode, payloadLen int) {
	n := HeaderLen(payloadLen)
	_ = dst[n-1] // one bounds check
	dst[0] = 0x80 | byte(op)&0x0f
	switch n {
	case 2:
		dst[1] = byte(payloadLen)
	case 4:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:4], uint16(payloadLen))
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:10], uint64(payloadLen))
	}
}

// AppendFrame appends a final, unmasked frame (header and payload) to dst
// and returns the extended slice. It grows dst at most once and does not
// allocate when dst has room.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	hl := HeaderLen(len(payload))
	dst = slices.Grow(dst, hl+len(payload))
	n := len(dst)
	dst = dst[:n+hl]
	PutHeader(dst[n:], op, len(payload))
	return append(dst, payload...)
}

// AppendClose appends a Close frame with code and reason to dst.
//
// Code 0 or 1005 (no status) produces an empty Close payload, which is how
// RFC 6455 says "no status". Any other code that must not be sent (1004,
// 1006, 1015, unassigned, out of range) is a server bug and is replaced by
// 1011, so that the client does not fail the connection with 1002 on our
// account. reason is made valid UTF-8 and truncated to 123 bytes on a rune
// boundary.
func AppendClose(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return AppendFrame(dst, ws.OpClose, nil)
	}
	if !validCloseCode(code) {
		code = ws.StatusInternalServerError
	}
	reason = truncateReason(reason)
	n := 2 + len(reason)
	hl := HeaderLen(n)
	dst = slices.Grow(dst, hl+n)
	at := len(dst)
	dst = dst[:at+hl+2]
	PutHeader(dst[at:], ws.OpClose, n)
	binary.BigEndian.PutUint16(dst[at+hl:], uint16(code))
	return append(dst, reason...)
}

// truncateReason returns reason as valid UTF-8 of at most
// MaxCloseReasonBytes, cut on a rune boundary so that the client does not
// fail the connection with 1007 over our own close reason.
func truncateReason(reason string) string {
	if !utf8.ValidString(reason) {
		// Rare (reasons are ours, mostly constants), so the allocation is fine.
		reason = strings.ToValidUTF8(reason, "\uFFFD")
	}
	if len(reason) <= MaxCloseReasonBytes {
		return reason
	}
	cut := MaxCloseReasonBytes
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}
