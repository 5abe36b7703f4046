package auth

import (
	"github.com/golang-jwt/jwt/v5"
)

// keySet is an immutable index of every key the Verifier holds (secrets,
// file, URL). A new one replaces the old with an atomic pointer swap, so
// Verify never waits for a reload and never sees half a set.
type keySet struct {
	byKid map[string][]verifyKey
	byAlg map[string][]jwt.VerificationKey // every key, for tokens without kid
	noKid map[string][]jwt.VerificationKey // keys without kid, for tokens whose kid is unknown
	size  int
}

func newKeySet(parts ...[]verifyKey) *keySet {
	ks := &keySet{
		byKid: map[string][]verifyKey{},
		byAlg: map[string][]jwt.VerificationKey{},
		noKid: map[string][]jwt.VerificationKey{},
	}
	for _, part := range parts {
		for _, k := range part {
			ks.size++
			ks.byAlg[k.alg] = append(ks.byAlg[k.alg], k.key)
			if k.kid == "" {
				ks.noKid[k.alg] = append(ks.noKid[k.alg], k.key)
			} else {
				ks.byKid[k.kid] = append(ks.byKid[k.kid], k)
			}
		}
	}
	return ks
}

// lookup returns what the JWT library should verify a token of algorithm
// alg and key id kid (may be empty) with: one key, or a VerificationKeySet
// tried in turn. Rules: a kid that names keys selects among them, and
// naming a key of another algorithm is refused (no key is ever used with an
// algorithm it was not made for, which rules out alg/key confusion); an
// unknown kid falls back to the keys without kid (Config.Secrets, JWK
// entries without kid); no kid tries every key of the algorithm.
func (ks *keySet) lookup(alg, kid string) (any, *Error) {
	if kid != "" {
		if named, ok := ks.byKid[kid]; ok {
			var match []jwt.VerificationKey
			for _, k := range named {
				if k.alg == alg {
					match = append(match, k.key)
				}
			}
			if len(match) == 0 {
				return nil, refuse(ReasonAlgorithmNotAllowed, "kid %s is a %s key, the token says %s", quote(kid), named[0].alg, alg)
			}
			return oneOrSet(match), nil
		}
		if keys := ks.noKid[alg]; len(keys) > 0 {
			return oneOrSet(keys), nil
		}
		return nil, refuse(ReasonUnknownKey, "no %s key with kid %s", alg, quote(kid))
	}
	if keys := ks.byAlg[alg]; len(keys) > 0 {
		return oneOrSet(keys), nil
	}
	return nil, refuse(ReasonUnknownKey, "no %s key", alg)
}

func oneOrSet(keys []jwt.VerificationKey) any {
	if len(keys) == 1 {
		return keys[0]
	}
	return jwt.VerificationKeySet{Keys: keys}
}
