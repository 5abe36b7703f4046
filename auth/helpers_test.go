package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

// now is the verification time of most tests.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const audience = "tickrelay"

// testKeys are generated once per test binary: RSA generation is slow.
type testKeys struct {
	secret, secret2 []byte
	ed, ed2         ed25519.PrivateKey
	ec, ec2         *ecdsa.PrivateKey
	rsa, rsa2       *rsa.PrivateKey
}

var keysOnce = sync.OnceValue(func() *testKeys {
	mustEC := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	}
	mustRSA := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	}
	seed := func(s string) ed25519.PrivateKey {
		h := sha256.Sum256([]byte(s))
		return ed25519.NewKeyFromSeed(h[:])
	}
	return &testKeys{
		secret:  []byte("0123456789abcdef0123456789abcdef"),
		secret2: []byte("fedcba9876543210fedcba9876543210"),
		ed:      seed("ed one"), ed2: seed("ed two"),
		ec: mustEC(), ec2: mustEC(),
		rsa: mustRSA(), rsa2: mustRSA(),
	}
})

func keys() *testKeys { return keysOnce() }

func edPub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// JWK builders.
func jwkEd(kid string, pub ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pub), "use": "sig", "alg": "EdDSA"}
}

func jwkEC(kid string, pub *ecdsa.PublicKey) map[string]any {
	b, err := pub.Bytes() // 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(b[1:33]), "y": b64(b[33:])}
}

func jwkRSA(kid string, pub *rsa.PublicKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()), "alg": "RS256"}
}

func jwkOct(kid string, secret []byte) map[string]any {
	return map[string]any{"kty": "oct", "kid": kid, "k": b64(secret)}
}

func jwksJSON(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	require.NoError(t, err)
	return b
}

// writeJWKS writes a JWKS file (atomically: readers never see half a file)
// and returns its path.
func writeJWKS(t testing.TB, path string, keys ...map[string]any) string {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "jwks.json")
	}
	writeFile(t, path, jwksJSON(t, keys...))
	return path
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// claims returns a valid payload at now, to be modified by the test.
func claims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "user-1",
		"aud": audience,
		"exp": now.Add(5 * time.Minute).Unix(),
		"iat": now.Add(-time.Minute).Unix(),
	}
}

// mint signs claims with method and key; kid is set when not empty.
func mint(t testing.TB, method jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func newVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Audience == "" {
		cfg.Audience = audience
	}
	v, err := auth.NewVerifier(cfg)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// requireReason checks that err is a refusal with the given reason.
func requireReason(t testing.TB, want auth.Reason, err error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, auth.ErrUnauthorized, msgAndArgs...)
	require.Equal(t, want, auth.ReasonOf(err), "error %q %v", err, msgAndArgs)
}
