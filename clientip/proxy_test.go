package clientip_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/clientip"
)

const v2Sig = "\r\n\r\n\x00\r\nQUIT\n"

// v2Header builds a version 2 header: verCmd and fam bytes, the address
// block and TLVs, with the length field computed.
func v2Header(verCmd, fam byte, addrs []byte, tlvs ...[]byte) []byte {
	body := append([]byte{}, addrs...)
	for _, tlv := range tlvs {
		body = append(body, tlv...)
	}
	b := append([]byte(v2Sig), verCmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

func tlv(typ byte, value []byte) []byte {
	b := []byte{typ, 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(value)))
	return append(b, value...)
}

func inet4(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

func inet6(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sport), dport)
}

// withCRC32C appends a CRC32c TLV and fills it in as a sender would.
func withCRC32C(verCmd, fam byte, addrs []byte, tlvs ...[]byte) []byte {
	b := v2Header(verCmd, fam, addrs, append(tlvs, tlv(0x03, []byte{0, 0, 0, 0}))...)
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	binary.BigEndian.PutUint32(b[len(b)-4:], sum)
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// validProxyHeaders are complete, valid headers and what they parse to.
func validProxyHeaders() []struct {
	name string
	in   []byte
	want clientip.Header
} {
	maxV6 := "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	maxUnknown := "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
	big := bytes.Repeat([]byte{'x'}, clientip.MaxProxyV2Bytes-16-12-3)
	return []struct {
		name string
		in   []byte
		want clientip.Header
	}{
		{"v1 spec example", []byte("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
			clientip.Header{Version: 1, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP4,
				Source: ap("192.168.0.1:56324"), Destination: ap("192.168.0.11:443")}},
		{"v1 longest TCP4", []byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"),
			clientip.Header{Version: 1, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP4,
				Source: ap("255.255.255.255:65535"), Destination: ap("255.255.255.255:65535")}},
		{"v1 longest TCP6 (104 bytes)", []byte(maxV6),
			clientip.Header{Version: 1, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP6,
				Source:      ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Destination: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
		{"v1 TCP6 compressed", []byte("PROXY TCP6 2001:db8::1 2001:DB8::2 0 7600\r\n"),
			clientip.Header{Version: 1, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP6,
				Source: ap("[2001:db8::1]:0"), Destination: ap("[2001:db8::2]:7600")}},
		{"v1 TCP6 ipv4-mapped is unmapped", []byte("PROXY TCP6 ::ffff:203.0.113.5 ::1 1 2\r\n"),
			clientip.Header{Version: 1, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP6,
				Source: ap("203.0.113.5:1"), Destination: ap("[::1]:2")}},
		{"v1 UNKNOWN short form", []byte("PROXY UNKNOWN\r\n"),
			clientip.Header{Version: 1, Command: clientip.CommandProxy}},
		{"v1 UNKNOWN worst case (107 bytes)", []byte(maxUnknown),
			clientip.Header{Version: 1, Command: clientip.CommandProxy}},
		{"v1 UNKNOWN with anything", []byte("PROXY UNKNOWN whatever ~!\x00\xff\r\n"),
			clientip.Header{Version: 1, Command: clientip.CommandProxy}},

		{"v2 TCP4", v2Header(0x21, 0x11, inet4("203.0.113.5", "10.0.0.1", 51234, 7600)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP4,
				Source: ap("203.0.113.5:51234"), Destination: ap("10.0.0.1:7600")}},
		{"v2 TCP6", v2Header(0x21, 0x21, inet6("2001:db8::5", "2001:db8::1", 1, 443)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP6,
				Source: ap("[2001:db8::5]:1"), Destination: ap("[2001:db8::1]:443")}},
		{"v2 TCP6 ipv4-mapped is unmapped", v2Header(0x21, 0x21, inet6("::ffff:203.0.113.5", "::1", 1, 2)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP6,
				Source: ap("203.0.113.5:1"), Destination: ap("[::1]:2")}},
		{"v2 UDP4", v2Header(0x21, 0x12, inet4("203.0.113.5", "10.0.0.1", 5, 6)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolUDP4,
				Source: ap("203.0.113.5:5"), Destination: ap("10.0.0.1:6")}},
		{"v2 UDP6", v2Header(0x21, 0x22, inet6("2001:db8::5", "2001:db8::1", 5, 6)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolUDP6,
				Source: ap("[2001:db8::5]:5"), Destination: ap("[2001:db8::1]:6")}},
		{"v2 UNIX stream", v2Header(0x21, 0x31, make([]byte, 216)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolUnixStream}},
		{"v2 UNIX dgram", v2Header(0x21, 0x32, make([]byte, 216)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolUnixDgram}},
		{"v2 LOCAL health check", v2Header(0x20, 0x00, nil),
			clientip.Header{Version: 2, Command: clientip.CommandLocal}},
		{"v2 LOCAL ignores its address block", v2Header(0x20, 0x11, []byte{1, 2, 3}),
			clientip.Header{Version: 2, Command: clientip.CommandLocal}},
		{"v2 PROXY UNSPEC skips its block", v2Header(0x21, 0x00, []byte{1, 2, 3, 4, 5}),
			clientip.Header{Version: 2, Command: clientip.CommandProxy}},
		{"v2 TLVs skipped", v2Header(0x21, 0x11, inet4("203.0.113.5", "10.0.0.1", 1, 2),
			tlv(0x04, nil), tlv(0x01, []byte("h2")), tlv(0xEA, []byte("\x01vpce-0123456789abcdef")), tlv(0x05, bytes.Repeat([]byte{7}, 128))),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP4,
				Source: ap("203.0.113.5:1"), Destination: ap("10.0.0.1:2")}},
		{"v2 CRC32c verified", withCRC32C(0x21, 0x11, inet4("203.0.113.5", "10.0.0.1", 1, 2), tlv(0x02, []byte("relay.example"))),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP4,
				Source: ap("203.0.113.5:1"), Destination: ap("10.0.0.1:2")}},
		{"v2 at the size limit", v2Header(0x21, 0x11, inet4("203.0.113.5", "10.0.0.1", 1, 2), tlv(0xE0, big)),
			clientip.Header{Version: 2, Command: clientip.CommandProxy, Protocol: clientip.ProtocolTCP4,
				Source: ap("203.0.113.5:1"), Destination: ap("10.0.0.1:2")}},
	}
}

func TestParseProxyHeaderValid(t *testing.T) {
	t.Parallel()
	const after = "GET /ws HTTP/1.1\r\nHost: relay\r\n\r\n"
	for _, tc := range validProxyHeaders() {
		t.Run(tc.name, func(t *testing.T) {
			in := append(append([]byte{}, tc.in...), after...)
			h, n, err := clientip.ParseProxyHeader(in)
			require.NoError(t, err)
			require.Equal(t, tc.want, h)
			require.Equal(t, len(tc.in), n, "n covers the header only")
			require.Equal(t, after, string(in[n:]))

			for k := 0; k < len(tc.in); k++ {
				_, n, err := clientip.ParseProxyHeader(tc.in[:k])
				require.ErrorIs(t, err, clientip.ErrNeedMore, "prefix of %d bytes", k)
				require.Zero(t, n)
			}
			addr, ok := h.ClientAddr()
			require.Equal(t, h.Source.IsValid(), ok)
			require.Equal(t, h.Source, addr)
		})
	}
	require.Equal(t, 104, len("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"))
}

func TestParseProxyHeaderInvalid(t *testing.T) {
	t.Parallel()
	addrs4 := inet4("203.0.113.5", "10.0.0.1", 1, 2)
	badCRC := withCRC32C(0x21, 0x11, addrs4)
	badCRC[len(badCRC)-1] ^= 1
	twoCRC := v2Header(0x21, 0x11, addrs4, tlv(0x03, []byte{0, 0, 0, 0}), tlv(0x03, []byte{0, 0, 0, 0}))
	overLimit := v2Header(0x21, 0x11, addrs4, tlv(0xE0, make([]byte, clientip.MaxProxyV2Bytes-16-12-3+1)))
	tests := []struct {
		name   string
		in     []byte
		notPP  bool   // ErrNotProxy rather than ErrBadProxyHeader
		detail string // part of the error text
	}{
		{name: "http request", in: []byte("GET / HTTP/1.1\r\n"), notPP: true},
		{name: "tls client hello", in: []byte{0x16, 0x03, 0x01, 0x02, 0x00}, notPP: true},
		{name: "lowercase proxy", in: []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), notPP: true},
		{name: "PROXY without space", in: []byte("PROXY\r\n"), notPP: true},
		{name: "P then garbage", in: []byte("PUT / HTTP/1.1\r\n"), notPP: true},
		{name: "CR then garbage", in: []byte("\r\nGET"), notPP: true},
		{name: "v2 signature broken at last byte", in: []byte("\r\n\r\n\x00\r\nQUIT\r"), notPP: true},

		{name: "v1 lowercase protocol", in: []byte("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), detail: `protocol "t"`},
		{name: "v1 UDP4", in: []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), detail: `protocol "UD"`}, // "U" could still be UNKNOWN; "UD" cannot
		{name: "v1 TCP5", in: []byte("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), detail: `protocol "TCP5"`},
		{name: "v1 UNKNOWNX", in: []byte("PROXY UNKNOWNX\r\n"), detail: `protocol "UNKNOWNX"`},
		{name: "v1 TCP4 then CRLF", in: []byte("PROXY TCP4\r\n"), detail: "TCP4 without addresses"},
		{name: "v1 empty keyword", in: []byte("PROXY \r\n"), detail: `protocol ""`},
		{name: "v1 double space", in: []byte("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n"), detail: "exactly one space"},
		{name: "v1 space before CRLF", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), detail: "5 space-separated fields"},
		{name: "v1 missing port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), detail: "5 space-separated fields"},
		{name: "v1 extra field", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), detail: "5 space-separated fields"},
		{name: "v1 TCP4 with ipv6", in: []byte("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), detail: "TCP4 with non-IPv4"},
		{name: "v1 TCP6 with ipv4", in: []byte("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), detail: "TCP6 with non-IPv6"},
		{name: "v1 leading-zero octet", in: []byte("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n"), detail: `bad address "1.2.3.04"`},
		{name: "v1 octet over 255", in: []byte("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), detail: `bad address`},
		{name: "v1 three octets", in: []byte("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), detail: `bad address`},
		{name: "v1 ipv6 too long", in: []byte("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), detail: `bad address`},
		{name: "v1 zone", in: []byte("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), detail: "unexpected byte 0x25"},
		{name: "v1 leading-zero port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n"), detail: `bad source port "01"`},
		{name: "v1 port over 65535", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"), detail: `bad destination port "65536"`},
		{name: "v1 hex port", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 ff\r\n"), detail: `bad destination port "ff"`},
		{name: "v1 LF only", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), detail: "LF without CR"},
		{name: "v1 CR only", in: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET"), detail: "CR without LF"},
		{name: "v1 UNKNOWN with lone LF", in: []byte("PROXY UNKNOWN a\nb\r\n"), detail: "LF without CR"},
		{name: "v1 no CRLF in 107 bytes", in: []byte("PROXY UNKNOWN " + strings.Repeat("f", 200)), detail: "no CRLF in the first 107 bytes"},
		{name: "v1 CRLF one byte too late", in: []byte("PROXY UNKNOWN " + strings.Repeat("f", 92) + "\r\n"), detail: "no CRLF in the first 107 bytes"},
		{name: "v1 letters in address", in: []byte("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), detail: "unexpected byte 0x6c"},

		{name: "v2 version 1", in: v2Header(0x11, 0x11, addrs4), detail: "version nibble 1"},
		{name: "v2 version 3", in: v2Header(0x31, 0x11, addrs4), detail: "version nibble 3"},
		{name: "v2 command 2", in: v2Header(0x22, 0x11, addrs4), detail: "unknown command 0x2"},
		{name: "v2 family 4", in: v2Header(0x21, 0x41, addrs4), detail: "0x41"},
		{name: "v2 transport 3", in: v2Header(0x21, 0x13, addrs4), detail: "0x13"},
		{name: "v2 INET without address", in: v2Header(0x21, 0x11, addrs4[:11]), detail: "11 address bytes, TCP4 needs 12"},
		{name: "v2 INET6 with INET block", in: v2Header(0x21, 0x21, addrs4), detail: "12 address bytes, TCP6 needs 36"},
		{name: "v2 UNIX too short", in: v2Header(0x21, 0x31, make([]byte, 215)), detail: "UNIX_STREAM needs 216"},
		{name: "v2 trailing bytes", in: v2Header(0x21, 0x11, append(addrs4, 1, 2)), detail: "2 trailing bytes are not a TLV"},
		{name: "v2 TLV overruns", in: v2Header(0x21, 0x11, append(addrs4, 0x04, 0, 5, 1)), detail: "TLV 0x04 of 5 bytes overruns"},
		{name: "v2 bad CRC32c", in: badCRC, detail: "CRC32c"},
		{name: "v2 CRC32c of 3 bytes", in: v2Header(0x21, 0x11, addrs4, tlv(0x03, []byte{1, 2, 3})), detail: "CRC32c TLV must appear once"},
		{name: "v2 two CRC32c", in: twoCRC, detail: "CRC32c TLV must appear once"},
		{name: "v2 over the size limit", in: overLimit[:16], detail: "above the limit of 4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := clientip.ParseProxyHeader(tc.in)
			require.Zero(t, n)
			require.Equal(t, clientip.Header{}, h)
			if tc.notPP {
				require.ErrorIs(t, err, clientip.ErrNotProxy)
				return
			}
			require.ErrorIs(t, err, clientip.ErrBadProxyHeader)
			require.NotErrorIs(t, err, clientip.ErrNeedMore)
			require.ErrorContains(t, err, tc.detail)
			var pe *clientip.ProxyError
			require.ErrorAs(t, err, &pe)
			wantVersion := 2
			if tc.in[0] == 'P' {
				wantVersion = 1
			}
			require.Equal(t, wantVersion, pe.Version)
		})
	}
}

// TestParseProxyHeaderEarlyRejection: garbage is refused as soon as the
// offending byte arrives, not after a full line or block.
func TestParseProxyHeaderEarlyRejection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		result error
	}{
		{"", clientip.ErrNeedMore},
		{"P", clientip.ErrNeedMore},
		{"PROXY", clientip.ErrNeedMore},
		{"PROXY ", clientip.ErrNeedMore},
		{"PROXY T", clientip.ErrNeedMore},
		{"PROXY TX", clientip.ErrBadProxyHeader},
		{"PROXY UNK", clientip.ErrNeedMore},
		{"PROXY TCP4 1.2.3.4 ", clientip.ErrNeedMore},
		{"PROXY TCP4 1.2.3.4 z", clientip.ErrBadProxyHeader},
		{"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", clientip.ErrNeedMore},
		{"X", clientip.ErrNotProxy},
		{"\r\n\r\n\x00", clientip.ErrNeedMore},
		{"\r\n\r\n\x01", clientip.ErrNotProxy},
		{v2Sig, clientip.ErrNeedMore},
		{v2Sig + "\x21", clientip.ErrNeedMore},
		{v2Sig + "\x41", clientip.ErrBadProxyHeader},
		{v2Sig + "\x21\x11\x00", clientip.ErrNeedMore},
		{v2Sig + "\x21\x11\x00\x0b", clientip.ErrBadProxyHeader}, // 11 bytes cannot hold an INET block
		{v2Sig + "\x21\x11\xff\xff", clientip.ErrBadProxyHeader}, // above MaxProxyV2Bytes
		{v2Sig + "\x21\x11\x00\x0c\x01", clientip.ErrNeedMore},
	} {
		_, _, err := clientip.ParseProxyHeader([]byte(tc.in))
		require.ErrorIs(t, err, tc.result, "%q", tc.in)
	}
}

func TestProxyEnumsString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "LOCAL", clientip.CommandLocal.String())
	require.Equal(t, "PROXY", clientip.CommandProxy.String())
	require.Equal(t, "TCP6", clientip.ProtocolTCP6.String())
	require.Equal(t, "UNIX_DGRAM", clientip.ProtocolUnixDgram.String())
	require.Equal(t, "Protocol(42)", clientip.Protocol(42).String())
}
