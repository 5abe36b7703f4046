package clientip

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// v2Signature starts every version 2 header.
const v2Signature = "\r\n\r\n\x00\r\nQUIT\n"

const (
	v2FixedBytes = 16   // signature, version/command, family/protocol, length
	v2Version    = 0x20 // high nibble of byte 13
	tlvCRC32C    = 0x03 // PP2_TYPE_CRC32C
)

// v2Family describes one valid family/protocol byte (byte 14).
type v2Family struct {
	protocol  Protocol
	addrBytes int // size of the address block
	ipBytes   int // size of one IP address; 0 when the block has none
}

// v2Families are the family/protocol combinations the specification
// defines; any other value must be rejected.
var v2Families = map[byte]v2Family{
	0x00: {ProtocolUnknown, 0, 0},
	0x11: {ProtocolTCP4, 12, 4},
	0x12: {ProtocolUDP4, 12, 4},
	0x21: {ProtocolTCP6, 36, 16},
	0x22: {ProtocolUDP6, 36, 16},
	0x31: {ProtocolUnixStream, 216, 0},
	0x32: {ProtocolUnixDgram, 216, 0},
}

// parseV2 parses a version 2 (binary) header; b[0] is CR.
func parseV2(b []byte) (Header, int, error) {
	if !hasPrefixOf(b, v2Signature) {
		return Header{}, 0, ErrNotProxy
	}
	if len(b) <= len(v2Signature) {
		return Header{}, 0, ErrNeedMore
	}
	verCmd := b[12]
	if verCmd&0xf0 != v2Version {
		return Header{}, 0, badHeader(2, "version nibble %d, want 2", verCmd>>4)
	}
	cmd := Command(verCmd & 0x0f)
	if cmd != CommandLocal && cmd != CommandProxy {
		return Header{}, 0, badHeader(2, "unknown command 0x%x", uint8(cmd))
	}
	if len(b) < 14 {
		return Header{}, 0, ErrNeedMore
	}
	fam, ok := v2Families[b[13]]
	if !ok {
		return Header{}, 0, badHeader(2, "unknown address family and protocol 0x%02x", b[13])
	}
	if len(b) < v2FixedBytes {
		return Header{}, 0, ErrNeedMore
	}
	total := v2FixedBytes + int(binary.BigEndian.Uint16(b[14:16]))
	if total > MaxProxyV2Bytes {
		return Header{}, 0, badHeader(2, "header of %d bytes, above the limit of %d", total, MaxProxyV2Bytes)
	}
	// LOCAL: "the receiver must ... use the real connection endpoints and
	// discard the protocol block including the family which is ignored".
	if cmd == CommandProxy && total < v2FixedBytes+fam.addrBytes {
		return Header{}, 0, badHeader(2, "%d address bytes, %s needs %d", total-v2FixedBytes, fam.protocol, fam.addrBytes)
	}
	if len(b) < total {
		return Header{}, 0, ErrNeedMore
	}
	h := Header{Version: 2, Command: cmd}
	if cmd == CommandLocal {
		return h, total, nil
	}
	h.Protocol = fam.protocol
	hdr := b[:total]
	if fam.ipBytes > 0 {
		addrs := hdr[v2FixedBytes:]
		src, dst := addrs[:fam.ipBytes], addrs[fam.ipBytes:2*fam.ipBytes]
		ports := addrs[2*fam.ipBytes:]
		h.Source = netip.AddrPortFrom(v2Addr(src), binary.BigEndian.Uint16(ports[0:2]))
		h.Destination = netip.AddrPortFrom(v2Addr(dst), binary.BigEndian.Uint16(ports[2:4]))
	}
	if fam.protocol != ProtocolUnknown {
		// For AF_UNSPEC the block has no defined layout: it is skipped.
		if err := checkTLVs(hdr, v2FixedBytes+fam.addrBytes); err != nil {
			return Header{}, 0, err
		}
	}
	return h, total, nil
}

func v2Addr(b []byte) netip.Addr {
	if len(b) == 4 {
		return netip.AddrFrom4([4]byte(b))
	}
	return netip.AddrFrom16([16]byte(b)).Unmap()
}

// checkTLVs walks the TLVs in hdr[off:]: each must fit in the header, and a
// CRC32c TLV, when present, must match the header's checksum. Other TLVs
// are skipped.
func checkTLVs(hdr []byte, off int) error {
	crcAt := -1
	for off < len(hdr) {
		if len(hdr)-off < 3 {
			return badHeader(2, "%d trailing bytes are not a TLV", len(hdr)-off)
		}
		typ := hdr[off]
		n := int(binary.BigEndian.Uint16(hdr[off+1 : off+3]))
		if off+3+n > len(hdr) {
			return badHeader(2, "TLV 0x%02x of %d bytes overruns the header", typ, n)
		}
		if typ == tlvCRC32C {
			if n != 4 || crcAt >= 0 {
				return badHeader(2, "CRC32c TLV must appear once with 4 bytes")
			}
			crcAt = off + 3
		}
		off += 3 + n
	}
	if crcAt < 0 {
		return nil
	}
	// The checksum covers the whole header with its own field zeroed.
	table := crc32.MakeTable(crc32.Castagnoli)
	sum := crc32.Update(0, table, hdr[:crcAt])
	sum = crc32.Update(sum, table, []byte{0, 0, 0, 0})
	sum = crc32.Update(sum, table, hdr[crcAt+4:])
	if want := binary.BigEndian.Uint32(hdr[crcAt:]); sum != want {
		return badHeader(2, "CRC32c 0x%08x, header says 0x%08x", sum, want)
	}
	return nil
}
