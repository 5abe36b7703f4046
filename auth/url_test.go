package auth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

const waitFor = 10 * time.Second

// jwksServer serves a JWKS document on loopback with an ETag, and can be
// told to fail, hang or serve garbage.
type jwksServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	body     []byte
	etag     string
	version  int
	mode     string // "ok", "fail", "hang", "garbage"
	requests atomic.Int64
	revalid  atomic.Int64 // answered 304 Not Modified
	release  chan struct{}
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{mode: "ok", release: make(chan struct{})}
	s.set(t, keys...)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	t.Cleanup(func() { close(s.release) }) // runs first: frees hung handlers
	return s
}

func (s *jwksServer) set(t *testing.T, keys ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.body = jwksJSON(t, keys...)
	s.etag = fmt.Sprintf(`"v%d"`, s.version)
}

func (s *jwksServer) setMode(m string) {
	s.mu.Lock()
	s.mode = m
	s.mu.Unlock()
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	s.mu.Lock()
	mode, body, etag := s.mode, s.body, s.etag
	s.mu.Unlock()
	switch mode {
	case "fail":
		http.Error(w, "identity provider down", http.StatusInternalServerError)
	case "hang":
		select {
		case <-r.Context().Done():
		case <-s.release:
		}
	case "garbage":
		_, _ = w.Write([]byte(`<html>login</html>`))
	default:
		if r.Header.Get("If-None-Match") == etag {
			s.revalid.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(body)
	}
}

func (s *jwksServer) url() string { return s.srv.URL + "/.well-known/jwks.json" }

func waitReady(t *testing.T, v *auth.Verifier) {
	t.Helper()
	select {
	case <-v.Ready():
	case <-time.After(waitFor):
		t.Fatalf("no successful JWKS fetch: %+v", v.Status())
	}
}

func verifies(v *auth.Verifier, tok string) func() bool {
	return func() bool {
		_, err := v.Verify(tok, now)
		return err == nil
	}
}

func TestJWKSURLFetchesAndRevalidates(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("ed-1", edPub(k.ed)), jwkEC("ec-1", &k.ec.PublicKey))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), JWKSRefresh: 20 * time.Millisecond})
	waitReady(t, v)
	_, err := v.Verify(mint(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims()), now)
	require.NoError(t, err)
	_, err = v.Verify(mint(t, jwt.SigningMethodES256, k.ec, "ec-1", claims()), now)
	require.NoError(t, err)

	// Later fetches are conditional and answered 304; the keys stay.
	require.Eventually(t, func() bool { return srv.revalid.Load() >= 2 && v.Status().URLFetches >= 3 }, waitFor, time.Millisecond)
	s := v.Status()
	require.Equal(t, 2, s.URLKeys)
	require.Equal(t, 2, s.Keys)
	require.NoError(t, s.URLError)
	require.False(t, s.URLFetchedAt.IsZero())
	require.GreaterOrEqual(t, s.URLFetches, uint64(3))
	require.Zero(t, s.URLFailures)
	_, err = v.Verify(mint(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims()), now)
	require.NoError(t, err)
}

func TestJWKSURLRefreshRotatesKeys(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("old", edPub(k.ed)))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), JWKSRefresh: 20 * time.Millisecond})
	waitReady(t, v)
	oldTok := mint(t, jwt.SigningMethodEdDSA, k.ed, "old", claims())
	newTok := mint(t, jwt.SigningMethodEdDSA, k.ed2, "new", claims())
	require.True(t, verifies(v, oldTok)())

	srv.set(t, jwkEd("old", edPub(k.ed)), jwkEd("new", edPub(k.ed2)))
	require.Eventually(t, verifies(v, newTok), waitFor, time.Millisecond)
	require.True(t, verifies(v, oldTok)(), "both during the overlap")

	srv.set(t, jwkEd("new", edPub(k.ed2)))
	require.Eventually(t, func() bool { return !verifies(v, oldTok)() }, waitFor, time.Millisecond)
	_, err := v.Verify(oldTok, now)
	requireReason(t, auth.ReasonUnknownKey, err, "the retired key is gone")
	require.True(t, verifies(v, newTok)())
}

func TestJWKSURLFailuresKeepTheLastGoodKeys(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("ed-1", edPub(k.ed)))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), JWKSRefresh: 20 * time.Millisecond})
	waitReady(t, v)
	tok := mint(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims())

	for _, tc := range []struct{ mode, want string }{
		{"fail", "HTTP status 500"},
		{"garbage", "auth: JWKS document: JWKS is not valid JSON"},
	} {
		srv.setMode(tc.mode)
		require.Eventually(t, func() bool {
			err := v.Status().URLError
			return err != nil && containsText(err, tc.want)
		}, waitFor, time.Millisecond, tc.mode)
		require.True(t, verifies(v, tok)(), "old keys kept after %s", tc.mode)
		require.Equal(t, 1, v.Status().URLKeys)
	}
	failures := v.Status().URLFailures
	require.GreaterOrEqual(t, failures, uint64(2))

	srv.setMode("ok")
	require.Eventually(t, func() bool { return v.Status().URLError == nil }, waitFor, time.Millisecond)
	require.True(t, verifies(v, tok)())
}

func TestJWKSURLFetchTimeout(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("ed-1", edPub(k.ed)))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), JWKSRefresh: 20 * time.Millisecond, JWKSFetchTimeout: 50 * time.Millisecond})
	waitReady(t, v)
	srv.setMode("hang")
	require.Eventually(t, func() bool {
		err := v.Status().URLError
		return err != nil && containsText(err, context.DeadlineExceeded.Error())
	}, waitFor, time.Millisecond)
	require.True(t, verifies(v, mint(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims()))())
}

func TestJWKSURLUnknownKidFetchesEarly(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("old", edPub(k.ed)))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), JWKSRefresh: time.Hour, JWKSMinRefresh: 10 * time.Millisecond})
	waitReady(t, v)
	require.Equal(t, int64(1), srv.requests.Load())

	srv.set(t, jwkEd("old", edPub(k.ed)), jwkEd("new", edPub(k.ed2)))
	newTok := mint(t, jwt.SigningMethodEdDSA, k.ed2, "new", claims())
	// Each refusal for the unknown kid asks for a fetch; the refresh
	// interval (an hour) would otherwise keep the new key out.
	require.Eventually(t, verifies(v, newTok), waitFor, time.Millisecond)

	// Unknown kids do not make the refresher hammer the provider: at most
	// one fetch per JWKSMinRefresh.
	before := srv.requests.Load()
	bogus := mint(t, jwt.SigningMethodEdDSA, k.ed2, "bogus", claims())
	start := time.Now()
	for range 1000 {
		_, err := v.Verify(bogus, now)
		requireReason(t, auth.ReasonUnknownKey, err)
	}
	elapsed := time.Since(start)
	require.LessOrEqual(t, srv.requests.Load()-before, int64(elapsed/(10*time.Millisecond))+2)
}

func TestReloadFetchesTheURLNow(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("old", edPub(k.ed)))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), JWKSRefresh: time.Hour, JWKSMinRefresh: time.Hour})
	waitReady(t, v)
	srv.set(t, jwkEd("new", edPub(k.ed2)))
	newTok := mint(t, jwt.SigningMethodEdDSA, k.ed2, "new", claims())
	_, err := v.Verify(newTok, now)
	requireReason(t, auth.ReasonUnknownKey, err)
	require.NoError(t, v.Reload())
	require.Eventually(t, verifies(v, newTok), waitFor, time.Millisecond)
}

func TestJWKSURLRefusesSecrets(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("ed-1", edPub(k.ed)), jwkOct("hs", k.secret))
	v := newVerifier(t, auth.Config{JWKSURL: srv.url(), Secrets: [][]byte{k.secret2}})
	require.Eventually(t, func() bool { return v.Status().URLError != nil }, waitFor, time.Millisecond)
	require.ErrorContains(t, v.Status().URLError, `"oct" secret keys are refused from a URL`)
	select {
	case <-v.Ready():
		t.Fatal("ready without URL keys")
	default:
	}
	// The other sources work while the URL has no good keys.
	require.True(t, verifies(v, mint(t, jwt.SigningMethodHS256, k.secret2, "", claims()))())
	_, err := v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, "hs", claims()), now)
	requireReason(t, auth.ReasonBadSignature, err, "the published secret is not used")
}

func TestCloseCancelsAHungFetch(t *testing.T) {
	t.Parallel()
	k := keys()
	srv := newJWKSServer(t, jwkEd("ed-1", edPub(k.ed)))
	srv.setMode("hang")
	v, err := auth.NewVerifier(auth.Config{Audience: audience, JWKSURL: srv.url(), JWKSFetchTimeout: time.Hour})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return srv.requests.Load() == 1 }, waitFor, time.Millisecond)
	closed := make(chan struct{})
	go func() {
		v.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close did not return while a fetch hung")
	}
	require.ErrorIs(t, v.Status().URLError, context.Canceled)
	v.Close()
}

func containsText(err error, s string) bool {
	return err != nil && strings.Contains(err.Error(), s)
}
