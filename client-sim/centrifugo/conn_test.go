package centrifugo_test

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client-sim/centrifugo"
	"github.com/tickrelay/tickrelay/client-sim/centrifugo/cftest"
)

// received collects what one connection's callbacks saw.
type received struct {
	mu     sync.Mutex
	seqs   []uint64
	errs   []*centrifugo.ServerError
	closed chan int
}

func newReceived() *received { return &received{closed: make(chan int, 1)} }

func (r *received) options() centrifugo.Options {
	return centrifugo.Options{
		OnPublications: func(pubs []centrifugo.Publication) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, p := range pubs {
				r.seqs = append(r.seqs, binary.LittleEndian.Uint64(p.Data))
			}
		},
		OnError: func(e *centrifugo.ServerError) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.errs = append(r.errs, e)
		},
		OnClose: func(code int, _ string) { r.closed <- code },
	}
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

func TestPublishSubscribeThroughSplitFrames(t *testing.T) {
	t.Parallel()
	srv, err := cftest.Start(cftest.Config{SplitWrites: true, PingInterval: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	a, b := newReceived(), newReceived()
	ca, err := centrifugo.Dial(ctx, srv.URL(), "room:1", a.options())
	require.NoError(t, err)
	cb, err := centrifugo.Dial(ctx, srv.URL(), "room:1", b.options())
	require.NoError(t, err)

	const n = 20
	payload := make([]byte, 64)
	for i := range uint64(n) {
		binary.LittleEndian.PutUint64(payload, i+1)
		require.NoError(t, ca.Publish("room:1", payload))
	}
	// Centrifugo delivers to the publisher as well.
	require.Eventually(t, func() bool { return a.count() == n && b.count() == n }, 15*time.Second, 10*time.Millisecond)
	for _, r := range []*received{a, b} {
		r.mu.Lock()
		for i, s := range r.seqs {
			require.Equal(t, uint64(i+1), s, "in order")
		}
		r.mu.Unlock()
	}
	// The server's pings were answered.
	require.Eventually(t, func() bool { return srv.Pongs() >= 2 }, 5*time.Second, 10*time.Millisecond)

	// A publish the server refuses comes back on OnError.
	require.NoError(t, cb.Publish("room:other", payload))
	require.Eventually(t, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.errs) == 1 && b.errs[0].Code == 103
	}, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, ca.Close())
	require.Equal(t, 1000, <-a.closed)
	require.ErrorIs(t, ca.Publish("room:1", payload), centrifugo.ErrClosed)
	require.NoError(t, ca.Close(), "idempotent")
	require.NoError(t, cb.Close())
}

func TestServerGoneEndsConnection(t *testing.T) {
	t.Parallel()
	srv, err := cftest.Start(cftest.Config{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := newReceived()
	c, err := centrifugo.Dial(ctx, srv.URL(), "room:1", r.options())
	require.NoError(t, err)
	srv.Close()
	select {
	case code := <-r.closed:
		require.Equal(t, 1006, code)
	case <-ctx.Done():
		t.Fatal("no OnClose after the server went away")
	}
	require.Error(t, c.Publish("room:1", []byte("x")))
	require.NoError(t, c.Close())
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := cftest.Start(cftest.Config{})
	require.NoError(t, err)
	addr := srv.URL()
	srv.Close()
	_, err = centrifugo.Dial(ctx, addr, "room:1", centrifugo.Options{})
	require.Error(t, err, "nothing listens")
	var se *centrifugo.ServerError
	require.False(t, errors.As(err, &se))
}
