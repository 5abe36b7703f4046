package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHandlerServesFilesAndConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>demo</p>"), 0o644))
	srv := httptest.NewServer(handler(dir, "ws://127.0.0.1:7600/ws"))
	defer srv.Close()

	res, err := http.Get(srv.URL + "/config.json")
	require.NoError(t, err)
	var cfg struct {
		RelayURL string `json:"relayUrl"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&cfg))
	require.NoError(t, res.Body.Close())
	require.Equal(t, "ws://127.0.0.1:7600/ws", cfg.RelayURL)

	res, err = http.Get(srv.URL + "/")
	require.NoError(t, err)
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(body), "demo")

	res, err = http.Get(srv.URL + "/../serve/main.go")
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.NotEqual(t, http.StatusOK, res.StatusCode)
}

func TestRunNeedsABuiltDemo(t *testing.T) {
	t.Parallel()
	err := run("127.0.0.1:0", t.TempDir(), "ws://x/ws")
	require.ErrorContains(t, err, "build the demo first")
}
