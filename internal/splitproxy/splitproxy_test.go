package splitproxy

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// echoServer answers every connection by echoing it and counts the reads it
// needed, so the test can see that writes were cut.
func echoServer(t *testing.T) (addr string, reads chan int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	reads = make(chan int, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n := 0
				buf := make([]byte, 1<<16)
				for {
					k, err := c.Read(buf)
					if k > 0 {
						n++
						if _, werr := c.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						reads <- n
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), reads
}

func TestProxyDeliversEveryByteInOrderAndCutsWrites(t *testing.T) {
	addr, reads := echoServer(t)
	p := ForTest(t, addr, nil)
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))

	msg := make([]byte, 100_000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range msg {
		msg[i] = byte(rng.Uint32())
	}
	_, err = c.Write(msg)
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.True(t, bytes.Equal(msg, got), "echo differs from what was sent")
	select {
	case n := <-reads:
		// One 100 KB write arrives in a handful of reads on plain loopback;
		// cut into pieces of at most 4 KiB it needs at least 25.
		require.GreaterOrEqual(t, n, 25, "the server read the stream in %d reads: writes were not cut", n)
	case <-time.After(10 * time.Second):
		t.Fatal("echo server did not finish")
	}
}

func TestProxySameSeedSameCuts(t *testing.T) {
	cfg := Config{Seed: 42}.withDefaults()
	p := &Proxy{cfg: cfg}
	a, b := rand.New(rand.NewPCG(42, 0)), rand.New(rand.NewPCG(42, 0))
	for range 1000 {
		require.Equal(t, p.pieceSize(a), p.pieceSize(b))
	}
}
