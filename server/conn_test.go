package server

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// handshakeFailures is a copy of the handshake failure counts by reason.
func handshakeFailures(srv *Server) map[string]uint64 {
	srv.stats.mu.Lock()
	defer srv.stats.mu.Unlock()
	out := make(map[string]uint64, len(srv.stats.handshakeFails))
	for k, v := range srv.stats.handshakeFails {
		out[k] = v
	}
	return out
}

// A client that resets its connection in the middle of the upgrade (its
// request sent, the 101 not read) is counted as gone, whichever of the
// relay's read or its write of the 101 meets the reset: never as
// http_101, which is not a failure status at all.
func TestResetDuringUpgradeIsCountedAsClientClosed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	const clients = 20
	for i := range clients {
		nc, err := net.DialTimeout("tcp", srv.Addr(), testTimeout)
		require.NoError(t, err)
		_, err = nc.Write([]byte(upgradeRequest))
		require.NoError(t, err)
		// Accepted first: a connection the kernel drops from its accept
		// queue never reaches the relay.
		require.Eventually(t, func() bool { return srv.stats.connsOpened.Load() > uint64(i) }, testTimeout, time.Millisecond)
		require.NoError(t, nc.(*net.TCPConn).SetLinger(0)) // close with RST
		require.NoError(t, nc.Close())
	}
	require.Eventually(t, func() bool { return srv.stats.connsClosed.Load() == clients }, testTimeout, 10*time.Millisecond)
	// A reset met by the write of the 101 closes the connection inside
	// that write (OnClose counts it closed) and is counted as a failure
	// just after, on the loop: wait for the count, not the close.
	counted := func() uint64 { return handshakeFailures(srv)[failClientClosed] + srv.stats.upgrades.Load() }
	require.Eventually(t, func() bool { return counted() >= clients }, testTimeout, 10*time.Millisecond)
	total, fails := counted(), handshakeFailures(srv)
	require.Zero(t, fails["http_101"], "a reset is not an HTTP status: %v", fails)
	require.EqualValues(t, clients, total, "every reset counted once: %v, %d upgrades", fails, srv.stats.upgrades.Load())
}

func TestConnStateString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "handshake", stateHandshake.String())
	require.Equal(t, "open", stateOpen.String())
	require.Equal(t, "closed", stateClosed.String())
	require.Equal(t, "connState(7)", connState(7).String())
}
