package auth_test

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

const issuer = "https://game.example"

// algCase is one signing algorithm with a Verifier configured for it.
type algCase struct {
	name   string
	method jwt.SigningMethod
	sign   any    // the signing key
	kid    string // set in the token header
	cfg    auth.Config
}

func algCases(t testing.TB) []algCase {
	k := keys()
	file := writeJWKS(t, "",
		jwkEd("ed-1", edPub(k.ed)),
		jwkEC("ec-1", &k.ec.PublicKey),
		jwkRSA("rsa-1", &k.rsa.PublicKey))
	return []algCase{
		{"HS256", jwt.SigningMethodHS256, k.secret, "", auth.Config{Secrets: [][]byte{k.secret}}},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed, "ed-1", auth.Config{JWKSFile: file}},
		{"ES256", jwt.SigningMethodES256, k.ec, "ec-1", auth.Config{JWKSFile: file}},
		{"RS256", jwt.SigningMethodRS256, k.rsa, "rsa-1", auth.Config{JWKSFile: file}},
	}
}

// TestVerifyClaims runs every claim rule under every algorithm.
func TestVerifyClaims(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		edit   func(c jwt.MapClaims)
		reason auth.Reason // "" when the token is accepted
		check  func(t *testing.T, c *auth.Claims)
	}{
		{name: "minimal", edit: func(jwt.MapClaims) {}, check: func(t *testing.T, c *auth.Claims) {
			require.Equal(t, "user-1", c.Subject)
			require.Equal(t, []string{audience}, c.Audience)
			require.Equal(t, issuer, c.Issuer)
			require.Equal(t, now.Add(5*time.Minute), c.ExpiresAt.UTC())
			require.Equal(t, now.Add(-time.Minute), c.IssuedAt.UTC())
			require.True(t, c.NotBefore.IsZero())
			require.Nil(t, c.Rooms)
			require.True(t, c.AllowsAnyRoom())
			require.True(t, c.AllowsRoom("anything"))
			require.False(t, c.Create)
			require.Zero(t, c.MaxTickRate)
			require.Zero(t, c.MaxPlayers)
			require.Nil(t, c.Meta)
		}},
		{name: "every claim", edit: func(c jwt.MapClaims) {
			c["nbf"] = now.Add(-time.Second).Unix()
			c["aud"] = []string{"other", audience}
			c["room"] = []string{"lobby", "match-*"}
			c["create"] = true
			c["max_tick_rate"] = 60
			c["max_players"] = 10
			c["meta"] = map[string]string{"name": "Ada", "team": "blue"}
			c["jti"] = "ignored"
			c["custom"] = map[string]any{"ignored": true}
		}, check: func(t *testing.T, c *auth.Claims) {
			require.Equal(t, []string{"other", audience}, c.Audience)
			require.Equal(t, now.Add(-time.Second), c.NotBefore.UTC())
			require.Equal(t, []string{"lobby", "match-*"}, c.Rooms)
			require.True(t, c.Create)
			require.Equal(t, 60, c.MaxTickRate)
			require.Equal(t, 10, c.MaxPlayers)
			require.Equal(t, map[string]string{"name": "Ada", "team": "blue"}, c.Meta)
		}},
		{name: "room as a string", edit: func(c jwt.MapClaims) { c["room"] = "lobby" },
			check: func(t *testing.T, c *auth.Claims) { require.Equal(t, []string{"lobby"}, c.Rooms) }},
		{name: "room empty list admits nothing", edit: func(c jwt.MapClaims) { c["room"] = []string{} },
			check: func(t *testing.T, c *auth.Claims) {
				require.NotNil(t, c.Rooms)
				require.False(t, c.AllowsRoom("lobby"))
			}},
		{name: "room null is absent", edit: func(c jwt.MapClaims) { c["room"] = nil },
			check: func(t *testing.T, c *auth.Claims) { require.True(t, c.AllowsAnyRoom()) }},

		{name: "sub missing", edit: func(c jwt.MapClaims) { delete(c, "sub") }, reason: auth.ReasonMissingClaim},
		{name: "sub empty", edit: func(c jwt.MapClaims) { c["sub"] = "" }, reason: auth.ReasonMissingClaim},
		{name: "sub at the limit", edit: func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", auth.MaxSubjectBytes) }},
		{name: "sub too long", edit: func(c jwt.MapClaims) { c["sub"] = strings.Repeat("u", auth.MaxSubjectBytes+1) }, reason: auth.ReasonInvalidClaim},
		{name: "sub not a string", edit: func(c jwt.MapClaims) { c["sub"] = 42 }, reason: auth.ReasonMalformed},

		{name: "exp missing", edit: func(c jwt.MapClaims) { delete(c, "exp") }, reason: auth.ReasonMissingClaim},
		{name: "exp passed", edit: func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }, reason: auth.ReasonExpired},
		{name: "exp passed within leeway", edit: func(c jwt.MapClaims) { c["exp"] = now.Add(-20 * time.Second).Unix() }},
		{name: "exp not a number", edit: func(c jwt.MapClaims) { c["exp"] = "tomorrow" }, reason: auth.ReasonMalformed},
		{name: "nbf ahead", edit: func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() }, reason: auth.ReasonNotYetValid},
		{name: "nbf ahead within leeway", edit: func(c jwt.MapClaims) { c["nbf"] = now.Add(20 * time.Second).Unix() }},
		{name: "iat ahead", edit: func(c jwt.MapClaims) { c["iat"] = now.Add(time.Minute).Unix() }, reason: auth.ReasonNotYetValid},
		{name: "iat ahead within leeway", edit: func(c jwt.MapClaims) { c["iat"] = now.Add(20 * time.Second).Unix() }},
		{name: "iat missing", edit: func(c jwt.MapClaims) { delete(c, "iat") }},

		{name: "aud missing", edit: func(c jwt.MapClaims) { delete(c, "aud") }, reason: auth.ReasonMissingClaim},
		{name: "aud other", edit: func(c jwt.MapClaims) { c["aud"] = "other-service" }, reason: auth.ReasonWrongAudience},
		{name: "aud list without ours", edit: func(c jwt.MapClaims) { c["aud"] = []string{"a", "b"} }, reason: auth.ReasonWrongAudience},
		{name: "iss missing", edit: func(c jwt.MapClaims) { delete(c, "iss") }, reason: auth.ReasonMissingClaim},
		{name: "iss other", edit: func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }, reason: auth.ReasonWrongIssuer},
		{name: "wrong audience before expiry", edit: func(c jwt.MapClaims) {
			c["aud"] = "x"
			c["exp"] = now.Add(-time.Hour).Unix()
		}, reason: auth.ReasonWrongAudience},

		{name: "room not a string", edit: func(c jwt.MapClaims) { c["room"] = 7 }, reason: auth.ReasonMalformed},
		{name: "room list with a number", edit: func(c jwt.MapClaims) { c["room"] = []any{"a", 1} }, reason: auth.ReasonMalformed},
		{name: "room with a slash", edit: func(c jwt.MapClaims) { c["room"] = "a/b" }, reason: auth.ReasonInvalidClaim},
		{name: "room with a class", edit: func(c jwt.MapClaims) { c["room"] = "match-[0-9]" }, reason: auth.ReasonInvalidClaim},
		{name: "room empty string", edit: func(c jwt.MapClaims) { c["room"] = "" }, reason: auth.ReasonInvalidClaim},
		{name: "room too long", edit: func(c jwt.MapClaims) { c["room"] = strings.Repeat("r", auth.MaxRoomIDBytes+1) }, reason: auth.ReasonInvalidClaim},
		{name: "too many rooms", edit: func(c jwt.MapClaims) { c["room"] = make([]string, auth.MaxRoomPatterns+1) }, reason: auth.ReasonInvalidClaim},
		{name: "create not a bool", edit: func(c jwt.MapClaims) { c["create"] = "yes" }, reason: auth.ReasonMalformed},
		{name: "max_players zero", edit: func(c jwt.MapClaims) { c["max_players"] = 0 }, reason: auth.ReasonInvalidClaim},
		{name: "max_players negative", edit: func(c jwt.MapClaims) { c["max_players"] = -4 }, reason: auth.ReasonInvalidClaim},
		{name: "max_players fraction", edit: func(c jwt.MapClaims) { c["max_players"] = 2.5 }, reason: auth.ReasonMalformed},
		{name: "max_tick_rate huge", edit: func(c jwt.MapClaims) { c["max_tick_rate"] = int64(1) << 31 }, reason: auth.ReasonInvalidClaim},
		{name: "max_tick_rate string", edit: func(c jwt.MapClaims) { c["max_tick_rate"] = "60" }, reason: auth.ReasonMalformed},
		{name: "meta not strings", edit: func(c jwt.MapClaims) { c["meta"] = map[string]any{"level": 3} }, reason: auth.ReasonMalformed},
		{name: "meta not an object", edit: func(c jwt.MapClaims) { c["meta"] = []string{"a"} }, reason: auth.ReasonMalformed},
		{name: "meta empty key", edit: func(c jwt.MapClaims) { c["meta"] = map[string]string{"": "x"} }, reason: auth.ReasonInvalidClaim},
		{name: "meta at the limit", edit: func(c jwt.MapClaims) {
			c["meta"] = map[string]string{"k": strings.Repeat("v", auth.DefaultMaxMetaBytes-1)}
		}},
		{name: "meta too large", edit: func(c jwt.MapClaims) {
			c["meta"] = map[string]string{"k": strings.Repeat("v", auth.DefaultMaxMetaBytes)}
		}, reason: auth.ReasonInvalidClaim},
	}
	for _, alg := range algCases(t) {
		cfg := alg.cfg
		cfg.Issuer = issuer
		v := newVerifier(t, cfg)
		t.Run(alg.name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					c := claims()
					c["iss"] = issuer
					tc.edit(c)
					got, err := v.Verify(mint(t, alg.method, alg.sign, alg.kid, c), now)
					if tc.reason != "" {
						requireReason(t, tc.reason, err)
						require.Nil(t, got)
						return
					}
					require.NoError(t, err)
					if tc.check != nil {
						tc.check(t, got)
					}
				})
			}
		})
	}
}

// TestVerifyTokenFailures covers every reason that is about the token
// rather than its claims.
func TestVerifyTokenFailures(t *testing.T) {
	t.Parallel()
	k := keys()
	file := writeJWKS(t, "", jwkEd("ed-1", edPub(k.ed)), jwkRSA("rsa-1", &k.rsa.PublicKey))
	v := newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, JWKSFile: file})
	jwksOnly := newVerifier(t, auth.Config{JWKSFile: file})
	edOnly := newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, JWKSFile: file, Algorithms: []string{auth.EdDSA}})

	good := mint(t, jwt.SigningMethodHS256, k.secret, "", claims())
	parts := strings.Split(good, ".")
	enc := func(v any) string {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	// hmacWith signs header.payload as HS256 with an arbitrary secret.
	hmacWith := func(header map[string]any, secret []byte) string {
		signing := enc(header) + "." + enc(claims())
		sig, err := jwt.SigningMethodHS256.Sign(signing, secret)
		require.NoError(t, err)
		return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	rsaDER := must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))

	tests := []struct {
		name   string
		v      *auth.Verifier
		token  string
		reason auth.Reason
	}{
		{"empty", v, "", auth.ReasonMissing},
		{"one segment", v, "abc", auth.ReasonMalformed},
		{"two segments", v, parts[0] + "." + parts[1], auth.ReasonMalformed},
		{"four segments", v, good + ".x", auth.ReasonMalformed},
		{"header not base64", v, "!!!." + parts[1] + "." + parts[2], auth.ReasonMalformed},
		{"header not JSON", v, b64([]byte("nope")) + "." + parts[1] + "." + parts[2], auth.ReasonMalformed},
		{"payload not JSON", v, parts[0] + "." + b64([]byte("[1,2")) + "." + parts[2], auth.ReasonMalformed},
		{"signature not base64", v, parts[0] + "." + parts[1] + ".***", auth.ReasonMalformed},
		{"padded base64", v, parts[0] + "." + parts[1] + "." + parts[2] + "==", auth.ReasonMalformed},
		{"too long", v, good + strings.Repeat("A", auth.DefaultMaxTokenBytes), auth.ReasonMalformed},
		{"bearer prefix", v, "Bearer " + good, auth.ReasonMalformed},

		{"alg none", v, enc(map[string]any{"alg": "none", "typ": "JWT"}) + "." + enc(claims()) + ".", auth.ReasonAlgorithmNotAllowed},
		{"alg None", v, enc(map[string]any{"alg": "None"}) + "." + enc(claims()) + ".", auth.ReasonAlgorithmNotAllowed},
		{"alg missing", v, hmacWith(map[string]any{"typ": "JWT"}, k.secret), auth.ReasonAlgorithmNotAllowed},
		{"alg unknown", v, hmacWith(map[string]any{"alg": "HS999"}, k.secret), auth.ReasonAlgorithmNotAllowed},
		{"alg HS512 not allowed", v, mint(t, jwt.SigningMethodHS512, k.secret, "", claims()), auth.ReasonAlgorithmNotAllowed},
		{"alg PS256 not allowed", v, mint(t, jwt.SigningMethodPS256, k.rsa, "rsa-1", claims()), auth.ReasonAlgorithmNotAllowed},
		{"alg narrowed by config", edOnly, good, auth.ReasonAlgorithmNotAllowed},
		{"crit header", v, hmacWith(map[string]any{"alg": "HS256", "crit": []string{"exp"}, "exp": 1}, k.secret), auth.ReasonMalformed},
		{"kid not a string", v, hmacWith(map[string]any{"alg": "HS256", "kid": 5}, k.secret), auth.ReasonMalformed},

		// Key confusion: an HS256 token "signed" with the RSA public key.
		{"HS256 with kid of an RSA key, PEM as secret", v, hmacWith(map[string]any{"alg": "HS256", "kid": "rsa-1"}, rsaPEM), auth.ReasonAlgorithmNotAllowed},
		{"HS256 with kid of an RSA key, DER as secret", v, hmacWith(map[string]any{"alg": "HS256", "kid": "rsa-1"}, rsaDER), auth.ReasonAlgorithmNotAllowed},
		{"HS256 without kid, PEM as secret", v, hmacWith(map[string]any{"alg": "HS256"}, rsaPEM), auth.ReasonBadSignature},
		{"HS256 without any secret configured", jwksOnly, hmacWith(map[string]any{"alg": "HS256"}, rsaPEM), auth.ReasonUnknownKey},
		{"EdDSA token with kid of the RSA key", v, mint(t, jwt.SigningMethodEdDSA, k.ed, "rsa-1", claims()), auth.ReasonAlgorithmNotAllowed},

		{"unknown kid, no key without kid", jwksOnly, mint(t, jwt.SigningMethodEdDSA, k.ed, "ed-9", claims()), auth.ReasonUnknownKey},
		{"no key of the algorithm", v, mint(t, jwt.SigningMethodES256, k.ec, "", claims()), auth.ReasonUnknownKey},

		{"tampered payload", v, parts[0] + "." + enc(jwt.MapClaims{"sub": "admin", "aud": audience, "exp": now.Add(time.Hour).Unix()}) + "." + parts[2], auth.ReasonBadSignature},
		{"other secret", v, mint(t, jwt.SigningMethodHS256, k.secret2, "", claims()), auth.ReasonBadSignature},
		{"other Ed25519 key, same kid", v, mint(t, jwt.SigningMethodEdDSA, k.ed2, "ed-1", claims()), auth.ReasonBadSignature},
		{"other RSA key, same kid", v, mint(t, jwt.SigningMethodRS256, k.rsa2, "rsa-1", claims()), auth.ReasonBadSignature},
		{"signature altered", v, alterSignature(good), auth.ReasonBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.v.Verify(tc.token, now)
			require.Nil(t, got)
			requireReason(t, tc.reason, err)
			require.NotContains(t, err.Error(), string(k.secret), "no key material in errors")
		})
	}
	_, err := v.Verify(good, now)
	require.NoError(t, err, "the unmodified token is fine")
}

func TestVerifyKeySelection(t *testing.T) {
	t.Parallel()
	k := keys()
	file := writeJWKS(t, "", jwkEd("ed-1", edPub(k.ed)), jwkEd("ed-2", edPub(k.ed2)),
		jwkOct("hs-file", k.secret2))
	v := newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, JWKSFile: file})

	for name, tok := range map[string]string{
		"kid selects ed-1":                 mint(t, jwt.SigningMethodEdDSA, k.ed, "ed-1", claims()),
		"kid selects ed-2":                 mint(t, jwt.SigningMethodEdDSA, k.ed2, "ed-2", claims()),
		"no kid tries every Ed25519 key":   mint(t, jwt.SigningMethodEdDSA, k.ed2, "", claims()),
		"no kid tries every HS256 secret":  mint(t, jwt.SigningMethodHS256, k.secret2, "", claims()),
		"kid selects the file secret":      mint(t, jwt.SigningMethodHS256, k.secret2, "hs-file", claims()),
		"unknown kid falls back to Secret": mint(t, jwt.SigningMethodHS256, k.secret, "backend-7", claims()),
	} {
		_, err := v.Verify(tok, now)
		require.NoError(t, err, name)
	}
	// A kid binds: the right key under the wrong kid does not verify.
	_, err := v.Verify(mint(t, jwt.SigningMethodEdDSA, k.ed2, "ed-1", claims()), now)
	requireReason(t, auth.ReasonBadSignature, err)
	_, err = v.Verify(mint(t, jwt.SigningMethodHS256, k.secret, "hs-file", claims()), now)
	requireReason(t, auth.ReasonBadSignature, err, "the file secret's kid does not fall back to Config.Secrets")
}

func TestVerifyOptions(t *testing.T) {
	t.Parallel()
	k := keys()
	c := claims()
	delete(c, "exp")
	noExp := mint(t, jwt.SigningMethodHS256, k.secret, "", c)
	_, err := newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}}).Verify(noExp, now)
	requireReason(t, auth.ReasonMissingClaim, err)
	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, AllowNoExpiry: true}).Verify(noExp, now)
	require.NoError(t, err, "AllowNoExpiry")

	c = claims()
	c["exp"] = now.Add(-5 * time.Second).Unix()
	justExpired := mint(t, jwt.SigningMethodHS256, k.secret, "", c)
	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}}).Verify(justExpired, now)
	require.NoError(t, err, "default leeway")
	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, Leeway: -1}).Verify(justExpired, now)
	requireReason(t, auth.ReasonExpired, err, "no leeway")
	require.Contains(t, err.Error(), "expired 5s ago")
	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, Leeway: time.Second}).Verify(justExpired, now)
	requireReason(t, auth.ReasonExpired, err)

	c = claims()
	c["meta"] = map[string]string{"k": "0123456789"}
	withMeta := mint(t, jwt.SigningMethodHS256, k.secret, "", c)
	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, MaxMetaBytes: 10}).Verify(withMeta, now)
	requireReason(t, auth.ReasonInvalidClaim, err)
	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, MaxMetaBytes: 11}).Verify(withMeta, now)
	require.NoError(t, err)

	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}, MaxTokenBytes: len(withMeta) - 1}).Verify(withMeta, now)
	requireReason(t, auth.ReasonMalformed, err)

	// The time is the caller's: the same token at another time.
	tok := mint(t, jwt.SigningMethodHS256, k.secret, "", claims())
	v := newVerifier(t, auth.Config{Secrets: [][]byte{k.secret}})
	_, err = v.Verify(tok, now.Add(time.Hour))
	requireReason(t, auth.ReasonExpired, err)
	_, err = v.Verify(tok, now.Add(-time.Hour))
	requireReason(t, auth.ReasonNotYetValid, err, "iat is in the future an hour earlier")
}

func TestNewVerifierRejectsBadConfig(t *testing.T) {
	t.Parallel()
	k := keys()
	secrets := [][]byte{k.secret}
	for _, tc := range []struct {
		cfg  auth.Config
		want string
	}{
		{auth.Config{Secrets: secrets}, "an Audience is required"},
		{auth.Config{Audience: audience}, "no keys"},
		{auth.Config{Audience: audience, Secrets: [][]byte{[]byte("short")}}, "(Secrets[0]) has 5 bytes"},
		{auth.Config{Audience: audience, Secrets: secrets, Algorithms: []string{"none"}}, `"none"`},
		{auth.Config{Audience: audience, Secrets: secrets, Algorithms: []string{"HS512"}}, `"HS512"`},
		{auth.Config{Audience: audience, Secrets: secrets, Algorithms: []string{}}, "Algorithms list is empty"},
		{auth.Config{Audience: audience, JWKSURL: "ftp://keys.example/jwks"}, "not an http(s) URL"},
		{auth.Config{Audience: audience, JWKSURL: "/relative"}, "not an http(s) URL"},
		{auth.Config{Audience: audience, Secrets: secrets, JWKSRefresh: -time.Second}, "JWKSRefresh"},
		{auth.Config{Audience: audience, Secrets: secrets, MaxMetaBytes: -1}, "MaxMetaBytes"},
		{auth.Config{Audience: audience, JWKSFile: "/nonexistent/jwks.json"}, "JWKS file"},
	} {
		_, err := auth.NewVerifier(tc.cfg)
		require.ErrorContains(t, err, tc.want)
		require.ErrorContains(t, err, "auth: ")
	}
}

func TestVerifierDoesNotKeepConfigSecrets(t *testing.T) {
	t.Parallel()
	secret := append([]byte{}, keys().secret...)
	v := newVerifier(t, auth.Config{Secrets: [][]byte{secret}})
	tok := mint(t, jwt.SigningMethodHS256, keys().secret, "", claims())
	secret[0] ^= 0xff // the caller reuses its buffer
	_, err := v.Verify(tok, now)
	require.NoError(t, err)
}

func TestReasons(t *testing.T) {
	t.Parallel()
	rs := auth.Reasons()
	require.Len(t, rs, 14)
	seen := map[auth.Reason]bool{}
	for _, r := range rs {
		require.False(t, seen[r], "duplicate %s", r)
		seen[r] = true
		require.Regexp(t, `^[a-z_]+$`, string(r), "usable as a metric label value")
	}
	rs[0] = "changed"
	require.Equal(t, auth.ReasonMissing, auth.Reasons()[0], "the caller's copy")

	require.Equal(t, auth.Reason(""), auth.ReasonOf(nil))
	require.Equal(t, auth.Reason(""), auth.ReasonOf(errUnrelated{}))
	err := (&auth.Claims{}).CheckCreate("x", 0, 0)
	require.Equal(t, auth.ReasonCreateNotAllowed, auth.ReasonOf(err))
	require.Equal(t, "auth: create_not_allowed: token does not allow creating rooms", err.Error())
}

// alterSignature changes one character in the middle of the signature, so
// that it still decodes.
func alterSignature(tok string) string {
	i := len(tok) - 10
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

type errUnrelated struct{}

func (errUnrelated) Error() string { return "unrelated" }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
