package clientip

import (
	"net/netip"
	"strings"
)

// Resolve returns the client's address for a connection from peer that
// carried the given X-Forwarded-For header lines (in the order received) and
// X-Real-IP header (empty when absent). The rules are in the package
// documentation: headers count only when peer is trusted; X-Forwarded-For
// is walked from the right past trusted proxies; X-Real-IP is the fallback
// when X-Forwarded-For has no entries; the peer is the last resort.
//
// The result is unmapped (IPv4 as IPv4) and has no zone. An invalid peer
// (the zero Addr) is returned as is. Resolve keeps no references to its
// arguments and does not allocate, except for one parse error when it
// meets an unreadable entry.
func (t *Trusted) Resolve(peer netip.Addr, xForwardedFor []string, xRealIP string) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if !t.Contains(peer) {
		return peer
	}
	// nearest is the closest address known to be genuine: first the peer,
	// then each trusted proxy named in the list.
	nearest := peer
	sawEntry := false
	for line := len(xForwardedFor) - 1; line >= 0; line-- {
		rest := xForwardedFor[line]
		for rest != "" {
			var entry string
			if i := strings.LastIndexByte(rest, ','); i >= 0 {
				entry, rest = rest[i+1:], rest[:i]
			} else {
				entry, rest = rest, ""
			}
			entry = strings.Trim(entry, " \t")
			if entry == "" {
				continue
			}
			sawEntry = true
			addr, ok := parseHop(entry)
			if !ok {
				return nearest
			}
			if !t.Contains(addr) {
				return addr
			}
			nearest = addr
		}
	}
	if sawEntry {
		return nearest // every hop was a trusted proxy
	}
	if addr, ok := parseHop(strings.Trim(xRealIP, " \t")); ok {
		return addr
	}
	return peer
}

// parseHop reads one forwarding-header entry: an address, optionally with a
// port ("192.0.2.1:80", "[2001:db8::1]:80") or in brackets ("[2001:db8::1]").
// The result is unmapped and without zone. The shape is checked before
// parsing so that the usual forms never build (allocate) a parse error.
func parseHop(s string) (netip.Addr, bool) {
	switch {
	case s == "":
		return netip.Addr{}, false
	case s[0] == '[':
		end := strings.IndexByte(s, ']')
		if end < 0 || (end+1 < len(s) && (s[end+1] != ':' || !validPort(s[end+2:]))) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
		return a.Unmap().WithZone(""), true
	case strings.Count(s, ":") == 1: // IPv4 with a port
		host, port, _ := strings.Cut(s, ":")
		if !validPort(port) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return netip.Addr{}, false
		}
		return a, true
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, false
		}
		return a.Unmap().WithZone(""), true
	}
}

// validPort reports whether s is a decimal port number (0-65535).
func validPort(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
