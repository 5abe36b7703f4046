package auth_test

import (
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tickrelay/tickrelay/auth"
)

// BenchmarkVerify measures Verify for a typical token (sub, aud, exp, iat,
// room, create, meta) per algorithm, with the key selected by kid (none for
// HS256 with Config.Secrets), and two refusals that stop early.
func BenchmarkVerify(b *testing.B) {
	c := claims()
	c["room"] = "match-*"
	c["create"] = true
	c["meta"] = map[string]string{"name": "Ada"}
	for _, alg := range algCases(b) {
		v := newVerifier(b, alg.cfg)
		tok := mint(b, alg.method, alg.sign, alg.kid, c)
		b.Run(alg.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	k := keys()
	v := newVerifier(b, auth.Config{Secrets: [][]byte{k.secret}})
	refusals := map[string]string{
		"refused_bad_signature_HS256": mint(b, jwt.SigningMethodHS256, k.secret2, "", c),
		"refused_malformed":           "not.a.jwt",
	}
	for name, tok := range refusals {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok, now); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}
