package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// The Error before close 4003 carries the limiter's real retry hint, as the
// RATE_LIMITED answers before it do: a client that backs off by it does not
// come back too early.
func TestRateLimitCloseCarriesRetryHint(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.RateLimits.MessagesPerSecond = 5
		c.RateLimits.MessageBurst = 5
		c.RateLimits.Grace = 300 * time.Millisecond
	})
	r := dialRaw(t, srv)
	r.upgrade()
	msg := clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("x")}}}), false)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.nc.Write(msg); err != nil {
				return
			}
		}
	}()
	code, errMsg := r.expectClose()
	require.Equal(t, 4003, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, errMsg.GetCode())
	require.Positive(t, errMsg.GetRetryAfterMs(), "the close's Error says when to come back")
	require.LessOrEqual(t, errMsg.GetRetryAfterMs(), uint32(60_000))
}
