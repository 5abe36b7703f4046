package server

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tickrelay/tickrelay/auth"
	"github.com/tickrelay/tickrelay/clientip"
	"github.com/tickrelay/tickrelay/iplimit"
	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
)

// Auth modes (Config.Auth.Mode).
const (
	AuthOff = "off"
	AuthJWT = "jwt"
)

// AuthConfig says who may connect, create and join. A zero field means the
// default in its comment.
type AuthConfig struct {
	// Mode is AuthOff (anyone who reaches the port may create and join
	// rooms) or AuthJWT (a token minted by the game's backend is needed).
	// Empty means off, with a loud warning; LoadConfig refuses a config
	// file that does not set it, so a production config says which.
	Mode string
	// Secrets are HS256 shared secrets (any one verifies, for rotation),
	// and SecretFile a file holding one per line (kept out of the command
	// line and the environment).
	Secrets    []string
	SecretFile string
	// JWKSFile (re-read on SIGHUP) and JWKSURL (fetched in the background
	// every JWKSRefresh, default 5m) hold public keys (EdDSA, ES256,
	// RS256).
	JWKSFile    string
	JWKSURL     string
	JWKSRefresh time.Duration
	// Audience must be among the token's aud. Zero means "tickrelay".
	Audience string
	// Issuer, if set, must equal the token's iss.
	Issuer string
	// Leeway tolerates clock skew on exp and nbf. Zero means 30s.
	Leeway time.Duration
	// Algorithms narrows the accepted algorithms (HS256, EdDSA, ES256,
	// RS256). Empty means all four.
	Algorithms []string
	// MaxFailures refused tokens close the connection with 4501. Zero
	// means 3.
	MaxFailures int
	// URLToken, if set, is a query parameter that may carry the token
	// (ws://host/ws?NAME=TOKEN). Empty means off: URLs end up in proxy
	// logs. Browsers can offer the token as a subprotocol instead.
	URLToken string
}

// authSubprotocolPrefix: a browser offers "tickrelay.auth.TOKEN" among its
// subprotocols (the only header a page can set on a WebSocket).
const authSubprotocolPrefix = "tickrelay.auth."

// access holds the relay's access control: the token verifier, the trusted
// proxies and the per-address limits. Goroutine-safe.
type access struct {
	verifier *auth.Verifier // nil with auth off
	trusted  *clientip.Trusted
	limits   *iplimit.Limiter
	proxyPP  bool // connections from trusted proxies start with a PROXY header
	failures int

	mu      sync.Mutex
	refused map[auth.Reason]uint64 // auth failures by reason, for metrics; mu
	granted uint64                 // tokens accepted; mu
}

func newAccess(cfg *Config) (*access, error) {
	a := &access{proxyPP: cfg.ProxyProtocol, failures: cfg.Auth.MaxFailures, refused: map[auth.Reason]uint64{}}
	trusted, err := clientip.ParseTrusted(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("trusted-proxies: %w", err)
	}
	a.trusted = trusted
	limits := cfg.AddressLimits
	for _, e := range cfg.AddressExempt {
		if e == "none" {
			continue
		}
		p, err := netip.ParsePrefix(e)
		if err != nil {
			addr, aerr := netip.ParseAddr(e)
			if aerr != nil {
				return nil, fmt.Errorf("ip-exempt: %q is not a CIDR or an address", e)
			}
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		limits.Exempt = append(limits.Exempt, p)
	}
	if a.limits, err = iplimit.New(limits); err != nil {
		return nil, fmt.Errorf("address limits: %w", err)
	}
	if cfg.Auth.Mode != AuthJWT {
		return a, nil
	}
	ac := auth.Config{
		Audience:    cfg.Auth.Audience,
		Issuer:      cfg.Auth.Issuer,
		JWKSFile:    cfg.Auth.JWKSFile,
		JWKSURL:     cfg.Auth.JWKSURL,
		JWKSRefresh: cfg.Auth.JWKSRefresh,
		Leeway:      cfg.Auth.Leeway,
		Algorithms:  cfg.Auth.Algorithms,
		Logger:      cfg.Logger,
	}
	for _, s := range cfg.Auth.Secrets {
		ac.Secrets = append(ac.Secrets, []byte(s))
	}
	if cfg.Auth.SecretFile != "" {
		data, err := os.ReadFile(cfg.Auth.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth-secret-file: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				ac.Secrets = append(ac.Secrets, []byte(line))
			}
		}
	}
	if a.verifier, err = auth.NewVerifier(ac); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

func (a *access) close() {
	if a.verifier != nil {
		a.verifier.Close()
	}
}

// verify checks a token and counts the outcome.
func (a *access) verify(token string, now time.Time) (*auth.Claims, error) {
	claims, err := a.verifier.Verify(token, now)
	a.mu.Lock()
	if err != nil {
		a.refused[auth.ReasonOf(err)]++
	} else {
		a.granted++
	}
	a.mu.Unlock()
	return claims, err
}

// grantOf turns verified claims into what the room system checks.
func grantOf(c *auth.Claims) *room.Grant {
	return &room.Grant{
		UserID:      c.Subject,
		Metadata:    c.Meta,
		AllowsRoom:  c.AllowsRoom,
		AnyRoom:     c.AllowsAnyRoom(),
		Create:      c.Create,
		MaxTickRate: c.MaxTickRate,
		MaxPlayers:  c.MaxPlayers,
	}
}

// peerAddr is the TCP peer of a connection.
func peerAddr(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// authFailed answers a refused token and counts it against the
// connection and its address; past Auth.MaxFailures the connection is
// closed with 4501. Loop only.
func (s *Server) authFailed(c *conn, requestID uint32, err error) {
	c.rare().authFailures++
	s.access.limits.JoinFailed(c.addr, time.Now())
	reason := reasonOf(err)
	if errors.Is(err, errAuthMissing) || errors.Is(err, errAuthExpired) {
		s.access.mu.Lock()
		s.access.refused[auth.Reason(reason)]++
		s.access.mu.Unlock()
	}
	if int(c.rare().authFailures) >= s.access.failures {
		c.close(closes.Unauthorized, "too many refused tokens: "+err.Error(), true)
		return
	}
	m := errorMessage(requestID, pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, err.Error())
	m.GetError().Reason = reason
	c.answer(appendServerMessage(nil, m))
}

// authenticate handles an Authenticate: the token, once verified, holds for
// every later Join of the connection (until it expires).
func (s *Server) authenticate(c *conn, requestID uint32, token string) {
	if s.access.verifier == nil {
		// Without auth there is nothing to check; say who the client is
		// not, rather than fail a client written for an authed relay.
		c.answer(appendServerMessage(nil, &pb.ServerMessage{RequestId: requestID,
			Body: &pb.ServerMessage_Authenticated{Authenticated: &pb.Authenticated{}}}))
		return
	}
	claims, err := s.access.verify(token, time.Now())
	if err != nil {
		s.authFailed(c, requestID, err)
		return
	}
	c.rare().claims = claims
	var exp int64
	if !claims.ExpiresAt.IsZero() {
		exp = claims.ExpiresAt.UnixMilli()
	}
	c.answer(appendServerMessage(nil, &pb.ServerMessage{RequestId: requestID,
		Body: &pb.ServerMessage_Authenticated{Authenticated: &pb.Authenticated{UserId: claims.Subject, ExpiresAtMs: exp}}}))
}

// joinGrant is what a Join may do: nil with auth off; the token in the Join
// if it carries one, else the connection's. A nil grant with a non-nil
// error means refuse. Loop only.
func (s *Server) joinGrant(c *conn, token string) (*room.Grant, error) {
	if s.access.verifier == nil {
		return nil, nil
	}
	now := time.Now()
	claims := c.claims()
	if token != "" {
		var err error
		if claims, err = s.access.verify(token, now); err != nil {
			return nil, err
		}
	}
	if claims == nil {
		return nil, errAuthMissing
	}
	if !claims.ExpiresAt.IsZero() && now.After(claims.ExpiresAt) {
		// The connection's token expired since Authenticate: a fresh one
		// is needed (a new Authenticate, or Join.auth_token).
		return nil, errAuthExpired
	}
	return grantOf(claims), nil
}

var (
	errAuthMissing = errors.New("auth: missing: this relay needs an auth token (Authenticate, or Join.auth_token)")
	errAuthExpired = errors.New("auth: expired: the connection's token has expired: send a fresh one")
)

// reasonOf is the Error.reason of an auth refusal.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, errAuthMissing):
		return string(auth.ReasonMissing)
	case errors.Is(err, errAuthExpired):
		return string(auth.ReasonExpired)
	}
	return string(auth.ReasonOf(err))
}

// JoinRefused implements room.Peer: a join its room refused (unknown code,
// full, not allowed) counts against the client's address, whose repeated
// failures lock it out of joining (room codes cannot be guessed at speed).
func (c *conn) JoinRefused(pb.ErrorCode) {
	c.loop.srv.access.limits.JoinFailed(c.addr, time.Now())
}

// Address implements room.Peer: the client's address, final before the
// connection's seat is made (after the PROXY header and the forwarded
// headers of a trusted proxy).
func (c *conn) Address() netip.Addr { return c.addr }
