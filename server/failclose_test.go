package server

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// After a protocol error or a limit the relay fails the connection (RFC
// 6455 section 7.1.7): the client reads the Error and the Close, then the
// relay's FIN, and the connection is gone within the fail linger, without
// waiting for the client's Close (which would hold a failed connection for
// the whole close timeout, 30 s here).
func TestFailedConnectionIsClosedPromptly(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.CloseTimeout = 30 * time.Second
		c.MaxMessageBytes = 1024
		c.MaxBadMessages = 1
	})
	cases := []struct {
		name  string
		frame []byte
		code  int
	}{
		{"1002 unmasked", clientFrame(true, opBinary, []byte("x"), true), 1002},
		{"1003 text", clientFrame(true, opText, []byte("x"), false), 1003},
		{"1008 garbage", clientFrame(true, opBinary, []byte{0xff}, false), 1008},
		{"1009 too big", clientFrame(true, opBinary, make([]byte, 2048), false), 1009},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, srv)
			r.upgrade()
			start := time.Now()
			r.write(tc.frame)
			code, _ := r.expectClose()
			require.Equal(t, tc.code, code)
			r.expectEOF() // the relay's FIN: its side is shut, not reset
			t.Logf("connection ended %v after the violation", time.Since(start).Round(time.Millisecond))
		})
	}
}

// A client that neither reads nor answers after a protocol error is dropped
// after the linger.
func TestFailedConnectionThatNeverAnswersIsDropped(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.CloseTimeout = 30 * time.Second })
	keep := dialRaw(t, srv)
	keep.upgrade()
	r := dialRaw(t, srv)
	r.upgrade()
	require.Eventually(t, func() bool { return srv.OpenConnections() == 2 }, testTimeout, 5*time.Millisecond)
	r.write(clientFrame(true, 0x3, nil, false)) // reserved opcode; then silence
	require.Eventually(t, func() bool { return srv.OpenConnections() == 1 }, testTimeout, 5*time.Millisecond,
		"the failed connection is dropped without waiting out the close timeout")
}

// A clean close (here a kick) keeps waiting for the client's Close: the
// connection stays open until the client answers.
func TestCleanCloseWaitsForTheClient(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.CloseTimeout = 30 * time.Second })
	r := dialRaw(t, srv)
	r.upgrade()
	r.write(clientFrame(true, opBinary, joinMessage(t, "kick", 1), false))
	joined := r.readServerMessage().GetJoined()
	require.NotNil(t, joined)
	require.NoError(t, srv.Rooms().Kick(t.Context(), "kick", joined.GetPlayerId(), "bye"))
	left := r.readServerMessage()
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_KICKED, left.GetLeft().GetReason())
	code, _ := r.expectClose()
	require.Equal(t, 4500, code)

	// Not closed by the relay while the client has not answered. (The
	// pause is the condition under test: a prompt close would show as EOF.)
	require.NoError(t, r.nc.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err := r.br.ReadByte()
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "the relay must wait for the client's Close, got %v", err)
	require.Equal(t, 1, srv.OpenConnections())

	require.NoError(t, r.nc.SetDeadline(time.Now().Add(testTimeout)))
	r.write(clientFrame(true, opClose, []byte{0x03, 0xe8}, false))
	r.expectEOF()
}

// An HTTP error before the upgrade (a bad request, a timeout) is not lost
// to a reset when the rest of the client's bytes are still arriving, in
// pieces, after the answer: the relay reads and discards them, shuts its
// write side once the answer is out (the client reads the answer, then
// EOF), and drops the connection a fail linger later even if the client
// never closes.
func TestAnswerBeforeUpgradeSurvivesTheRestOfTheRequest(t *testing.T) {
	forEachPath(t, func(t *testing.T, startServer startFunc) {
		answerBeforeUpgradeSurvives(t, startServer(t, func(c *Config) {
			c.HandshakeTimeout = 300 * time.Millisecond
			c.FailLinger = 2 * time.Second // longer than the client's pieces take, on a loaded machine too
		}))
	})
}

func answerBeforeUpgradeSurvives(t *testing.T, srv *Server) {
	cases := []struct {
		name   string
		first  string
		chunk  int // bytes of each later piece
		pause  time.Duration
		status int
	}{
		{"no key", "GET /ws HTTP/1.1\r\nHost: relay.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 1448, 15 * time.Millisecond, http.StatusBadRequest},
		{"garbage", "\x01\x02\x03 not a request at all\r\n\r\n", 1448, 15 * time.Millisecond, http.StatusBadRequest},
		// A header dribbled past the handshake timeout, and on after it.
		{"timeout", "GET /ws HTTP/1.1\r\nHost: relay.test\r\nX-Slow: ", 16, 60 * time.Millisecond, http.StatusRequestTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, srv)
			r.write([]byte(tc.first))
			// The rest keeps coming in pieces: a body, the rest of a
			// garbage stream, or a slow header, sent while (and after) the
			// relay answers. None of it may draw a reset: a TCP stack that
			// gets one discards what it had received and not yet handed to
			// the application (Windows does; so do proxies that abort the
			// client side on an upstream reset), the answer with it.
			chunk := bytes.Repeat([]byte("x"), tc.chunk)
			for i := range 8 {
				pause := time.NewTimer(tc.pause) // separate TCP reads: the condition under test
				<-pause.C
				_, err := r.nc.Write(chunk)
				require.NoError(t, err, "piece %d: the relay reset the connection while the client was sending", i)
			}
			resp, err := http.ReadResponse(r.br, nil)
			require.NoError(t, err, "the answer reaches the client; no reset destroyed it")
			require.Equal(t, tc.status, resp.StatusCode)
			require.True(t, resp.Close, "Connection: close")
			_, err = io.Copy(io.Discard, resp.Body)
			require.NoError(t, err)
			r.expectEOF() // the relay's FIN, not a reset
			require.Eventually(t, func() bool { return srv.OpenConnections() == 0 }, testTimeout, 5*time.Millisecond,
				"an answered connection is dropped after the linger though its client never closes")
		})
	}
}
