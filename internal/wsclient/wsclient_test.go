package wsclient

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

// Frames read back with gobwas/ws, at each header size's edges.
func TestFrameReadsBackAsOneMaskedFinalFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		buf := append(make([]byte, MaxHeader), payload...)
		frame := Frame(ws.OpBinary, buf)

		f, err := ws.ReadFrame(bytes.NewReader(frame))
		require.NoError(t, err, "n=%d", n)
		require.True(t, f.Header.Fin)
		require.True(t, f.Header.Masked, "a client frame is masked")
		require.Equal(t, ws.OpBinary, f.Header.OpCode)
		require.EqualValues(t, n, f.Header.Length)
		f = ws.UnmaskFrameInPlace(f)
		require.True(t, bytes.Equal(payload, f.Payload), "n=%d", n)
	}
}

func TestWriteDeadlineMovesOnlyWhenHalfIsGone(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = ln.Close() }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()

	var d WriteDeadline
	require.NoError(t, d.Refresh(conn, time.Hour))
	first := d.at
	require.NoError(t, d.Refresh(conn, time.Hour))
	require.Equal(t, first, d.at, "more than half of the timeout left: not moved")
	require.NoError(t, d.Refresh(conn, time.Minute))
	require.True(t, d.at.Before(first), "a shorter timeout moves it in")
	d.at = time.Now().Add(10 * time.Second)
	require.NoError(t, d.Refresh(conn, time.Minute))
	require.True(t, time.Until(d.at) > 30*time.Second, "less than half left: moved out")
}
