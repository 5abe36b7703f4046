package clientip

import (
	"errors"
	"fmt"
	"net/netip"
)

// The parser is written here against haproxy's proxy-protocol.txt rather
// than taken from github.com/pires/go-proxyproto: that library reads from a
// *bufio.Reader, which blocks until bytes arrive, while an event loop holds
// a byte slice that may end anywhere. Using it would mean wrapping every
// delivery in a reader, re-parsing from the start each time, telling
// "incomplete" from "invalid" by interpreting io.EOF, and allocating a
// *Header with net.IP and net.Addr values per attempt. Its v0.16.0 also
// requires Go 1.26.9, newer than the toolchain this module is built with.

// Errors of ParseProxyHeader. Test with errors.Is.
var (
	// ErrNeedMore: the bytes so far are a valid beginning of a PROXY header;
	// call again when more have arrived.
	ErrNeedMore = errors.New("clientip: incomplete PROXY header")
	// ErrNotProxy: the input does not start with a PROXY protocol signature
	// (a client that connected directly, or a load balancer not configured
	// to send the header).
	ErrNotProxy = errors.New("clientip: not a PROXY protocol header")
	// ErrBadProxyHeader: the input starts with a PROXY signature but breaks
	// the specification. The returned error is a *ProxyError saying how.
	ErrBadProxyHeader = errors.New("clientip: malformed PROXY header")
)

// ProxyError describes a malformed PROXY header. It matches
// ErrBadProxyHeader with errors.Is.
type ProxyError struct {
	Version int    // 1 or 2
	Detail  string // what is wrong, for logs
}

func (e *ProxyError) Error() string {
	return fmt.Sprintf("clientip: malformed PROXY v%d header: %s", e.Version, e.Detail)
}

// Is makes errors.Is(err, ErrBadProxyHeader) true.
func (e *ProxyError) Is(target error) bool { return target == ErrBadProxyHeader }

func badHeader(version int, format string, args ...any) error {
	return &ProxyError{Version: version, Detail: fmt.Sprintf(format, args...)}
}

// Size limits of PROXY headers.
const (
	// MaxProxyV1Bytes is the longest version 1 line, CRLF included, that
	// the specification allows.
	MaxProxyV1Bytes = 107
	// MaxProxyV2Bytes bounds a version 2 header (16 fixed bytes, addresses
	// and TLVs). The format allows 16+65535; load balancers send a few
	// hundred bytes at most (addresses, a VPC endpoint or connection id,
	// TLS details), and the relay should not buffer 64 KiB per connection
	// before it knows who is talking.
	MaxProxyV2Bytes = 4096
)

// Command is a PROXY header's command.
type Command uint8

const (
	// CommandLocal: the proxy opened the connection itself (a health
	// check). The header carries no client address; use the TCP peer.
	CommandLocal Command = 0
	// CommandProxy: the connection is relayed for a client; Source is the
	// client's address when the protocol has one.
	CommandProxy Command = 1
)

func (c Command) String() string {
	if c == CommandLocal {
		return "LOCAL"
	}
	return "PROXY"
}

// Protocol is the transport and address family a PROXY header announces.
type Protocol uint8

// Protocols. Version 1 has only Unknown (its UNKNOWN keyword), TCP4 and
// TCP6.
const (
	ProtocolUnknown    Protocol = iota // UNKNOWN (v1) or AF_UNSPEC (v2): no address
	ProtocolTCP4                       // TCP over IPv4
	ProtocolTCP6                       // TCP over IPv6
	ProtocolUDP4                       // UDP over IPv4 (v2 only)
	ProtocolUDP6                       // UDP over IPv6 (v2 only)
	ProtocolUnixStream                 // AF_UNIX stream (v2 only): no IP address
	ProtocolUnixDgram                  // AF_UNIX datagram (v2 only): no IP address
)

var protocolNames = [...]string{"UNKNOWN", "TCP4", "TCP6", "UDP4", "UDP6", "UNIX_STREAM", "UNIX_DGRAM"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// Header is a parsed PROXY protocol header. It holds no reference to the
// parsed bytes.
type Header struct {
	Version  int // 1 or 2
	Command  Command
	Protocol Protocol
	// Source and Destination are the original connection's endpoints, set
	// only for a PROXY command with an IP protocol (TCP4, TCP6, UDP4,
	// UDP6). IPv4-mapped IPv6 addresses are reported as IPv4.
	Source      netip.AddrPort
	Destination netip.AddrPort
}

// ClientAddr returns the client's address and port when the header carries
// one. When ok is false (LOCAL, UNKNOWN, AF_UNIX) the caller must use the
// TCP peer, as the specification requires.
func (h Header) ClientAddr() (addr netip.AddrPort, ok bool) {
	return h.Source, h.Source.IsValid()
}

// ParseProxyHeader parses a PROXY protocol header (version 1 or 2) at the
// start of b, which holds whatever bytes of the connection have arrived so
// far. It returns:
//
//   - the header and n, the number of bytes it occupies, which the caller
//     discards before reading the application protocol (bytes after n are
//     not looked at);
//   - ErrNeedMore when b is a valid beginning of a header: call again with
//     more bytes (the caller bounds the wait with its handshake timeout);
//   - ErrNotProxy when b does not begin with a PROXY signature;
//   - an error matching ErrBadProxyHeader when it begins with one but is
//     malformed, over the size limits, or fails its CRC32c check.
//
// Answers depend only on the bytes examined, in order: once an error or a
// header is returned for some b, every longer input with the same prefix
// gets the same answer, and every shorter prefix gets ErrNeedMore or that
// same answer. ParseProxyHeader keeps no reference to b and is safe for
// concurrent use.
func ParseProxyHeader(b []byte) (h Header, n int, err error) {
	if len(b) == 0 {
		return Header{}, 0, ErrNeedMore
	}
	switch b[0] {
	case v1Signature[0]:
		return parseV1(b)
	case v2Signature[0]:
		return parseV2(b)
	default:
		return Header{}, 0, ErrNotProxy
	}
}

// hasPrefixOf reports whether b matches sig for min(len(b), len(sig)) bytes.
func hasPrefixOf(b []byte, sig string) bool {
	n := min(len(b), len(sig))
	return string(b[:n]) == sig[:n]
}
