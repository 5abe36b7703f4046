package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/server/wsproto"
)

// TestWakeBatchServesEveryConnectionOfTheBatch builds one batch by hand on
// a relay with one event loop: carried by a connection that closed before
// its wake, holding four live connections with a frame each and one more
// connection that closed after joining. Every live connection gets its
// frame from the one wake; the closed ones do not stop it.
func TestWakeBatchServesEveryConnectionOfTheBatch(t *testing.T) {
	forEachPath(t, func(t *testing.T, start startFunc) {
		srv := start(t, func(c *Config) { c.EventLoops = 1 })
		clients := make([]*wsClient, 6)
		for i := range clients {
			clients[i] = dial(t, srv)
		}
		var conns []*conn
		srv.conns.each(func(c *conn) { conns = append(conns, c) })
		require.Len(t, conns, len(clients))
		batch := conns[0].loop.wakes
		for _, c := range conns {
			require.Same(t, batch, c.loop.wakes, "one event loop, one batch")
		}

		// Two clients leave; which server connections were theirs shows
		// once the loop has closed them.
		require.NoError(t, clients[0].conn.Close())
		require.NoError(t, clients[1].conn.Close())
		var live, closed []*conn
		require.Eventually(t, func() bool {
			live, closed = live[:0], closed[:0]
			for _, c := range conns {
				if c.state.Load() == stateClosed {
					closed = append(closed, c)
				} else {
					live = append(live, c)
				}
			}
			return len(closed) == 2
		}, testTimeout, 5*time.Millisecond)

		require.True(t, batch.join(closed[0]), "no batch on its way: the first to join carries one")
		want := map[string]bool{}
		for _, c := range live {
			payload := fmt.Sprintf("frame for fd %d", c.gc.Fd())
			want[payload] = true
			frame := make([]byte, wsproto.HeaderLen(len(payload))+len(payload))
			wsproto.PutHeader(frame, ws.OpBinary, len(payload))
			copy(frame[wsproto.HeaderLen(len(payload)):], payload)
			ok, overHard, _ := c.out.push(frame, nil)
			require.True(t, ok)
			require.False(t, overHard)
			require.False(t, batch.join(c), "a batch is on its way: the others join it")
		}
		require.False(t, batch.join(closed[1]))
		batch.carry(closed[0])

		got := map[string]bool{}
		for _, cl := range clients[2:] {
			require.NoError(t, cl.conn.SetReadDeadline(time.Now().Add(testTimeout)))
			typ, b, err := cl.conn.ReadMessage()
			require.NoError(t, err)
			require.Equal(t, websocket.BinaryMessage, typ)
			got[string(b)] = true
		}
		require.Equal(t, want, got)

		// The batch is spent: the next connection to wake carries a new one.
		require.Eventually(t, func() bool {
			batch.mu.Lock()
			defer batch.mu.Unlock()
			return !batch.scheduled && len(batch.conns) == 0
		}, testTimeout, 5*time.Millisecond)
		require.True(t, batch.join(live[0]))
		batch.carry(live[0])
	})
}
