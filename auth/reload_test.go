package auth_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

// TestReloadRotatesKeysWhileVerifying rotates the JWKS file (old key, both,
// new key, a broken file) while goroutines verify tokens of both keys
// without pause (run under -race by make test). Every answer must be
// either success or unknown_key, and each phase must give the answers its
// key set implies once Reload has returned.
func TestReloadRotatesKeysWhileVerifying(t *testing.T) {
	t.Parallel()
	k := keys()
	oldKey := jwkEd("2026-02", edPub(k.ed))
	newKey := jwkEd("2026-03", edPub(k.ed2))
	path := writeJWKS(t, "", oldKey)
	v := newVerifier(t, auth.Config{JWKSFile: path})
	oldTok := mint(t, jwt.SigningMethodEdDSA, k.ed, "2026-02", claims())
	newTok := mint(t, jwt.SigningMethodEdDSA, k.ed2, "2026-03", claims())

	stop := make(chan struct{})
	var verified atomic.Int64
	var wg sync.WaitGroup
	unexpected := make(chan error, 1)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, tok := range []string{oldTok, newTok} {
					if _, err := v.Verify(tok, now); err != nil && auth.ReasonOf(err) != auth.ReasonUnknownKey {
						select {
						case unexpected <- err:
						default:
						}
					}
					verified.Add(1)
				}
			}
		})
	}
	// waitVerifications lets the verifiers run a while against each set.
	waitVerifications := func() {
		target := verified.Load() + 200
		require.Eventually(t, func() bool { return verified.Load() >= target }, 10*time.Second, time.Millisecond)
	}
	expect := func(oldOK, newOK bool) {
		t.Helper()
		_, err := v.Verify(oldTok, now)
		require.Equal(t, oldOK, err == nil, "old key: %v", err)
		_, err = v.Verify(newTok, now)
		require.Equal(t, newOK, err == nil, "new key: %v", err)
	}

	waitVerifications()
	expect(true, false)

	writeJWKS(t, path, oldKey, newKey)
	require.NoError(t, v.Reload())
	expect(true, true)
	waitVerifications()

	writeJWKS(t, path, newKey)
	require.NoError(t, v.Reload())
	expect(false, true)
	waitVerifications()

	writeFile(t, path, []byte(`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "short"}]}`))
	require.ErrorContains(t, v.Reload(), "auth: JWKS file")
	expect(false, true) // the broken file changed nothing
	waitVerifications()

	close(stop)
	wg.Wait()
	select {
	case err := <-unexpected:
		t.Fatalf("a verification during rotation failed with %v", err)
	default:
	}
	require.Equal(t, 1, v.Status().FileKeys)
}

func TestReloadWithoutFileIsANoOp(t *testing.T) {
	t.Parallel()
	v := newVerifier(t, auth.Config{Secrets: [][]byte{keys().secret}})
	require.NoError(t, v.Reload())
	_, err := v.Verify(mint(t, jwt.SigningMethodHS256, keys().secret, "", claims()), now)
	require.NoError(t, err)
	select {
	case <-v.Ready():
	default:
		t.Fatal("a Verifier without URL is ready at once")
	}
	v.Close()
	v.Close()
}
