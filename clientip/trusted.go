package clientip

import (
	"fmt"
	"net/netip"
	"strings"
)

// Trusted is a set of proxy addresses whose forwarding headers are believed.
// It is immutable once built and safe for concurrent use. A nil *Trusted
// trusts nobody.
type Trusted struct {
	v4 []netip.Prefix
	v6 []netip.Prefix
}

// ParseTrusted builds a Trusted set from CIDR prefixes ("10.0.0.0/8",
// "2001:db8::/32") and bare addresses ("192.0.2.1", "::1"). Surrounding
// spaces and empty entries are ignored. Host bits set in a prefix are
// cleared ("10.1.2.3/8" means 10.0.0.0/8). IPv4-mapped IPv6 prefixes and
// addresses (::ffff:10.0.0.0/104) are stored as IPv4, so they match IPv4
// peers however the socket reports them. Zones are refused: an IPv6 zone
// names an interface of one host and cannot be matched in an address from
// the network.
func ParseTrusted(cidrs []string) (*Trusted, error) {
	t := &Trusted{}
	for _, raw := range cidrs {
		s := strings.TrimSpace(raw)
		if s == "" {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("clientip: trusted proxy %q: %w", raw, err)
		}
		if p.Addr().Is4() {
			t.v4 = append(t.v4, p)
		} else {
			t.v6 = append(t.v6, p)
		}
	}
	return t, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, err
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, err
		}
		if a.Zone() != "" {
			return p, fmt.Errorf("zones are not allowed")
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Contains reports whether addr belongs to a trusted proxy. IPv4-mapped
// IPv6 addresses are compared as IPv4; a zone is ignored.
func (t *Trusted) Contains(addr netip.Addr) bool {
	if t == nil || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	prefixes := t.v6
	if addr.Is4() {
		prefixes = t.v4
	} else {
		addr = addr.WithZone("")
	}
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Prefixes returns a copy of the trusted prefixes, IPv4 first, for logs and
// the admin API.
func (t *Trusted) Prefixes() []netip.Prefix {
	if t == nil {
		return nil
	}
	out := make([]netip.Prefix, 0, len(t.v4)+len(t.v6))
	out = append(out, t.v4...)
	return append(out, t.v6...)
}
