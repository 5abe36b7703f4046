package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// verifyKey is one key a token may be checked with.
type verifyKey struct {
	kid string // "" when the key has none
	alg string // the one algorithm it verifies: HS256, EdDSA, ES256 or RS256
	key any    // []byte, ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey
}

// jwk holds the members of a JSON Web Key (RFC 7517, 7518, 8037) that
// matter here.
type jwk struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Use    string   `json:"use"`
	Alg    string   `json:"alg"`
	KeyOps []string `json:"key_ops"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	K      string   `json:"k"`
	D      string   `json:"d"`
}

// errSkip marks a key of a kind the Verifier does not use (an encryption
// key, another curve or algorithm); the set's other keys still load.
var errSkip = errors.New("not used")

// parseJWKS reads a JWK Set. Keys of unused kinds are skipped; a key of a
// used kind that is broken fails the whole set, as does a set with no
// usable key, so that a bad file or document never replaces good keys.
func parseJWKS(data []byte, allowSecrets bool) ([]verifyKey, error) {
	if len(data) > MaxJWKSBytes {
		return nil, fmt.Errorf("JWKS of %d bytes, above %d", len(data), MaxJWKSBytes)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWKS is not valid JSON: %w", err)
	}
	if set.Keys == nil {
		return nil, errors.New(`JWKS has no "keys" array`)
	}
	var keys []verifyKey
	var skipped []string
	for i, raw := range set.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("key %d: %w", i, err)
		}
		k, err := j.verifyKey(allowSecrets)
		switch {
		case errors.Is(err, errSkip):
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, j.Kid, err))
			continue
		case err != nil:
			return nil, fmt.Errorf("key %d (kid %q): %w", i, j.Kid, err)
		}
		for _, other := range keys {
			if k.kid != "" && other.kid == k.kid && other.alg == k.alg {
				return nil, fmt.Errorf("key %d: kid %q used twice for %s", i, k.kid, k.alg)
			}
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("JWKS has no usable key (%d keys; skipped: %s)", len(set.Keys), strings.Join(skipped, "; "))
	}
	return keys, nil
}

func (j *jwk) verifyKey(allowSecrets bool) (verifyKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return verifyKey{}, fmt.Errorf("use %q: %w", j.Use, errSkip)
	}
	if j.KeyOps != nil && !slices.Contains(j.KeyOps, "verify") {
		return verifyKey{}, fmt.Errorf("key_ops without verify: %w", errSkip)
	}
	k := verifyKey{kid: j.Kid}
	switch {
	case j.Kty == "oct":
		k.alg = HS256
	case j.Kty == "OKP" && j.Crv == "Ed25519":
		k.alg = EdDSA
	case j.Kty == "EC" && j.Crv == "P-256":
		k.alg = ES256
	case j.Kty == "RSA":
		k.alg = RS256
	default:
		return verifyKey{}, fmt.Errorf("kty %q crv %q: %w", j.Kty, j.Crv, errSkip)
	}
	if j.Alg != "" && j.Alg != k.alg {
		if j.Alg == HS256 || j.Alg == EdDSA || j.Alg == ES256 || j.Alg == RS256 || j.Alg == "none" {
			return verifyKey{}, fmt.Errorf("alg %q does not fit a %s key", j.Alg, j.Kty)
		}
		return verifyKey{}, fmt.Errorf("alg %q: %w", j.Alg, errSkip) // e.g. PS256, RS384
	}
	if j.D != "" && j.Kty != "oct" {
		return verifyKey{}, errors.New(`private key material ("d") in a key set of verification keys`)
	}
	var err error
	switch k.alg {
	case HS256:
		k.key, err = j.secret(allowSecrets)
	case EdDSA:
		k.key, err = j.ed25519()
	case ES256:
		k.key, err = j.p256()
	case RS256:
		k.key, err = j.rsa()
	}
	if err != nil {
		return verifyKey{}, err
	}
	return k, nil
}

func (j *jwk) secret(allowed bool) ([]byte, error) {
	if !allowed {
		return nil, errors.New(`"oct" secret keys are refused from a URL; put them in JWKSFile or Secrets`)
	}
	k, err := b64(j.K, "k")
	if err != nil {
		return nil, err
	}
	if len(k) < MinSecretBytes {
		return nil, fmt.Errorf("secret of %d bytes, want at least %d", len(k), MinSecretBytes)
	}
	return k, nil
}

func (j *jwk) ed25519() (ed25519.PublicKey, error) {
	x, err := b64(j.X, "x")
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("Ed25519 x of %d bytes, want %d", len(x), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}

func (j *jwk) p256() (*ecdsa.PublicKey, error) {
	x, err := b64(j.X, "x")
	if err != nil {
		return nil, err
	}
	y, err := b64(j.Y, "y")
	if err != nil {
		return nil, err
	}
	if len(x) != 32 || len(y) != 32 {
		return nil, fmt.Errorf("P-256 coordinates of %d and %d bytes, want 32", len(x), len(y))
	}
	point := append(append([]byte{4}, x...), y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, fmt.Errorf("P-256 point: %w", err)
	}
	return pub, nil
}

func (j *jwk) rsa() (*rsa.PublicKey, error) {
	n, err := b64(j.N, "n")
	if err != nil {
		return nil, err
	}
	e, err := b64(j.E, "e")
	if err != nil {
		return nil, err
	}
	mod := new(big.Int).SetBytes(n)
	if mod.BitLen() < MinRSABits {
		return nil, fmt.Errorf("RSA modulus of %d bits, want at least %d", mod.BitLen(), MinRSABits)
	}
	exp := new(big.Int).SetBytes(e)
	if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 || exp.Bit(0) == 0 {
		return nil, fmt.Errorf("RSA exponent %v is not an odd number from 3 to 2^31-1", exp)
	}
	return &rsa.PublicKey{N: mod, E: int(exp.Int64())}, nil
}

// b64 decodes a base64url member, tolerating the padding some issuers add.
func b64(s, member string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("member %q is missing", member)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("member %q is not base64url: %w", member, err)
	}
	return b, nil
}
