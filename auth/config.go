package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// Algorithms the Verifier can check, by their JWS "alg" names.
const (
	HS256 = "HS256" // HMAC with SHA-256: a secret shared with the backend
	EdDSA = "EdDSA" // Ed25519 public key
	ES256 = "ES256" // ECDSA P-256 public key
	RS256 = "RS256" // RSA PKCS#1 v1.5 with SHA-256, keys of 2048 bits or more
)

// Defaults for the zero fields of Config, and fixed bounds.
const (
	DefaultLeeway           = 30 * time.Second
	DefaultMaxTokenBytes    = 4096
	DefaultMaxMetaBytes     = 1024
	DefaultJWKSRefresh      = 5 * time.Minute
	DefaultJWKSMinRefresh   = 30 * time.Second
	DefaultJWKSFetchTimeout = 10 * time.Second

	MinSecretBytes  = 32      // HS256 secrets: RFC 7518 asks for at least the hash size
	MinRSABits      = 2048    // smaller RSA keys are refused
	MaxSubjectBytes = 256     // longest sub
	MaxRoomPatterns = 32      // longest room list
	MaxRoomIDBytes  = 64      // longest room id or pattern, as the relay's room ids
	MaxJWKSBytes    = 1 << 20 // largest JWKS file or document
)

// A failed JWKS fetch is retried after firstRetry, doubling up to
// min(JWKSRefresh, maxRetry).
const (
	firstRetry = time.Second
	maxRetry   = time.Minute
)

// Config configures a Verifier. A zero field takes the default named in its
// comment. At least one key source (Secrets, JWKSFile, JWKSURL) is needed.
type Config struct {
	// Audience must be one of the token's aud values: the name game
	// backends use for this relay (e.g. "tickrelay"). Required.
	Audience string
	// Issuer, when set, must equal the token's iss.
	Issuer string

	// Secrets verify HS256 tokens; any one of them does, so a secret is
	// rotated by adding the new one, moving the backends to it, then
	// removing the old one. Each at least MinSecretBytes long.
	Secrets [][]byte

	// JWKSFile is a JSON Web Key Set (RFC 7517) file: public keys (OKP
	// Ed25519, EC P-256, RSA) and optionally "oct" HS256 secrets. It is
	// read by NewVerifier and again by Reload.
	JWKSFile string
	// JWKSURL is a JWKS document (an identity provider's jwks_uri)
	// fetched in the background every JWKSRefresh (default 5m), with
	// ETag/Last-Modified revalidation. A token naming an unknown kid asks
	// for an early fetch, at most once per JWKSMinRefresh (default 30s).
	// A failed fetch keeps the keys of the last good one and is retried
	// with backoff. "oct" keys are refused from a URL. Use https unless the
	// network between the relay and the URL is trusted.
	JWKSURL          string
	JWKSRefresh      time.Duration
	JWKSMinRefresh   time.Duration
	JWKSFetchTimeout time.Duration // one fetch, default 10s
	// HTTPClient fetches JWKSURL; nil: a client of the Verifier's own.
	HTTPClient *http.Client

	// Algorithms are the accepted "alg" values, from HS256, EdDSA, ES256
	// and RS256; nil: all four. "none" is never accepted.
	Algorithms []string
	// Leeway tolerates clock differences with the backends when checking
	// exp, nbf and iat. Default 30s; negative: none.
	Leeway time.Duration
	// AllowNoExpiry accepts tokens without exp. By default exp is
	// required: a token without one could be replayed forever.
	AllowNoExpiry bool

	// MaxTokenBytes refuses longer tokens before any parsing. Default 4096.
	MaxTokenBytes int
	// MaxMetaBytes bounds the meta claim (keys plus values). Default 1024.
	MaxMetaBytes int

	// Logger receives JWKS loading and fetching events; nil: none.
	Logger *slog.Logger
}

// settings is Config with defaults applied.
type settings struct {
	Config
	algorithms []string
	leeway     time.Duration
}

func (c Config) settings() (settings, error) {
	s := settings{Config: c}
	if c.Audience == "" {
		return s, errors.New("an Audience is required")
	}
	if len(c.Secrets) == 0 && c.JWKSFile == "" && c.JWKSURL == "" {
		return s, errors.New("no keys: set Secrets, JWKSFile or JWKSURL")
	}
	for i, sec := range c.Secrets {
		if len(sec) < MinSecretBytes {
			return s, fmt.Errorf("secret %d (Secrets[%d]) has %d bytes, want at least %d", i, i, len(sec), MinSecretBytes)
		}
	}
	s.algorithms = []string{HS256, EdDSA, ES256, RS256}
	if c.Algorithms != nil {
		if len(c.Algorithms) == 0 {
			return s, errors.New("the Algorithms list is empty")
		}
		for _, a := range c.Algorithms {
			if !slices.Contains(s.algorithms, a) {
				return s, fmt.Errorf("algorithm %q is not one of HS256, EdDSA, ES256, RS256", a)
			}
		}
		s.algorithms = slices.Clone(c.Algorithms)
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return s, fmt.Errorf("JWKSURL %q is not an http(s) URL", c.JWKSURL)
		}
	}
	s.leeway = durationOr(c.Leeway, DefaultLeeway)
	if c.Leeway < 0 {
		s.leeway = 0
	}
	s.JWKSRefresh = durationOr(c.JWKSRefresh, DefaultJWKSRefresh)
	s.JWKSMinRefresh = durationOr(c.JWKSMinRefresh, DefaultJWKSMinRefresh)
	s.JWKSFetchTimeout = durationOr(c.JWKSFetchTimeout, DefaultJWKSFetchTimeout)
	for name, d := range map[string]time.Duration{"JWKSRefresh": c.JWKSRefresh, "JWKSMinRefresh": c.JWKSMinRefresh, "JWKSFetchTimeout": c.JWKSFetchTimeout} {
		if d < 0 {
			return s, fmt.Errorf("%s %v is negative", name, d)
		}
	}
	if s.MaxTokenBytes == 0 {
		s.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if s.MaxMetaBytes == 0 {
		s.MaxMetaBytes = DefaultMaxMetaBytes
	}
	if s.MaxTokenBytes < 0 || s.MaxMetaBytes < 0 {
		return s, errors.New("MaxTokenBytes and MaxMetaBytes must not be negative")
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

func durationOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
