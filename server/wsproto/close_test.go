package wsproto

import (
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

func TestValidCloseCode(t *testing.T) {
	t.Parallel()
	for _, c := range []ws.StatusCode{1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4000, 4999} {
		require.True(t, validCloseCode(c), "%d", c)
	}
	for _, c := range []ws.StatusCode{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000} {
		require.False(t, validCloseCode(c), "%d", c)
	}
}
