package clientip_test

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/clientip"
)

// TestParseProxyHeaderOverSplitTCP sends every valid header, followed by a
// WebSocket request, over a real loopback connection in random pieces with
// pauses between them, and parses on the receiving side the way an event
// loop does: append what arrived, try again on ErrNeedMore.
func TestParseProxyHeaderOverSplitTCP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	const request = "GET /ws HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n\r\n"
	rng := rand.New(rand.NewPCG(11, 1))
	partialReads := 0
	for _, tc := range validProxyHeaders() {
		stream := append(append([]byte{}, tc.in...), request...)
		sendDone := make(chan error, 1)
		go func() {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				sendDone <- err
				return
			}
			defer c.Close()
			rest := stream
			for len(rest) > 0 {
				k := 1 + rng.IntN(min(len(rest), 40))
				if _, err := c.Write(rest[:k]); err != nil {
					sendDone <- err
					return
				}
				rest = rest[k:]
				time.Sleep(time.Millisecond) // separate TCP reads: the condition under test
			}
			sendDone <- nil
		}()

		c, err := ln.Accept()
		require.NoError(t, err)
		require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
		var buf []byte
		chunk := make([]byte, 512)
		var h clientip.Header
		var n int
		for {
			r, err := c.Read(chunk)
			require.NoError(t, err, tc.name)
			buf = append(buf, chunk[:r]...)
			h, n, err = clientip.ParseProxyHeader(buf)
			if errors.Is(err, clientip.ErrNeedMore) {
				partialReads++
				continue
			}
			require.NoError(t, err, tc.name)
			break
		}
		require.Equal(t, tc.want, h, tc.name)
		// Whatever follows the header is the application's, untouched.
		for !bytes.HasSuffix(buf, []byte("\r\n\r\n")) || len(buf)-n < len(request) {
			r, err := c.Read(chunk)
			require.NoError(t, err, tc.name)
			buf = append(buf, chunk[:r]...)
		}
		require.Equal(t, request, string(buf[n:]), tc.name)
		require.NoError(t, <-sendDone)
		require.NoError(t, c.Close())
	}
	require.Positive(t, partialReads, "some headers arrived in pieces")
}
