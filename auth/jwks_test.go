package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

// TestJWKSFileWithSeveralKeys: one set with every key kind, unused kinds
// among them, and tokens selecting keys by kid.
func TestJWKSFileWithSeveralKeys(t *testing.T) {
	t.Parallel()
	k := keys()
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	p384b, err := p384.PublicKey.Bytes()
	require.NoError(t, err)
	encKey := jwkRSA("enc-1", &k.rsa2.PublicKey)
	encKey["use"] = "enc"
	delete(encKey, "alg")
	ps256 := jwkRSA("ps-1", &k.rsa2.PublicKey)
	ps256["alg"] = "PS256"
	file := writeJWKS(t, "",
		jwkEd("ed-1", edPub(k.ed)),
		jwkEd("ed-2", edPub(k.ed2)),
		jwkEC("ec-1", &k.ec.PublicKey),
		jwkRSA("rsa-1", &k.rsa.PublicKey),
		jwkOct("hs-1", k.secret),
		encKey, // skipped: an encryption key
		ps256,  // skipped: an algorithm not used
		map[string]any{"kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(p384b[1:49]), "y": b64(p384b[49:])}, // skipped
		map[string]any{"kty": "OKP", "crv": "X25519", "kid": "x", "x": b64(make([]byte, 32))},                   // skipped
	)
	v := newVerifier(t, auth.Config{JWKSFile: file})
	require.Equal(t, 5, v.Status().Keys)
	require.Equal(t, 5, v.Status().FileKeys)
	require.False(t, v.Status().FileLoadedAt.IsZero())

	for _, tc := range []struct {
		method jwt.SigningMethod
		key    any
		kid    string
	}{
		{jwt.SigningMethodEdDSA, k.ed, "ed-1"},
		{jwt.SigningMethodEdDSA, k.ed2, "ed-2"},
		{jwt.SigningMethodEdDSA, k.ed2, ""},
		{jwt.SigningMethodES256, k.ec, "ec-1"},
		{jwt.SigningMethodES256, k.ec, ""},
		{jwt.SigningMethodRS256, k.rsa, "rsa-1"},
		{jwt.SigningMethodHS256, k.secret, "hs-1"},
		{jwt.SigningMethodHS256, k.secret, ""},
	} {
		_, err := v.Verify(mint(t, tc.method, tc.key, tc.kid, claims()), now)
		require.NoError(t, err, "%s kid %q", tc.method.Alg(), tc.kid)
	}
	_, err = v.Verify(mint(t, jwt.SigningMethodRS256, k.rsa2, "enc-1", claims()), now)
	requireReason(t, auth.ReasonUnknownKey, err, "skipped keys are not used")
}

func TestJWKSRejected(t *testing.T) {
	t.Parallel()
	k := keys()
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	ec := jwkEC("ec", &k.ec.PublicKey)
	offCurve := jwkEC("ec", &k.ec.PublicKey)
	offCurve["y"] = b64(make([]byte, 32))
	evenE := jwkRSA("r", &k.rsa.PublicKey)
	evenE["e"] = b64(big.NewInt(65536).Bytes())
	withD := jwkEd("e", edPub(k.ed))
	withD["d"] = b64(k.ed.Seed())
	wrongAlg := jwkRSA("r", &k.rsa.PublicKey)
	wrongAlg["alg"] = "ES256"
	noneAlg := jwkEd("e", edPub(k.ed))
	noneAlg["alg"] = "none"
	shortEd := jwkEd("e", edPub(k.ed)[:31])
	padded := jwkEd("e", edPub(k.ed))
	padded["x"] = padded["x"].(string) + "="
	encOnly := jwkEd("e", edPub(k.ed))
	encOnly["use"] = "enc"

	for _, tc := range []struct {
		name string
		data string
		want string
	}{
		{"not JSON", "{", "not valid JSON"},
		{"no keys member", `{"kty":"oct"}`, `no "keys" array`},
		{"empty set", `{"keys":[]}`, "no usable key"},
		{"only skipped keys", string(jwksJSON(t, encOnly)), "no usable key"},
		{"key not an object", `{"keys":[7]}`, "key 0"},
		{"bad base64", string(jwksJSON(t, map[string]any{"kty": "OKP", "crv": "Ed25519", "x": "!!"})), "not base64url"},
		{"missing member", string(jwksJSON(t, map[string]any{"kty": "RSA", "n": b64(k.rsa.N.Bytes())})), `"e" is missing`},
		{"short Ed25519", string(jwksJSON(t, shortEd)), "Ed25519 x of 31 bytes"},
		{"EC point off the curve", string(jwksJSON(t, offCurve)), "P-256 point"},
		{"EC short coordinate", string(jwksJSON(t, map[string]any{"kty": "EC", "crv": "P-256", "x": ec["x"], "y": b64([]byte{1})})), "coordinates"},
		{"RSA 1024", string(jwksJSON(t, jwkRSA("small", &small.PublicKey))), "1024 bits"},
		{"RSA even exponent", string(jwksJSON(t, evenE)), "exponent"},
		{"alg of another key type", string(jwksJSON(t, wrongAlg)), `alg "ES256" does not fit`},
		{"alg none", string(jwksJSON(t, noneAlg)), `alg "none" does not fit`},
		{"private key", string(jwksJSON(t, withD)), "private key material"},
		{"short secret", string(jwksJSON(t, jwkOct("s", []byte("short")))), "secret of 5 bytes"},
		{"duplicate kid", string(jwksJSON(t, jwkEd("same", edPub(k.ed)), jwkEd("same", edPub(k.ed2)))), `kid "same" used twice`},
		{"one bad key spoils the set", string(jwksJSON(t, jwkEd("good", edPub(k.ed)), shortEd)), "key 1"},
		{"too large", `{"keys":[` + strings.Repeat(" ", auth.MaxJWKSBytes) + `]}`, "above"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "jwks.json")
			writeFile(t, path, []byte(tc.data))
			_, err := auth.NewVerifier(auth.Config{Audience: audience, JWKSFile: path})
			require.ErrorContains(t, err, "auth: JWKS file "+path)
			require.ErrorContains(t, err, tc.want)
		})
	}

	// Padding is tolerated; the same kid with two algorithms is allowed.
	path := writeJWKS(t, "", padded, jwkOct("e", k.secret))
	v := newVerifier(t, auth.Config{JWKSFile: path})
	_, err = v.Verify(mint(t, jwt.SigningMethodEdDSA, k.ed, "e", claims()), now)
	require.NoError(t, err)
	_, err = v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, "e", claims()), now)
	require.NoError(t, err)
}
