package auth_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

// TestOpenSSLMintedTokens runs testdata/mint-hs256.sh, and the one-liner in
// its comment, and checks that the relay accepts what they mint, byte for
// byte what golang-jwt mints from the same payload.
func TestOpenSSLMintedTokens(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed (apt-get install openssl): the shell minting script cannot be checked")
	}
	const secret = "test-only secret, 32+ characters: see the script" // in production: openssl rand -base64 32
	payload, err := json.Marshal(map[string]any{
		"sub": "user-42", "aud": audience, "exp": now.Add(5 * time.Minute).Unix(),
		"room": "match-*", "create": true, "meta": map[string]string{"name": "Ada"},
	})
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sh", "testdata/mint-hs256.sh", secret, string(payload)).Output()
	require.NoError(t, err, "%s", exitStderr(err))
	scriptToken := strings.TrimSpace(string(out))

	script, err := os.ReadFile("testdata/mint-hs256.sh")
	require.NoError(t, err)
	var oneLiner string
	for _, line := range strings.Split(string(script), "\n") {
		if s, ok := strings.CutPrefix(line, "#   b(){"); ok {
			oneLiner = "b(){" + s
		}
	}
	require.NotEmpty(t, oneLiner, "the one-liner is in the script's comment")
	cmd := exec.CommandContext(ctx, "sh", "-c", oneLiner)
	cmd.Env = append(os.Environ(), "SECRET="+secret, "PAYLOAD="+string(payload))
	out, err = cmd.Output()
	require.NoError(t, err, "%s", exitStderr(err))
	oneLinerToken := strings.TrimSpace(string(out))

	var c jwt.MapClaims
	require.NoError(t, json.Unmarshal(payload, &c))
	goToken := mint(t, jwt.SigningMethodHS256, []byte(secret), "", c)
	require.Equal(t, goToken, scriptToken, "the script mints what golang-jwt mints")
	require.Equal(t, goToken, oneLinerToken, "so does the one-liner")

	v := newVerifier(t, auth.Config{Secrets: [][]byte{[]byte(secret)}})
	claims, err := v.Verify(scriptToken, now)
	require.NoError(t, err)
	require.Equal(t, "user-42", claims.Subject)
	require.True(t, claims.AllowsRoom("match-7"))
	require.Equal(t, "Ada", claims.Meta["name"])

	_, err = newVerifier(t, auth.Config{Secrets: [][]byte{[]byte(secret + "x")}}).Verify(scriptToken, now)
	requireReason(t, auth.ReasonBadSignature, err)
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
