package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/proto/closes"
)

// TestGeneratedFileInSync fails when clients/ts/src/closes_gen.ts no longer
// matches proto/closes: run `go run ./clients/ts/closesgen` from the root.
func TestGeneratedFileInSync(t *testing.T) {
	t.Parallel()
	got, err := os.ReadFile(filepath.Join("..", "src", "closes_gen.ts"))
	require.NoError(t, err)
	require.Equal(t, string(render()), string(got), "clients/ts/src/closes_gen.ts is stale: go run ./clients/ts/closesgen")
}

func TestReconnectRangesAreMayReconnect(t *testing.T) {
	t.Parallel()
	ranges := reconnectRanges()
	require.NotEmpty(t, ranges)
	in := func(code int) bool {
		for _, r := range ranges {
			if code >= r[0] && code <= r[1] {
				return true
			}
		}
		return false
	}
	for code := 0; code <= maxCode; code++ {
		require.Equal(t, closes.MayReconnect(code), in(code), "code %d", code)
	}
	for i := 1; i < len(ranges); i++ {
		require.Greater(t, ranges[i][0], ranges[i-1][1]+1, "ranges are merged and ordered")
	}
}

func TestEveryCauseIsRendered(t *testing.T) {
	t.Parallel()
	out := string(render())
	for _, c := range closes.All() {
		require.Contains(t, out, `name: "`+c.String()+`"`)
	}
}
