package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/cluster"
	"github.com/tickrelay/tickrelay/iplimit"
	"github.com/tickrelay/tickrelay/room"
)

// Config configures a Server. A zero field means the default given in its
// comment, so Config{} runs a working relay.
type Config struct {
	// Listen is the TCP address of the WebSocket listener. Zero means
	// "0.0.0.0:7600". Port 0 picks a free port; Addr reports it.
	Listen string
	// Path is the WebSocket endpoint. Zero means "/ws".
	Path string
	// HealthPath answers plain GET requests with 200 for load balancers.
	// Zero means "/healthz".
	HealthPath string
	// EchoPath, if set, serves a diagnostic echo endpoint with the same frame
	// code (for conformance suites such as Autobahn|Testsuite). Off by default.
	EchoPath string
	// AllowedOrigins restricts browser connections to these exact Origin
	// values. Empty allows any; requests without Origin are always allowed.
	AllowedOrigins []string

	// EventLoops is the number of gnet event loops. Zero means GOMAXPROCS.
	EventLoops int
	// MaxConnections caps open connections; just past it an upgrade is
	// accepted and closed at once with Error{SERVER_FULL} and close 4002 (a
	// page can read that), far past it the request gets HTTP 503 unread. Zero (or a value the open-file limit cannot hold) means
	// the process's open-file limit minus 128.
	MaxConnections int
	// MaxMessageBytes caps one (reassembled) client message; a larger one
	// closes the connection with 1009. Zero means 64 KiB.
	MaxMessageBytes int
	// MaxHeaderBytes caps the HTTP upgrade request. Zero means 8 KiB.
	MaxHeaderBytes int
	// HandshakeTimeout closes connections that have not completed the
	// WebSocket handshake in time. Zero means 5s.
	HandshakeTimeout time.Duration
	// PingInterval: a connection silent for this long is sent a ping. Zero
	// means 15s.
	PingInterval time.Duration
	// IdleTimeout: a connection silent for this long (no frame, no pong) is
	// closed with 4001. Zero means 45s. Must exceed PingInterval.
	IdleTimeout time.Duration
	// CloseTimeout: after a clean close (drain, shutdown, kick) the server
	// waits this long for the client's Close before dropping the TCP
	// connection. Zero means 3s.
	CloseTimeout time.Duration
	// FailLinger: after failing a connection (a protocol error or a limit)
	// the server sends its Close, shuts down its write side once that is
	// flushed and drops the connection when the client answers (FIN or
	// Close) or this long after the shutdown; before it, a client that reads
	// nothing for this long is dropped (one that keeps reading gets up to
	// CloseTimeout). An HTTP error answered before the upgrade ends the
	// same way. Zero means 250ms.
	FailLinger time.Duration
	// MessageReadTimeout: a message whose first bytes arrived must be
	// complete within this long, or the connection is closed with 4004 (a
	// client trickling a frame would otherwise pin its buffer forever). Zero
	// means 10s.
	MessageReadTimeout time.Duration
	// MaxFragments caps the frames of one fragmented message. Zero means
	// 4,096: fragments are legal and some libraries send many; the byte
	// limit (MaxMessageBytes) bounds memory and MessageReadTimeout bounds
	// time.
	MaxFragments int
	// RateLimits bound what each connection may send.
	RateLimits RateLimits

	// Auth says who may connect, create and join.
	Auth AuthConfig
	// TrustedProxies are the load balancers and proxies (CIDRs or
	// addresses) whose X-Forwarded-For / X-Real-IP (and PROXY header, with
	// ProxyProtocol) give the client's address. Headers from other peers
	// are ignored. Empty means none: the TCP peer is the client.
	TrustedProxies []string
	// ProxyProtocol: connections from TrustedProxies start with a PROXY
	// protocol (v1 or v2) header giving the client's address, as a TCP
	// load balancer sends it (haproxy send-proxy-v2).
	ProxyProtocol bool
	// AddressLimits bound what one client address may do: connections,
	// handshakes and joins per second, failed joins (lockout). Zero fields
	// mean package iplimit's defaults; negative ones turn a limit off.
	// Its Exempt list is built from AddressExempt.
	AddressLimits iplimit.Config
	// AddressExempt lists addresses (CIDRs) the per-address limits leave
	// alone. Nil means loopback (local load generators and health checks;
	// a local proxy belongs in TrustedProxies); "none" means none.
	AddressExempt []string
	// OutboundSoftBytes: above this many unwritten bytes a connection counts
	// as congested and its room holds messages back (superseding latest-only
	// updates). Zero means 256 KiB.
	OutboundSoftBytes int
	// OutboundHardBytes: above this many unwritten bytes the connection is
	// closed as a slow consumer (4000). Zero means 4 MiB.
	OutboundHardBytes int
	// SocketSendBuffer and SocketRecvBuffer set SO_SNDBUF and SO_RCVBUF of
	// each connection. Smaller kernel buffers cost less memory per
	// connection and make slow clients visible to the relay's own
	// back-pressure sooner. Zero means the kernel's default (autotuned).
	SocketSendBuffer int
	SocketRecvBuffer int
	// MaxBadMessages: this many undecodable envelopes on one connection
	// close it with 1008. Zero means 3.
	MaxBadMessages int

	// AdminListen is the address of the admin HTTP API (rooms, drain,
	// metrics, pprof). Zero means "127.0.0.1:7601"; AdminOff disables it.
	AdminListen string
	// AdminToken, if set, is required as "Authorization: Bearer TOKEN" on
	// every admin endpoint but /healthz and /readyz (pprof included).
	// AdminTokenFile reads it from a file instead (flags show in ps). An
	// admin listener on a non-loopback address refuses to start without
	// one.
	AdminToken     string
	AdminTokenFile string
	// DrainTimeout is how long a drain lets rooms run on before closing
	// their players. Zero means 30s.
	DrainTimeout time.Duration

	// ReloadExistingRooms makes Reload move existing rooms to the new
	// default tick rate (clamped to the new bounds); otherwise reloaded tick
	// settings apply to new rooms only.
	ReloadExistingRooms bool

	// Room configures rooms, ticks and routing; see room.Config.
	Room room.Config

	// Cluster, when its NATSURL is set, runs the relay as a node of a
	// cluster (package cluster). Zero means a single node.
	Cluster cluster.Config

	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// reservedFiles are descriptors kept out of MaxConnections: rejectWindow
// connections being refused, plus the listeners, the admin API's
// connections, logs and the runtime.
const reservedFiles = 2*rejectWindow + 64

// rejectWindow is how many connections past MaxConnections may wait for
// their request to be answered with a readable 503; past that, OnOpen
// answers 503 at once and closes.
const rejectWindow = 32

// AdminOff as Config.AdminListen disables the admin API.
const AdminOff = "off"

// roomFrameOverhead is what a Frame adds around the largest message it may
// carry (envelope, tick and delivery headers), with margin.
const roomFrameOverhead = 64

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "0.0.0.0:7600"
	}
	if c.Path == "" {
		c.Path = "/ws"
	}
	if c.HealthPath == "" {
		c.HealthPath = "/healthz"
	}
	if c.EventLoops == 0 {
		c.EventLoops = runtime.GOMAXPROCS(0)
	}
	if limit := openFileLimit() - reservedFiles; c.MaxConnections == 0 || c.MaxConnections > limit {
		// More would let a flood of connections exhaust descriptors, and
		// gnet stops accepting for good when accept() fails with EMFILE.
		c.MaxConnections = max(limit, 1)
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 8 << 10
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 15 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 45 * time.Second
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 3 * time.Second
	}
	if c.FailLinger == 0 {
		c.FailLinger = 250 * time.Millisecond
	}
	if c.MessageReadTimeout == 0 {
		c.MessageReadTimeout = 10 * time.Second
	}
	if c.MaxFragments == 0 {
		c.MaxFragments = 4096
	}
	if c.OutboundSoftBytes == 0 {
		c.OutboundSoftBytes = 256 << 10
	}
	if c.OutboundHardBytes == 0 {
		c.OutboundHardBytes = 4 << 20
	}
	if lb := c.Room.WithDefaults().LockstepLogBytes; 2*lb > c.OutboundHardBytes {
		// A late joiner gets the whole log at once (one frame per tick,
		// some overhead each): it must not overflow its own connection.
		c.Room.LockstepLogBytes = max(c.OutboundHardBytes/2, 1)
	}
	if c.MaxBadMessages == 0 {
		c.MaxBadMessages = 3
	}
	c.RateLimits = c.RateLimits.withDefaults(c.MaxMessageBytes)
	if c.AddressExempt == nil {
		c.AddressExempt = []string{"127.0.0.0/8", "::1/128"}
	}
	if c.Auth.Audience == "" {
		c.Auth.Audience = "tickrelay"
	}
	if c.Auth.MaxFailures == 0 {
		c.Auth.MaxFailures = 3
	}
	if c.Room.SenderTickBytes == 0 && c.MaxMessageBytes > c.Room.WithDefaults().SenderTickBytes {
		c.Room.SenderTickBytes = c.MaxMessageBytes // one largest message always fits a tick
	}
	if c.Room.MaxFrameBytes == 0 && c.MaxMessageBytes+roomFrameOverhead > 256<<10 {
		c.Room.MaxFrameBytes = c.MaxMessageBytes + roomFrameOverhead
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:7601"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %d)", name, v))
		}
	}
	positive("event-loops", c.EventLoops)
	positive("max-connections", c.MaxConnections)
	positive("max-message-bytes", c.MaxMessageBytes)
	positive("Config.MaxHeaderBytes", c.MaxHeaderBytes)
	positive("outbound-soft-bytes", c.OutboundSoftBytes)
	positive("outbound-hard-bytes", c.OutboundHardBytes)
	positive("max-bad-messages", c.MaxBadMessages)
	positive("max-fragments", c.MaxFragments)
	positive("rate-message-burst", c.RateLimits.MessageBurst)
	positive("rate-bytes", c.RateLimits.BytesPerSecond)
	if c.RateLimits.MessagesPerSecond < 0 {
		errs = append(errs, fmt.Errorf("rate-messages must not be negative (got %g)", c.RateLimits.MessagesPerSecond))
	}
	for name, d := range map[string]time.Duration{
		"handshake-timeout": c.HandshakeTimeout, "ping-interval": c.PingInterval,
		"idle-timeout": c.IdleTimeout, "close-timeout": c.CloseTimeout,
		"fail-linger": c.FailLinger, "message-read-timeout": c.MessageReadTimeout,
		"rate-limit-grace": c.RateLimits.Grace,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (got %s)", name, d))
		}
	}
	if c.IdleTimeout > 0 && c.PingInterval > 0 && c.IdleTimeout <= c.PingInterval {
		errs = append(errs, fmt.Errorf("idle-timeout (%s) must exceed ping-interval (%s)", c.IdleTimeout, c.PingInterval))
	}
	if c.OutboundHardBytes > 0 && c.OutboundSoftBytes >= c.OutboundHardBytes {
		errs = append(errs, fmt.Errorf("outbound-soft-bytes (%d) must be below outbound-hard-bytes (%d)", c.OutboundSoftBytes, c.OutboundHardBytes))
	}
	if c.Room.MaxFrameBytes != 0 && c.Room.MaxFrameBytes < c.MaxMessageBytes+roomFrameOverhead {
		errs = append(errs, fmt.Errorf("max-frame-bytes (%d) must be at least max-message-bytes+%d (%d)",
			c.Room.MaxFrameBytes, roomFrameOverhead, c.MaxMessageBytes+roomFrameOverhead))
	}
	switch c.Auth.Mode {
	case "", AuthOff:
	case AuthJWT:
		if len(c.Auth.Secrets) == 0 && c.Auth.SecretFile == "" && c.Auth.JWKSFile == "" && c.Auth.JWKSURL == "" {
			errs = append(errs, errors.New("auth: jwt needs keys: auth-secrets, auth-secret-file, auth-jwks-file or auth-jwks-url"))
		}
	default:
		errs = append(errs, fmt.Errorf("auth: %q is not off or jwt", c.Auth.Mode))
	}
	if c.AdminListen != AdminOff && c.AdminToken == "" && c.AdminTokenFile == "" && !loopbackAddr(c.AdminListen) {
		errs = append(errs, fmt.Errorf("admin-listen %s is not a loopback address: set admin-token-file (or admin-token), or listen on 127.0.0.1", c.AdminListen))
	}
	if c.Room.SenderTickBytes != 0 && c.Room.SenderTickBytes < c.MaxMessageBytes {
		errs = append(errs, fmt.Errorf("tick-budget-bytes (%d) must be at least max-message-bytes (%d)", c.Room.SenderTickBytes, c.MaxMessageBytes))
	}
	if len(c.Path) == 0 || c.Path[0] != '/' {
		errs = append(errs, fmt.Errorf("path must start with / (got %q)", c.Path))
	}
	if c.EchoPath != "" && (c.EchoPath[0] != '/' || c.EchoPath == c.Path) {
		errs = append(errs, fmt.Errorf("echo-path must start with / and differ from path (got %q)", c.EchoPath))
	}
	return errors.Join(errs...)
}

// loopbackAddr reports whether a listen address is on loopback only (an
// empty or unspecified host listens on every interface).
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// openFileLimit is the soft RLIMIT_NOFILE after trying to raise it to the
// hard limit: a relay should use every descriptor the operator granted.
func openFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1024
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			lim = raised
		}
	}
	if lim.Cur > 1<<20 {
		return 1 << 20
	}
	return int(lim.Cur)
}
