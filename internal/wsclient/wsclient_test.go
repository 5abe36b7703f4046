package wsclient

import (
	"bytes"
	"io"
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

		r := bytes.NewReader(frame)
		h, err := ws.ReadHeader(r)
		require.NoError(t, err, "n=%d", n)
		require.True(t, h.Fin)
		require.True(t, h.Masked, "a client frame is masked")
		require.Equal(t, ws.OpBinary, h.OpCode)
		require.EqualValues(t, n, h.Length)
		got := make([]byte, h.Length)
		_, err = io.ReadFull(r, got)
		require.NoError(t, err)
		require.Zero(t, r.Len(), "one frame, nothing after it")
		ws.Cipher(got, h.Mask, 0)
		require.True(t, bytes.Equal(payload, got), "n=%d", n)
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
