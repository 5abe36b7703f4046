package clientip_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/clientip"
)

// Addresses used below: 10.0.0.0/8 and 2001:db8:aaaa::/48 are the trusted
// proxies; 203.0.113.0/24, 198.51.100.0/24 and 2001:db8:cccc::/48 are
// clients on the internet.
func testTrusted(t testing.TB) *clientip.Trusted {
	t.Helper()
	tr, err := clientip.ParseTrusted([]string{"10.0.0.0/8", "2001:db8:aaaa::/48"})
	require.NoError(t, err)
	return tr
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tr := testTrusted(t)
	tests := []struct {
		name string
		peer string
		xff  []string
		real string
		want string
	}{
		// The peer is not a trusted proxy: headers are ignored.
		{name: "direct client", peer: "203.0.113.5", want: "203.0.113.5"},
		{name: "direct client forging xff", peer: "203.0.113.5", xff: []string{"1.1.1.1"}, real: "8.8.8.8", want: "203.0.113.5"},
		{name: "direct ipv4-mapped peer", peer: "::ffff:203.0.113.5", xff: []string{"1.1.1.1"}, want: "203.0.113.5"},
		{name: "direct ipv6 client", peer: "2001:db8:cccc::9", xff: []string{"1.1.1.1"}, want: "2001:db8:cccc::9"},

		// One trusted proxy.
		{name: "one proxy", peer: "10.0.0.2", xff: []string{"203.0.113.5"}, want: "203.0.113.5"},
		{name: "one proxy, ipv4-mapped peer", peer: "::ffff:10.0.0.2", xff: []string{"203.0.113.5"}, want: "203.0.113.5"},
		{name: "one ipv6 proxy", peer: "2001:db8:aaaa::1", xff: []string{"2001:db8:cccc::9"}, want: "2001:db8:cccc::9"},
		{name: "client forged entries left of the real one", peer: "10.0.0.2", xff: []string{"6.6.6.6, 7.7.7.7, 203.0.113.5"}, want: "203.0.113.5"},
		{name: "client forged a trusted address", peer: "10.0.0.2", xff: []string{"10.9.9.9, 203.0.113.5"}, want: "203.0.113.5"},

		// Chains of proxies, in one line or several.
		{name: "two proxies", peer: "10.0.0.2", xff: []string{"203.0.113.5, 10.0.0.1"}, want: "203.0.113.5"},
		{name: "two proxies, two lines", peer: "10.0.0.2", xff: []string{"203.0.113.5", "10.0.0.1"}, want: "203.0.113.5"},
		{name: "lines joined in order", peer: "10.0.0.2", xff: []string{"6.6.6.6, 203.0.113.5", "10.0.0.3, 10.0.0.1"}, want: "203.0.113.5"},
		{name: "mixed families", peer: "2001:db8:aaaa::1", xff: []string{"198.51.100.4, 10.0.0.1"}, want: "198.51.100.4"},
		{name: "every hop trusted: leftmost", peer: "10.0.0.2", xff: []string{"10.0.0.9, 10.0.0.1"}, want: "10.0.0.9"},

		// Entry syntax.
		{name: "spaces and tabs", peer: "10.0.0.2", xff: []string{" \t203.0.113.5\t ,  10.0.0.1 "}, want: "203.0.113.5"},
		{name: "no spaces", peer: "10.0.0.2", xff: []string{"203.0.113.5,10.0.0.1"}, want: "203.0.113.5"},
		{name: "empty entries skipped", peer: "10.0.0.2", xff: []string{",203.0.113.5,, ,10.0.0.1,", ""}, want: "203.0.113.5"},
		{name: "ipv4 with port", peer: "10.0.0.2", xff: []string{"203.0.113.5:51234"}, want: "203.0.113.5"},
		{name: "ipv6 in brackets with port", peer: "10.0.0.2", xff: []string{"[2001:db8:cccc::9]:443"}, want: "2001:db8:cccc::9"},
		{name: "ipv6 in brackets", peer: "10.0.0.2", xff: []string{"[2001:db8:cccc::9]"}, want: "2001:db8:cccc::9"},
		{name: "ipv4-mapped entry", peer: "10.0.0.2", xff: []string{"::ffff:203.0.113.5"}, want: "203.0.113.5"},
		{name: "trusted ipv4-mapped entry skipped", peer: "10.0.0.2", xff: []string{"203.0.113.5, ::ffff:10.0.0.1"}, want: "203.0.113.5"},
		{name: "zone dropped", peer: "10.0.0.2", xff: []string{"fe80::1%eth0"}, want: "fe80::1"},
		{name: "trusted proxy with port", peer: "10.0.0.2", xff: []string{"203.0.113.5, 10.0.0.1:80"}, want: "203.0.113.5"},

		// Unreadable entries stop the walk at the nearest checked address.
		{name: "unknown rightmost: peer", peer: "10.0.0.2", xff: []string{"203.0.113.5, unknown"}, want: "10.0.0.2"},
		{name: "garbage behind a proxy: that proxy", peer: "10.0.0.2", xff: []string{"203.0.113.5, garbage, 10.0.0.1"}, want: "10.0.0.1"},
		{name: "obfuscated identifier", peer: "10.0.0.2", xff: []string{"_hidden"}, want: "10.0.0.2"},
		{name: "host name", peer: "10.0.0.2", xff: []string{"client.example"}, want: "10.0.0.2"},
		{name: "empty port", peer: "10.0.0.2", xff: []string{"203.0.113.5:"}, want: "10.0.0.2"},
		{name: "port too large", peer: "10.0.0.2", xff: []string{"203.0.113.5:65536"}, want: "10.0.0.2"},
		{name: "port not a number", peer: "10.0.0.2", xff: []string{"203.0.113.5:http"}, want: "10.0.0.2"},
		{name: "unclosed bracket", peer: "10.0.0.2", xff: []string{"[2001:db8:cccc::9"}, want: "10.0.0.2"},
		{name: "ipv4 in brackets", peer: "10.0.0.2", xff: []string{"[203.0.113.5]"}, want: "10.0.0.2"},
		{name: "junk after bracket", peer: "10.0.0.2", xff: []string{"[2001:db8:cccc::9]x"}, want: "10.0.0.2"},
		{name: "ipv6 with port but no brackets", peer: "10.0.0.2", xff: []string{"2001:db8:cccc::9:443"}, want: "2001:db8:cccc::9:443"}, // a valid IPv6 address as written
		{name: "leading-zero octet", peer: "10.0.0.2", xff: []string{"203.0.113.05"}, want: "10.0.0.2"},
		{name: "quoted", peer: "10.0.0.2", xff: []string{`"203.0.113.5"`}, want: "10.0.0.2"},
		{name: "garbage only to the left of the client", peer: "10.0.0.2", xff: []string{"garbage, 203.0.113.5"}, want: "203.0.113.5"},

		// X-Real-IP when X-Forwarded-For has no entries.
		{name: "x-real-ip", peer: "10.0.0.2", real: "203.0.113.5", want: "203.0.113.5"},
		{name: "x-real-ip with spaces and port", peer: "10.0.0.2", real: " 203.0.113.5:999 ", want: "203.0.113.5"},
		{name: "x-real-ip when xff is all empty", peer: "10.0.0.2", xff: []string{"", " , "}, real: "203.0.113.5", want: "203.0.113.5"},
		{name: "xff wins over x-real-ip", peer: "10.0.0.2", xff: []string{"198.51.100.4"}, real: "203.0.113.5", want: "198.51.100.4"},
		{name: "unreadable xff does not fall back to x-real-ip", peer: "10.0.0.2", xff: []string{"unknown"}, real: "203.0.113.5", want: "10.0.0.2"},
		{name: "x-real-ip garbage", peer: "10.0.0.2", real: "nope", want: "10.0.0.2"},
		{name: "x-real-ip list is not an address", peer: "10.0.0.2", real: "203.0.113.5, 10.0.0.1", want: "10.0.0.2"},
		{name: "no headers", peer: "10.0.0.2", want: "10.0.0.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tr.Resolve(netip.MustParseAddr(tc.peer), tc.xff, tc.real)
			require.Equal(t, netip.MustParseAddr(tc.want), got)
		})
	}
}

func TestResolveEdgeCases(t *testing.T) {
	t.Parallel()
	tr := testTrusted(t)
	require.Equal(t, netip.Addr{}, tr.Resolve(netip.Addr{}, []string{"203.0.113.5"}, ""), "invalid peer stays invalid")

	var none *clientip.Trusted
	require.Equal(t, netip.MustParseAddr("10.0.0.2"),
		none.Resolve(netip.MustParseAddr("::ffff:10.0.0.2"), []string{"203.0.113.5"}, "203.0.113.6"),
		"a nil Trusted ignores headers and unmaps the peer")

	all, err := clientip.ParseTrusted([]string{"0.0.0.0/0", "::/0"})
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddr("203.0.113.5"),
		all.Resolve(netip.MustParseAddr("198.51.100.1"), []string{"203.0.113.5"}, ""),
		"trusting everyone believes everyone (documented as dangerous)")
}

func TestResolveDoesNotAllocate(t *testing.T) {
	tr := testTrusted(t)
	peer := netip.MustParseAddr("10.0.0.2")
	cases := [][]string{
		{"203.0.113.5, 10.0.0.1"},
		{"[2001:db8:cccc::9]:443", "10.0.0.3:80"},
		{"203.0.113.5:51234"},
	}
	for _, xff := range cases {
		allocs := testing.AllocsPerRun(100, func() {
			_ = tr.Resolve(peer, xff, "")
		})
		require.Zero(t, allocs, "%q", xff)
	}
}
