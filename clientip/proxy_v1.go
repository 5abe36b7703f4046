package clientip

import (
	"bytes"
	"net/netip"
)

// v1Signature starts every version 1 header.
const v1Signature = "PROXY "

// v1 protocol keywords.
const (
	v1TCP4    = "TCP4"
	v1TCP6    = "TCP6"
	v1Unknown = "UNKNOWN"
)

// parseV1 parses a version 1 (text) header; b[0] is 'P'.
func parseV1(b []byte) (Header, int, error) {
	if !hasPrefixOf(b, v1Signature) {
		return Header{}, 0, ErrNotProxy
	}
	if len(b) < len(v1Signature) {
		return Header{}, 0, ErrNeedMore
	}
	end, err := scanV1(b)
	if err != nil {
		return Header{}, 0, err
	}
	h, err := parseV1Line(b[len(v1Signature) : end-2])
	if err != nil {
		return Header{}, 0, err
	}
	return h, end, nil
}

// scanV1 finds the end of the line (the index after its CRLF), checking
// each byte as far as b goes so that garbage is refused as soon as it
// arrives rather than after 107 bytes: the keyword must be TCP4, TCP6 or
// UNKNOWN; after TCP4/TCP6 only address and port characters and spaces may
// follow; CR and LF may appear only together, as the line's end. Each
// decision depends only on the bytes before it, which keeps the answers for
// a prefix and for the whole input consistent.
func scanV1(b []byte) (int, error) {
	const (
		inKeyword = iota
		inAddresses
		inUnknown // the rest of an UNKNOWN line: ignored up to CRLF
	)
	state := inKeyword
	limit := min(len(b), MaxProxyV1Bytes)
	for i := len(v1Signature); i < limit; i++ {
		c := b[i]
		switch {
		case c == '\n':
			return 0, badHeader(1, "LF without CR")
		case c == '\r':
			if state == inKeyword {
				switch kw := b[len(v1Signature):i]; string(kw) {
				case v1Unknown:
				case v1TCP4, v1TCP6:
					return 0, badHeader(1, "%s without addresses", kw)
				default:
					return 0, badV1Keyword(kw)
				}
			}
			if i+1 >= MaxProxyV1Bytes {
				return 0, badHeader(1, "no CRLF in the first %d bytes", MaxProxyV1Bytes)
			}
			if i+1 == len(b) {
				return 0, ErrNeedMore
			}
			if b[i+1] != '\n' {
				return 0, badHeader(1, "CR without LF")
			}
			return i + 2, nil
		}
		switch state {
		case inKeyword:
			kw := b[len(v1Signature) : i+1]
			if c == ' ' {
				switch string(kw[:len(kw)-1]) {
				case v1TCP4, v1TCP6:
					state = inAddresses
				case v1Unknown:
					state = inUnknown
				default:
					return 0, badV1Keyword(kw[:len(kw)-1])
				}
			} else if !isPrefix(kw, v1TCP4) && !isPrefix(kw, v1TCP6) && !isPrefix(kw, v1Unknown) {
				return 0, badV1Keyword(kw)
			}
		case inAddresses:
			if !isV1AddressByte(c) {
				return 0, badHeader(1, "unexpected byte 0x%02x at offset %d", c, i)
			}
		}
	}
	if len(b) >= MaxProxyV1Bytes {
		return 0, badHeader(1, "no CRLF in the first %d bytes", MaxProxyV1Bytes)
	}
	return 0, ErrNeedMore
}

// isPrefix reports whether b is a prefix of s.
func isPrefix(b []byte, s string) bool {
	return len(b) <= len(s) && string(b) == s[:len(b)]
}

func badV1Keyword(kw []byte) error {
	return badHeader(1, "protocol %q is not TCP4, TCP6 or UNKNOWN", kw)
}

// isV1AddressByte reports whether c may appear in the addresses and ports
// of a TCP4/TCP6 line.
func isV1AddressByte(c byte) bool {
	switch {
	case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		return true
	default:
		return c == '.' || c == ':' || c == ' '
	}
}

// parseV1Line parses the line between "PROXY " and CRLF, which scanV1 has
// checked byte by byte.
func parseV1Line(line []byte) (Header, error) {
	h := Header{Version: 1, Command: CommandProxy}
	if bytes.HasPrefix(line, []byte(v1Unknown)) {
		// "the receiver must ignore anything presented before the CRLF"
		return h, nil
	}
	var fields [5][]byte
	rest := line
	for i := range fields {
		f, after, found := bytes.Cut(rest, []byte{' '})
		if len(f) == 0 {
			return Header{}, badHeader(1, "fields must be separated by exactly one space")
		}
		if found == (i == len(fields)-1) {
			return Header{}, badHeader(1, "want 5 space-separated fields after PROXY, line is %q", line)
		}
		fields[i], rest = f, after
	}
	wantV4 := string(fields[0]) == v1TCP4
	h.Protocol = ProtocolTCP6
	if wantV4 {
		h.Protocol = ProtocolTCP4
	}
	src, err := parseV1Addr(fields[1], wantV4)
	if err != nil {
		return Header{}, err
	}
	dst, err := parseV1Addr(fields[2], wantV4)
	if err != nil {
		return Header{}, err
	}
	sport, ok := parseV1Port(fields[3])
	if !ok {
		return Header{}, badHeader(1, "bad source port %q", fields[3])
	}
	dport, ok := parseV1Port(fields[4])
	if !ok {
		return Header{}, badHeader(1, "bad destination port %q", fields[4])
	}
	h.Source = netip.AddrPortFrom(src, sport)
	h.Destination = netip.AddrPortFrom(dst, dport)
	return h, nil
}

func parseV1Addr(f []byte, wantV4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(string(f))
	switch {
	case err != nil:
		return netip.Addr{}, badHeader(1, "bad address %q", f)
	case wantV4 && !a.Is4():
		return netip.Addr{}, badHeader(1, "TCP4 with non-IPv4 address %q", f)
	case !wantV4 && !a.Is6():
		return netip.Addr{}, badHeader(1, "TCP6 with non-IPv6 address %q", f)
	}
	return a.Unmap(), nil
}

// parseV1Port reads a decimal port without leading zeros, as the
// specification requires ("to avoid any possible confusion with octal").
func parseV1Port(f []byte) (uint16, bool) {
	if len(f) == 0 || len(f) > 5 || (f[0] == '0' && len(f) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range f {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 65535 {
		return 0, false
	}
	return uint16(n), true
}
