package server

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// readTimeoutServer runs a relay with a message read timeout of 1s and rate
// limits that let a ping stream through.
func readTimeoutServer(t *testing.T, mutate func(*Config)) *Server {
	return startServer(t, func(c *Config) {
		c.MessageReadTimeout = time.Second
		c.RateLimits.MessagesPerSecond = 1e6
		c.RateLimits.MessageBurst = 1e6
		if mutate != nil {
			mutate(c)
		}
	})
}

// The message read timeout runs from the first byte of each message: a
// client whose every write ends inside the next message (a steady stream,
// its buffer never empty at the end of a read) is not closed, however long
// the stream goes on, as long as each message completes in time.
func TestMessageReadTimeoutRunsPerMessage(t *testing.T) {
	t.Parallel()
	srv := readTimeoutServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	ping := clientFrame(true, opPing, []byte("tick"), false)
	half := len(ping) / 2
	r.write(ping[:half])
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		// The rest of this ping and the start of the next, in one write.
		r.write(append(append([]byte(nil), ping[half:]...), ping[:half]...))
		op, payload := r.readFrame()
		require.Equal(t, byte(opPong), op, "answered, not closed: %q", payload)
	}
	r.write(ping[half:])
	op, _ := r.readFrame()
	require.Equal(t, byte(opPong), op)
	require.Zero(t, srv.stats.slowMessages.Load())
}

// The message read timeout pauses while the relay itself holds input back
// (the connection's output over its soft limit): the client cannot complete
// a message the relay does not read.
func TestMessageReadTimeoutPausesWhileInputIsHeld(t *testing.T) {
	t.Parallel()
	srv := readTimeoutServer(t, func(c *Config) {
		c.OutboundSoftBytes = 16 << 10
		c.SocketSendBuffer = 4 << 10
		c.MaxMessageBytes = 1 << 20 // the relay may hold the ping burst's input
		// Held input is looked at again by the sweeper, which this makes
		// run every 50 ms: the pongs drain in a few seconds, not 30.
		c.CloseTimeout = 200 * time.Millisecond
	})
	r := dialRaw(t, srv)
	require.NoError(t, r.nc.(*net.TCPConn).SetReadBuffer(4<<10))
	r.upgrade()
	body := marshal(t, &pb.ClientMessage{RequestId: 7, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	r.write(clientFrame(false, opBinary, body[:1], false)) // a message begins
	// Pings between its fragments, their pongs unread: far more output than
	// the kernel's buffers take, so the relay's output for the connection
	// stays over its soft limit and input is held.
	const pings = 1500
	var burst []byte
	for range pings {
		burst = append(burst, clientFrame(true, opPing, make([]byte, 125), false)...)
	}
	r.write(burst)
	require.Eventually(t, func() bool { return inputHeld(srv) }, testTimeout, 5*time.Millisecond)
	require.Never(t, func() bool { return srv.stats.slowMessages.Load() > 0 }, 3*time.Second, 20*time.Millisecond,
		"closed for a message the relay did not read")
	// Held input is looked at again on the sweeper's wakes, so the pongs
	// drain at its pace (seconds under -race on a loaded machine).
	require.NoError(t, r.nc.SetDeadline(time.Now().Add(3*testTimeout)))

	for range pings {
		op, _ := r.readFrame()
		require.Equal(t, byte(opPong), op)
	}
	r.write(clientFrame(true, opCont, body[1:], false))
	r.write(clientFrame(true, opPing, []byte("end"), false))
	for {
		op, payload := r.readFrame()
		require.NotEqual(t, byte(opClose), op, "closed: %q", payload)
		if op == opPong {
			break
		}
	}
	require.Zero(t, srv.stats.slowMessages.Load())
}
