// Package clientip finds a player's real address when the relay runs behind
// load balancers, reverse proxies or a CDN. It knows two carriers of that
// address:
//
//   - HTTP headers of the WebSocket upgrade request (X-Forwarded-For,
//     X-Real-IP), believed only when the TCP peer is a trusted proxy:
//     [Trusted.Resolve];
//   - the PROXY protocol header (haproxy's proxy-protocol.txt, versions 1
//     and 2) that a layer-4 load balancer writes before any other byte:
//     [ParseProxyHeader].
//
// Nothing here does I/O, blocks or keeps state between calls; every function
// is safe to call from any goroutine, including gnet event loops.
//
// # Trusted proxies and X-Forwarded-For
//
// An operator lists the addresses of the proxies in front of the relay
// ([ParseTrusted]: CIDR prefixes such as 10.0.0.0/8 or 2001:db8::/32, or
// bare addresses). Resolve then works like this:
//
//  1. The TCP peer is not trusted: its address is the client's. Headers are
//     ignored entirely, because anyone can write them.
//  2. The peer is trusted and X-Forwarded-For has entries: every header line
//     is read as one comma-separated list (lines in order). Each proxy
//     appends the address it received the request from, so the list is
//     walked from the right, skipping addresses of trusted proxies; the
//     first address that is not trusted is the client. If every entry is a
//     trusted proxy, the leftmost one is the client (a client inside the
//     trusted network).
//  3. The peer is trusted and X-Forwarded-For has no entries: X-Real-IP,
//     when it holds one valid address.
//  4. Otherwise: the peer.
//
// Entries are read leniently where the meaning is unambiguous and strictly
// where it is not:
//
//   - spaces and tabs around an entry are ignored; empty entries (", ,",
//     empty header lines) are skipped, as HTTP list syntax allows;
//   - a port is dropped: "203.0.113.7:5555", "[2001:db8::7]:443" and
//     "[2001:db8::7]" all mean the address alone;
//   - IPv4-mapped IPv6 addresses (::ffff:203.0.113.7) become IPv4, and IPv6
//     zones (%eth0) are dropped: a zone means nothing outside the host that
//     wrote it;
//   - anything else — "unknown", RFC 7239 obfuscated identifiers such as
//     "_hidden", host names, garbage — cannot be checked, so the walk stops
//     there and the answer is the nearest address that was checked: the
//     trusted proxy that wrote the unreadable entry (or the peer, when it is
//     the rightmost entry). Nothing to the left of an unreadable entry is
//     believed, since a client controls everything it sent itself.
//
// The proxies must append to X-Forwarded-For (nginx:
// proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for) and, if the
// relay is to use X-Real-IP, overwrite X-Real-IP (proxy_set_header
// X-Real-IP $remote_addr). A proxy that passes a client's own X-Real-IP
// through unchanged while not setting X-Forwarded-For lets that client
// choose its address. Listing 0.0.0.0/0 or ::/0 as trusted lets every
// client that can reach the relay directly choose its address.
//
// # PROXY protocol
//
// With the PROXY protocol the load balancer writes one header at the start
// of the TCP stream, before the WebSocket request. The relay must then
// expect that header on every connection of the listener (the specification
// forbids guessing whether it is present) and should accept it only from
// trusted peers. [ParseProxyHeader] works on whatever bytes have arrived so
// far, as an event loop delivers them: it answers [ErrNeedMore] until the
// header is complete, then the header and its length in bytes, which the
// caller discards from its input before reading the WebSocket request.
// Version 1 (text) headers are at most 107 bytes; version 2 (binary)
// headers at most [MaxProxyV2Bytes]. In a version 2 PROXY header with an
// address family, the TLVs after the addresses must be well formed and a
// CRC32c TLV, when present, must match; the TLVs are otherwise skipped.
// LOCAL (health checks) and UNKNOWN headers are accepted without an
// address: the caller uses the TCP peer, as the specification requires.
package clientip
