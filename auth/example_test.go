package auth_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tickrelay/tickrelay/auth"
)

// A game backend shares an HS256 secret with its relays and mints a token
// for each player it has logged in; the relay verifies it on Join.
func Example_mintHS256() {
	// Backend and relay both hold the secret (at least 32 random bytes,
	// from the deployment's secret store).
	secret := []byte("example secret: 32 random bytes in real life")
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) // time.Now() in real code

	// Backend: mint a token for the player.
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":         "user-8842", // the player's stable id
		"aud":         "tickrelay", // the relay's Config.Audience
		"exp":         now.Add(5 * time.Minute).Unix(),
		"iat":         now.Unix(),
		"room":        "cup-2026-*", // only the tournament's rooms
		"create":      true,
		"max_players": 10,
		"meta":        map[string]string{"name": "Ada", "team": "blue"},
	}).SignedString(secret)
	if err != nil {
		panic(err)
	}

	// Relay: verify it.
	v, err := auth.NewVerifier(auth.Config{Audience: "tickrelay", Secrets: [][]byte{secret}})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	claims, err := v.Verify(token, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.Meta["name"], claims.AllowsRoom("cup-2026-final"), claims.AllowsRoom("lobby"))
	fmt.Println(claims.CheckCreate("cup-2026-final", 30, 12))

	// An hour later the token has expired.
	_, err = v.Verify(token, now.Add(time.Hour))
	fmt.Println(auth.ReasonOf(err))
	// Output:
	// user-8842 Ada true false
	// auth: option_not_allowed: max players 12 above the token's max_players 10
	// expired
}

// A game backend signs with an Ed25519 private key and publishes the public
// key in a JWK Set that the relays load (JWKSFile here, or JWKSURL).
func Example_mintEdDSA() {
	seed := sha256.Sum256([]byte("example only: load the key from your secret store"))
	private := ed25519.NewKeyFromSeed(seed[:])
	const kid = "game-2026-01" // names the key, so it can be rotated
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	// Backend: publish the public key as a JWK Set...
	jwks, err := json.Marshal(map[string]any{"keys": []map[string]any{{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
		"x": base64.RawURLEncoding.EncodeToString(private.Public().(ed25519.PublicKey)),
	}}})
	if err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "jwks")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwks, 0o644); err != nil {
		panic(err)
	}

	// ...and mint tokens with the private key, naming it in the header.
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{
		"sub": "user-8842",
		"aud": "tickrelay",
		"iss": "https://game.example",
		"exp": now.Add(5 * time.Minute).Unix(),
	})
	t.Header["kid"] = kid
	token, err := t.SignedString(private)
	if err != nil {
		panic(err)
	}

	// Relay: load the key set and verify.
	v, err := auth.NewVerifier(auth.Config{Audience: "tickrelay", Issuer: "https://game.example", JWKSFile: jwksFile})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	claims, err := v.Verify(token, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.Subject, claims.AllowsAnyRoom(), claims.Create)
	// Output:
	// user-8842 true false
}
