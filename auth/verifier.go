package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks tokens. Verify is safe for concurrent use, does no I/O
// and does not block on reloads, so it may run on event loops. Keys change
// by atomic replacement of the whole set: Reload (the JWKS file) and the
// background refresher (the JWKS URL) never disturb a Verify in progress.
type Verifier struct {
	cfg    settings
	parser *jwt.Parser
	keys   atomic.Pointer[keySet]

	mu       sync.Mutex // serialises key-set changes; guards the fields below
	secrets  []verifyKey
	fileKeys []verifyKey
	urlKeys  []verifyKey
	status   Status

	// The URL refresher (nil channels without JWKSURL).
	client    *http.Client
	ownClient bool
	poke      chan struct{} // an unknown kid was seen: fetch early, rate-limited
	force     chan struct{} // Reload: fetch now
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	ready     chan struct{}
	readyOnce sync.Once
	closeOnce sync.Once
}

// Status describes the keys a Verifier holds and how it got them, for logs,
// health checks and metrics.
type Status struct {
	Keys         int       // keys in use: secrets, file and URL
	FileKeys     int       // from JWKSFile
	FileLoadedAt time.Time // last successful read of JWKSFile
	URLKeys      int       // from JWKSURL
	URLFetchedAt time.Time // last fetch that confirmed or replaced the URL keys
	URLError     error     // the last fetch's error; nil after a success
	URLFetches   uint64    // fetches attempted
	URLFailures  uint64    // fetches that failed (old keys kept)
}

// NewVerifier validates cfg, reads JWKSFile and, with JWKSURL, starts the
// background refresher, whose first fetch begins at once (Ready tells when
// it has keys). Close stops it.
func NewVerifier(cfg Config) (*Verifier, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, fmt.Errorf("auth: invalid config: %w", err)
	}
	v := &Verifier{
		cfg: s,
		// Claims are validated after the signature with the caller's time
		// (validate), so the parser only decodes and checks signatures.
		parser: jwt.NewParser(jwt.WithoutClaimsValidation(), jwt.WithStrictDecoding()),
		ready:  make(chan struct{}),
	}
	for _, sec := range s.Secrets {
		v.secrets = append(v.secrets, verifyKey{alg: HS256, key: slices.Clone(sec)})
	}
	if s.JWKSFile != "" {
		keys, err := readJWKSFile(s.JWKSFile)
		if err != nil {
			return nil, err
		}
		v.fileKeys = keys
		v.status.FileLoadedAt = time.Now()
	}
	v.install()
	if s.JWKSURL == "" {
		close(v.ready)
		return v, nil
	}
	v.client = s.HTTPClient
	if v.client == nil {
		v.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		v.ownClient = true
	}
	v.poke = make(chan struct{}, 1)
	v.force = make(chan struct{}, 1)
	v.done = make(chan struct{})
	v.ctx, v.cancel = context.WithCancel(context.Background())
	go v.refreshLoop()
	return v, nil
}

// Verify checks token at time now (pass time.Now()) and returns its claims,
// or an *Error (matching ErrUnauthorized) whose Reason says why it was
// refused. The checks, in order: size; structure; algorithm allowed; a
// key for alg and kid; signature; exp, nbf, iat (with Config.Leeway), aud,
// iss; then sub, room, max_tick_rate, max_players and meta.
func (v *Verifier) Verify(token string, now time.Time) (*Claims, error) {
	if token == "" {
		return nil, refuse(ReasonMissing, "no token")
	}
	if len(token) > v.cfg.MaxTokenBytes {
		return nil, refuse(ReasonMalformed, "token of %d bytes, above %d", len(token), v.cfg.MaxTokenBytes)
	}
	ks := v.keys.Load()
	var tc tokenClaims
	var keyErr *Error
	_, err := v.parser.ParseWithClaims(token, &tc, func(t *jwt.Token) (any, error) {
		key, e := v.keyFor(ks, t)
		if e != nil {
			keyErr = e
			return nil, e
		}
		return key, nil
	})
	switch {
	case keyErr != nil:
		return nil, keyErr
	case errors.Is(err, jwt.ErrTokenMalformed):
		return nil, &Error{Reason: ReasonMalformed, Detail: err.Error(), cause: err}
	case errors.Is(err, jwt.ErrTokenUnverifiable): // alg missing or unknown
		return nil, &Error{Reason: ReasonAlgorithmNotAllowed, Detail: err.Error(), cause: err}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return nil, &Error{Reason: ReasonBadSignature, Detail: "signature does not verify", cause: err}
	case err != nil:
		return nil, &Error{Reason: ReasonMalformed, Detail: err.Error(), cause: err}
	}
	if e := v.validate(&tc, now); e != nil {
		return nil, e
	}
	c, e := tc.claims(v.cfg.MaxMetaBytes)
	if e != nil {
		return nil, e
	}
	return c, nil
}

// keyFor picks the key(s) for a parsed but unverified token.
func (v *Verifier) keyFor(ks *keySet, t *jwt.Token) (any, *Error) {
	alg := t.Method.Alg()
	if !slices.Contains(v.cfg.algorithms, alg) {
		return nil, refuse(ReasonAlgorithmNotAllowed, "alg %s is not allowed", quote(alg))
	}
	if _, ok := t.Header["crit"]; ok {
		return nil, refuse(ReasonMalformed, `"crit" header extensions are not supported`)
	}
	kid := ""
	if raw, ok := t.Header["kid"]; ok {
		if kid, ok = raw.(string); !ok {
			return nil, refuse(ReasonMalformed, "kid header is not a string")
		}
	}
	key, e := ks.lookup(alg, kid)
	if e != nil && e.Reason == ReasonUnknownKey && kid != "" && v.poke != nil {
		select { // the key may have just been published: fetch early
		case v.poke <- struct{}{}:
		default:
		}
	}
	return key, e
}

// validate checks the registered claims with the JWT library's validator
// at the caller's time.
func (v *Verifier) validate(tc *tokenClaims, now time.Time) *Error {
	opts := []jwt.ParserOption{
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithLeeway(v.cfg.leeway),
		jwt.WithIssuedAt(),
		jwt.WithAudience(v.cfg.Audience),
	}
	if !v.cfg.AllowNoExpiry {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	err := jwt.NewValidator(opts...).Validate(tc)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return &Error{Reason: ReasonMissingClaim, Detail: err.Error(), cause: err}
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return &Error{Reason: ReasonWrongAudience, Detail: fmt.Sprintf("aud %q does not include %q", []string(tc.Audience), v.cfg.Audience), cause: err}
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return &Error{Reason: ReasonWrongIssuer, Detail: fmt.Sprintf("iss %s, want %q", quote(tc.Issuer), v.cfg.Issuer), cause: err}
	case errors.Is(err, jwt.ErrTokenExpired):
		return &Error{Reason: ReasonExpired, Detail: fmt.Sprintf("expired %v ago", now.Sub(tc.ExpiresAt.Time).Round(time.Second)), cause: err}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return &Error{Reason: ReasonNotYetValid, Detail: fmt.Sprintf("nbf is %v ahead", tc.NotBefore.Sub(now).Round(time.Second)), cause: err}
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return &Error{Reason: ReasonNotYetValid, Detail: fmt.Sprintf("iat is %v ahead", tc.IssuedAt.Sub(now).Round(time.Second)), cause: err}
	default:
		return &Error{Reason: ReasonMalformed, Detail: err.Error(), cause: err}
	}
}

// Reload reads JWKSFile again (call it on SIGHUP) and, with JWKSURL, asks
// the refresher for a fetch now. A file that cannot be read or parsed is
// refused with an error and the keys in use stay. Without JWKSFile the
// file part is a no-op.
func (v *Verifier) Reload() error {
	if v.force != nil {
		select {
		case v.force <- struct{}{}:
		default:
		}
	}
	if v.cfg.JWKSFile == "" {
		return nil
	}
	keys, err := readJWKSFile(v.cfg.JWKSFile)
	if err != nil {
		v.cfg.Logger.Warn("auth: JWKS file reload refused, keeping the old keys", "file", v.cfg.JWKSFile, "err", err)
		return err
	}
	v.mu.Lock()
	v.fileKeys = keys
	v.status.FileLoadedAt = time.Now()
	v.installLocked()
	v.mu.Unlock()
	v.cfg.Logger.Info("auth: JWKS file reloaded", "file", v.cfg.JWKSFile, "keys", len(keys))
	return nil
}

// Ready is closed once the Verifier has the keys of its JWKSURL (after the
// first successful fetch), at once without a URL. Verify works before it,
// with the other keys.
func (v *Verifier) Ready() <-chan struct{} { return v.ready }

// Status returns a snapshot of the key set's state.
func (v *Verifier) Status() Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.status
}

// Close stops the URL refresher, cancelling a fetch in progress, and waits
// for it. Verify keeps working with the last keys. Close may be called
// more than once.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		if v.cancel == nil {
			return
		}
		v.cancel()
		<-v.done
		if v.ownClient {
			v.client.CloseIdleConnections()
		}
	})
}

func (v *Verifier) install() {
	v.mu.Lock()
	v.installLocked()
	v.mu.Unlock()
}

// installLocked publishes a new key set from the three sources; v.mu held.
func (v *Verifier) installLocked() {
	ks := newKeySet(v.secrets, v.fileKeys, v.urlKeys)
	v.keys.Store(ks)
	v.status.Keys = ks.size
	v.status.FileKeys = len(v.fileKeys)
	v.status.URLKeys = len(v.urlKeys)
}

func readJWKSFile(name string) ([]verifyKey, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file %s: %w", name, err)
	}
	keys, err := parseJWKS(data, true)
	if err != nil {
		return nil, fmt.Errorf("auth: JWKS file %s: %w", name, err)
	}
	return keys, nil
}
