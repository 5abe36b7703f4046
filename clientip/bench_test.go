package clientip_test

import (
	"net/netip"
	"testing"

	"github.com/tickrelay/tickrelay/clientip"
)

func BenchmarkResolve(b *testing.B) {
	tr := testTrusted(b)
	cases := []struct {
		name string
		peer netip.Addr
		xff  []string
	}{
		{"untrusted peer", netip.MustParseAddr("203.0.113.5"), []string{"1.1.1.1"}},
		{"one proxy", netip.MustParseAddr("10.0.0.2"), []string{"203.0.113.5"}},
		{"three hops ipv6", netip.MustParseAddr("10.0.0.2"), []string{"2001:db8:cccc::9, 10.0.0.7", "2001:db8:aaaa::3"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = tr.Resolve(c.peer, c.xff, "")
			}
		})
	}
}

func BenchmarkParseProxyHeader(b *testing.B) {
	cases := []struct {
		name string
		in   []byte
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.5 10.0.0.1 56324 7600\r\nGET / HTTP/1.1\r\n")},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8:cccc::9 2001:db8::1 56324 7600\r\nGET / HTTP/1.1\r\n")},
		{"v2 TCP4", v2Header(0x21, 0x11, inet4("203.0.113.5", "10.0.0.1", 56324, 7600))},
		{"v2 TCP6 with CRC32c", withCRC32C(0x21, 0x21, inet6("2001:db8:cccc::9", "2001:db8::1", 56324, 7600), tlv(0xEA, []byte("\x01vpce-0123456789abcdef")))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := clientip.ParseProxyHeader(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
