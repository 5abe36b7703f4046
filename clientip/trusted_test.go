package clientip_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/clientip"
)

func TestParseTrusted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want []string // Prefixes(), IPv4 first
		err  string
	}{
		{name: "empty", in: nil, want: []string{}},
		{name: "cidrs", in: []string{"10.0.0.0/8", "2001:db8::/32"}, want: []string{"10.0.0.0/8", "2001:db8::/32"}},
		{name: "bare addresses", in: []string{"192.0.2.1", "::1"}, want: []string{"192.0.2.1/32", "::1/128"}},
		{name: "host bits cleared", in: []string{"10.1.2.3/8", "2001:db8::1/32"}, want: []string{"10.0.0.0/8", "2001:db8::/32"}},
		{name: "ipv4-mapped prefix", in: []string{"::ffff:10.0.0.0/104"}, want: []string{"10.0.0.0/8"}},
		{name: "ipv4-mapped address", in: []string{"::ffff:192.0.2.1"}, want: []string{"192.0.2.1/32"}},
		{name: "spaces and empty entries", in: []string{" 10.0.0.0/8 ", "", "  "}, want: []string{"10.0.0.0/8"}},
		{name: "ipv6 listed before ipv4", in: []string{"fd00::/8", "172.16.0.0/12"}, want: []string{"172.16.0.0/12", "fd00::/8"}},
		{name: "garbage", in: []string{"10.0.0.0/8", "proxy.internal"}, err: `"proxy.internal"`},
		{name: "bad prefix length", in: []string{"10.0.0.0/33"}, err: "10.0.0.0/33"},
		{name: "zone", in: []string{"fe80::1%eth0"}, err: "zones"},
		{name: "zone in prefix", in: []string{"fe80::1%eth0/64"}, err: "fe80::1%eth0/64"},
		{name: "port", in: []string{"10.0.0.1:80"}, err: "10.0.0.1:80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := clientip.ParseTrusted(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.ErrorContains(t, err, "clientip: trusted proxy")
				return
			}
			require.NoError(t, err)
			got := []string{}
			for _, p := range tr.Prefixes() {
				got = append(got, p.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestTrustedContains(t *testing.T) {
	t.Parallel()
	tr, err := clientip.ParseTrusted([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"})
	require.NoError(t, err)
	for addr, want := range map[string]bool{
		"10.0.0.1":            true,
		"10.255.255.255":      true,
		"11.0.0.1":            false,
		"192.0.2.7":           true,
		"192.0.2.8":           false,
		"::ffff:10.1.1.1":     true, // a dual-stack socket's view of an IPv4 peer
		"::ffff:11.1.1.1":     false,
		"2001:db8:1::5":       true,
		"2001:db8:1::5%eth0":  true, // zone ignored
		"2001:db9::1":         false,
		"::1":                 true,
		"::2":                 false,
		"::a00:1":             false, // IPv4-compatible, not IPv4-mapped: not 10.0.0.1
		"2002:a00:1::":        false,
		"0.0.0.0":             false,
		"::":                  false,
		"255.255.255.255":     false,
		"::ffff:192.0.2.7":    true,
		"64:ff9b::192.0.2.7":  false, // NAT64 is not IPv4
		"fe80::1":             false,
		"2001:db8:ffff::ffff": true,
	} {
		require.Equal(t, want, tr.Contains(netip.MustParseAddr(addr)), addr)
	}
	require.False(t, tr.Contains(netip.Addr{}), "the zero Addr")

	var none *clientip.Trusted
	require.False(t, none.Contains(netip.MustParseAddr("10.0.0.1")), "nil trusts nobody")
	require.Nil(t, none.Prefixes())
}
