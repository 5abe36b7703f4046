// Package auth verifies the tokens players present to the relay: JSON Web
// Tokens (RFC 7519) minted by a game backend, which say who the player is
// and what the player may do. The backend authenticates its players its own
// way, then hands each one a short-lived token; the relay only checks
// signatures and claims, with keys it already holds, so a Join costs no
// round trip to the backend.
//
// A [Verifier] is built once from a [Config]. [Verifier.Verify] is
// goroutine-safe, does no I/O and takes tens of microseconds (BenchmarkVerify),
// so it can run on the relay's event loops; a flood of bogus tokens costs a
// signature check each, so limit joins per address (package iplimit) before
// verifying. Keys rotate without a restart:
// [Verifier.Reload] re-reads the key file (on SIGHUP), a background
// goroutine refreshes keys from a URL, and either replaces the whole key set
// atomically while tokens are being verified.
//
// # Signing algorithms and keys
//
// Four algorithms are accepted (Config.Algorithms may narrow them); "none"
// never is:
//
//	HS256  HMAC-SHA256 with a shared secret (Config.Secrets, or "oct"
//	       keys in the JWKS file), at least 32 random bytes
//	EdDSA  Ed25519 (JWK kty "OKP", crv "Ed25519")
//	ES256  ECDSA P-256 with SHA-256 (JWK kty "EC", crv "P-256")
//	RS256  RSA PKCS#1 v1.5 with SHA-256, 2048-bit keys or larger (kty "RSA")
//
// Public keys come from a JSON Web Key Set (RFC 7517): a file
// (Config.JWKSFile) and/or an identity provider's jwks_uri (Config.JWKSURL).
// Keys of other kinds in a set (encryption keys, other curves, PS256, ...)
// are skipped; a broken key of a used kind, private key material ("d"), or
// a set without any usable key is refused as a whole and the previous keys
// stay in use.
//
// The token header's "kid" selects the key. A kid that names a key of
// another algorithm is refused (algorithm_not_allowed): a key is only ever
// used with the algorithm it was made for, which rules out the classic
// confusion of verifying an HS256 token with an RSA public key as the HMAC
// secret. A kid that names no key falls back to keys without kid (such as
// Config.Secrets) and, with a JWKS URL, asks for an early refresh. A token
// without kid is tried against every key of its algorithm. A header with
// "crit" extensions is refused.
//
// To rotate a secret, add the new one next to the old (every listed secret
// verifies), move the backends to it, then remove the old one. To rotate a
// public key, publish the new key with a new kid, wait for the relays to
// load it (Reload, or the URL refresh), then sign with it.
//
// # Claims
//
// The payload is a JSON object; the relay reads these claims and ignores
// any others. This is the contract game backends mint tokens against:
//
//	claim          type                       required  meaning
//	sub            string, 1-256 bytes        yes       the player's stable user id; the room shows it as user_id
//	aud            string or array of strings yes       must contain Config.Audience (e.g. "tickrelay")
//	exp            NumericDate (seconds)      yes       expiry; keep tokens short-lived (minutes). Optional only with Config.AllowNoExpiry
//	nbf            NumericDate                no        not valid before
//	iat            NumericDate                no        issued at; must not be in the future
//	iss            string                     see note  must equal Config.Issuer when that is set
//	room           string or array of strings no        room ids or patterns the token admits; absent: any room; []: none
//	create         boolean                    no        the player may create rooms (default false)
//	max_tick_rate  positive integer           no        highest tick rate the player may set when creating a room
//	max_players    positive integer           no        highest max_players the player may set when creating a room
//	meta           object of string: string   no        player metadata from the backend, which the client cannot forge
//	jti            string                     no        accepted and ignored (tokens are not tracked for replay)
//
// exp, nbf and iat are checked with Config.Leeway (default 30s) of
// tolerance. A room pattern is a room id (1-64 bytes of [A-Za-z0-9_.:-])
// in which "*" matches any run of characters and "?" one character:
// "match-*" admits match-1 and match-eu-42. The room list holds at most 32
// entries. A server-made room code (a Join without room id) can be created
// only with a token that has no room claim. max_tick_rate and max_players
// bound what the creator may ask for; the relay's own limits still apply.
// meta is bounded by Config.MaxMetaBytes (keys plus values, default 1024)
// and its keys must not be empty. Wrongly typed claims (a string for
// create, 1.5 for max_players, a number in meta) make the token malformed.
//
// A token payload for a player allowed into one tournament's matches and
// to create them, at most 60 ticks per second and 10 players:
//
//	{"sub": "user-8842", "aud": "tickrelay", "iss": "https://game.example",
//	 "exp": 1767225900, "iat": 1767225600,
//	 "room": "cup-2026-*", "create": true, "max_tick_rate": 60, "max_players": 10,
//	 "meta": {"name": "Ada", "team": "blue"}}
//
// The examples in this package mint tokens in Go; testdata/mint-hs256.sh
// does it with openssl from a shell.
//
// # Refusals
//
// Every refusal is an [*Error] (errors.Is(err, [ErrUnauthorized]) holds)
// with a Reason from this closed list ([Reasons]), fit for a metric label,
// and a Detail for logs:
//
//	missing                no token was presented
//	malformed              not a well-formed JWT: segments, base64url, JSON, claim types, size above Config.MaxTokenBytes, a "crit" header
//	algorithm_not_allowed  alg is none, unknown or not in Config.Algorithms, or the kid names a key of another algorithm
//	unknown_key            no key for the token's algorithm and kid
//	bad_signature          the signature does not verify with any candidate key
//	missing_claim          sub, exp, aud, or iss (when Config.Issuer is set) is absent
//	invalid_claim          a claim is present but out of bounds: sub too long, a bad room pattern, max_* not positive, meta too large
//	expired                exp has passed (beyond the leeway)
//	not_yet_valid          nbf or iat is in the future (beyond the leeway)
//	wrong_audience         aud does not contain Config.Audience
//	wrong_issuer           iss differs from Config.Issuer
//	room_not_allowed       the token does not admit the room (Claims.CheckJoin, Claims.CheckCreate)
//	create_not_allowed     the token does not allow creating rooms (Claims.CheckCreate)
//	option_not_allowed     a room option exceeds the token's max_tick_rate or max_players (Claims.CheckCreate)
//
// Verify decodes the token (malformed covers the payload's JSON types too),
// then checks its algorithm, key and signature, and only then the values of
// its claims: expired, wrong_audience and the other claim reasons are only
// ever reported for a genuine token. When several claims are wrong, one
// reason is reported, in this order: missing_claim, wrong_audience,
// wrong_issuer, expired, not_yet_valid, then sub, room, max_* and meta.
//
// # Key sources at run time
//
// The JWKS file is read by NewVerifier (an error there fails the
// constructor) and by each Reload (an error there is returned and logged,
// and the old keys stay). The JWKS URL is fetched on the Verifier's own
// goroutine: first at once, then every Config.JWKSRefresh with
// If-None-Match/If-Modified-Since revalidation, after failures with backoff
// from 1s, early (at most once per Config.JWKSMinRefresh) when a token names
// an unknown kid, and at once on Reload. Each fetch is bounded by
// Config.JWKSFetchTimeout and 1 MiB. A failed fetch keeps the last good
// keys. Ready reports the first successful fetch and Status the state of
// every source.
package auth
