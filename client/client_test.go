package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

const (
	joinedEv = pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED
	leftEv   = pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT
	hostEv   = pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED
)

func TestJoinSendReceive(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a, b, c := connect(t, url), connect(t, url), connect(t, url)

		ja := a.join(t, JoinOptions{Create: true, Metadata: map[string]string{"name": "ann"}})
		require.NotEmpty(t, ja.RoomID, "server-made room code")
		require.Equal(t, ja.PlayerID, ja.HostID, "the creator is the host")
		require.Len(t, ja.Members, 1)

		jb := b.join(t, JoinOptions{RoomID: ja.RoomID, Metadata: map[string]string{"name": "bob"}})
		require.Equal(t, ja.RoomID, jb.RoomID)
		require.NotEqual(t, ja.PlayerID, jb.PlayerID)
		require.Len(t, jb.Members, 2)
		require.Equal(t, ja.PlayerID, jb.Members[0].PlayerID, "oldest first")
		require.Equal(t, "ann", jb.Members[0].Metadata["name"])
		ev := a.expectEvent(t, joinedEv, jb.PlayerID)
		require.Equal(t, "bob", ev.GetMetadata()["name"])

		jc := c.join(t, JoinOptions{RoomID: ja.RoomID})
		a.expectEvent(t, joinedEv, jc.PlayerID)
		b.expectEvent(t, joinedEv, jc.PlayerID)

		// To all others.
		b.send(t, "hello", SendOptions{Kind: 7})
		for _, p := range []*peer{a, c} {
			require.Equal(t, gotDelivery{Sender: jb.PlayerID, Kind: 7, Payload: "hello"}, p.nextDelivery(t))
		}

		// To one target, echoed to the sender.
		b.send(t, "psst", SendOptions{Targets: []uint32{jc.PlayerID}, Echo: true})
		require.Equal(t, "psst", c.nextDelivery(t).Payload)
		require.Equal(t, gotDelivery{Sender: jb.PlayerID, Payload: "psst"}, b.nextDelivery(t))
		// a was not a target: its next delivery is b's next message (one
		// sender's messages keep their order).
		b.send(t, "after", SendOptions{})
		require.Equal(t, "after", a.nextDelivery(t).Payload)
		require.Equal(t, "after", c.nextDelivery(t).Payload)

		for _, p := range []*peer{a, b, c} {
			p.requireTicksIncreased(t)
		}
	})
}

func TestJoinCreateIfMissingWithOptions(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a, b := connect(t, url), connect(t, url)
		opts := JoinOptions{RoomID: "lobby", CreateIfMissing: true, Room: RoomOptions{
			MaxPlayers: 5, TickRate: 20, Metadata: map[string]string{"map": "dust"},
		}}
		ja := a.join(t, opts)
		require.Equal(t, uint32(5), ja.MaxPlayers)
		require.Equal(t, uint32(20), ja.TickRate)
		require.False(t, ja.Immediate)
		require.Equal(t, "dust", ja.RoomMetadata["map"])

		// The second create_if_missing joins the existing room; its options
		// are ignored.
		opts.Room.MaxPlayers = 9
		jb := b.join(t, opts)
		require.Equal(t, ja.RoomID, jb.RoomID)
		require.Equal(t, uint32(5), jb.MaxPlayers)
	})
}

func TestManyMessagesInOrderWithIncreasingTicks(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a, b := connect(t, url), connect(t, url)
		ja := a.join(t, JoinOptions{Create: true})
		jb := b.join(t, JoinOptions{RoomID: ja.RoomID})
		a.expectEvent(t, joinedEv, jb.PlayerID)

		const n = 300
		for i := range n {
			b.send(t, fmt.Sprint(i), SendOptions{})
		}
		for i := range n {
			d := a.nextDelivery(t)
			require.Equal(t, fmt.Sprint(i), d.Payload)
			require.Equal(t, jb.PlayerID, d.Sender)
		}
		a.requireTicksIncreased(t)
		a.mu.Lock()
		frames := a.frameCount
		a.mu.Unlock()
		if ja.TickRate > 0 {
			// Batching: one frame per tick carries many deliveries.
			require.Less(t, frames, n+1)
		}
	})
}

func TestPresence(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a, b, c := connect(t, url), connect(t, url), connect(t, url)
		ja := a.join(t, JoinOptions{Create: true})
		jb := b.join(t, JoinOptions{RoomID: ja.RoomID})
		a.expectEvent(t, joinedEv, jb.PlayerID)
		jc := c.join(t, JoinOptions{RoomID: ja.RoomID})
		a.expectEvent(t, joinedEv, jc.PlayerID)
		b.expectEvent(t, joinedEv, jc.PlayerID)

		// The host leaves: PLAYER_LEFT, then the oldest remaining member
		// becomes host.
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		require.NoError(t, a.Leave(ctx))
		for _, p := range []*peer{b, c} {
			ev := p.expectEvent(t, leftEv, ja.PlayerID)
			require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, ev.GetReason())
			p.expectEvent(t, hostEv, jb.PlayerID)
		}

		// A disconnect.
		require.NoError(t, c.Close())
		ev := b.expectEvent(t, leftEv, jc.PlayerID)
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_DISCONNECTED, ev.GetReason())

		// a can join again and gets a fresh player id (ids are never reused).
		ja2 := a.join(t, JoinOptions{RoomID: ja.RoomID})
		require.Greater(t, ja2.PlayerID, jc.PlayerID)
		require.Equal(t, jb.PlayerID, ja2.HostID)
		b.expectEvent(t, joinedEv, ja2.PlayerID)
	})
}

func TestErrorsAreTyped(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a, b, c := connect(t, url), connect(t, url), connect(t, url)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()

		_, err := a.Join(ctx, JoinOptions{RoomID: "no-such-room"})
		require.ErrorIs(t, err, ErrRoomNotFound)
		var se *ServerError
		require.ErrorAs(t, err, &se)
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, se.Code)
		require.NotErrorIs(t, err, ErrRoomFull)

		require.ErrorIs(t, a.Leave(ctx), ErrNotInRoom)

		// A Send is not answered; its refusal comes through OnError.
		a.send(t, "nobody hears", SendOptions{})
		select {
		case e := <-a.errs:
			require.ErrorIs(t, e, ErrNotInRoom)
		case <-time.After(waitTimeout):
			require.FailNow(t, "no error for a send outside a room")
		}

		ja := a.join(t, JoinOptions{Create: true, Room: RoomOptions{MaxPlayers: 2}})
		_, err = a.Join(ctx, JoinOptions{Create: true})
		require.ErrorIs(t, err, ErrAlreadyInRoom)
		b.join(t, JoinOptions{RoomID: ja.RoomID})
		_, err = c.Join(ctx, JoinOptions{RoomID: ja.RoomID})
		require.ErrorIs(t, err, ErrRoomFull)

		_, err = c.Join(ctx, JoinOptions{RoomID: "bad id!", CreateIfMissing: true})
		require.ErrorIs(t, err, ErrInvalidArgument)

		// Checked locally: an empty room id must be asked for with Create.
		_, err = c.Join(ctx, JoinOptions{})
		require.ErrorIs(t, err, ErrNoRoomID)
	})
}

func TestPing(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a := connect(t, url)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		rtt, offset, err := a.Ping(ctx)
		require.NoError(t, err)
		require.Positive(t, rtt)
		require.Less(t, rtt, time.Second)
		// Same machine, same clock: the offset is within the round trip.
		require.Less(t, offset.Abs(), rtt+time.Millisecond)
	})
}

func TestServerShutdownEndsClient(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, stop func()) {
		a := connect(t, url)
		a.join(t, JoinOptions{Create: true})
		stop()
		ci := a.nextClose(t)
		require.NotZero(t, ci.code)
		require.ErrorIs(t, a.Err(), ErrClosed)
		require.ErrorIs(t, a.Send([]byte("x"), SendOptions{}), ErrClosed)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_, _, err := a.Ping(ctx)
		require.ErrorIs(t, err, ErrClosed)
	})
}

// Close while one of the Client's callbacks runs, called from the callback
// itself and from another goroutine: neither waits for the reader (which
// cannot end before the callback returns), and both still complete the
// close handshake: the server's answer is read, the connection ends 1000.
func TestCloseWhileACallbackRuns(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		for _, fromCallback := range []bool{true, false} {
			name := map[bool]string{true: "from-the-callback", false: "from-another-goroutine"}[fromCallback]
			t.Run(name, func(t *testing.T) {
				var self atomic.Pointer[Client]
				var first, released sync.Once
				entered, release := make(chan struct{}), make(chan struct{})
				unblock := func() { released.Do(func() { close(release) }) }
				t.Cleanup(unblock) // registered before a.Close's: runs after it
				closed := make(chan closeInfo, 1)
				opts := Options{
					OnFrame: func(*FrameView) {
						first.Do(func() {
							close(entered)
							if fromCallback {
								assert.NoError(t, self.Load().Close())
								return
							}
							<-release
						})
					},
					OnClose: func(code int, reason string) { closed <- closeInfo{code, reason} },
				}
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				a, err := Dial(ctx, url, opts)
				require.NoError(t, err)
				self.Store(a)
				t.Cleanup(func() { _ = a.Close() })
				j, err := a.Join(ctx, JoinOptions{Create: true})
				require.NoError(t, err)
				b := connect(t, url)
				b.join(t, JoinOptions{RoomID: j.RoomID})
				b.send(t, "wake a's callback", SendOptions{})

				select {
				case <-entered:
				case <-time.After(waitTimeout):
					require.FailNow(t, "no frame reached the callback")
				}
				if !fromCallback {
					require.NoError(t, a.Close(), "returns while the callback still runs")
					unblock()
				}
				select {
				case ci := <-closed:
					require.Equal(t, 1000, ci.code, "the server's answer to our Close was read: %v", ci)
				case <-time.After(waitTimeout):
					require.FailNow(t, "connection not closed")
				}
				<-a.Done()
			})
		}
	})
}

// An OnClose that hands the close to the goroutine that called Close (an
// unbuffered send it reads once Close has returned) must not stop Close
// from returning.
func TestCloseWithAnOnCloseThatWaitsForTheCaller(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		codes := make(chan int) // unbuffered
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		a, err := Dial(ctx, url, Options{OnClose: func(code int, _ string) {
			select {
			case codes <- code:
			case <-time.After(2 * waitTimeout): // lets the test end if Close hangs
			}
		}})
		require.NoError(t, err)
		_, err = a.Join(ctx, JoinOptions{Create: true})
		require.NoError(t, err)
		returned := make(chan struct{})
		go func() {
			_ = a.Close()
			close(returned)
		}()
		select {
		case <-returned:
		case <-time.After(waitTimeout):
			require.FailNow(t, "Close waits for an OnClose that waits for Close's caller")
		}
		select {
		case code := <-codes:
			require.Equal(t, 1000, code)
		case <-time.After(waitTimeout):
			require.FailNow(t, "no OnClose")
		}
	})
}

// Not parallel: it counts every Client goroutine of the process.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	for _, s := range testServers {
		t.Run(s.name, func(t *testing.T) {
			url, _ := s.start(t)
			var peers []*peer
			for range 10 {
				p := connectWith(t, url, Options{PingInterval: time.Hour})
				peers = append(peers, p)
			}
			j := peers[0].join(t, JoinOptions{Create: true})
			for _, p := range peers[1:] {
				p.join(t, JoinOptions{RoomID: j.RoomID})
			}
			peers[1].send(t, "bye", SendOptions{})
			peers[0].nextDelivery(t)
			// The check below must be able to see what it looks for.
			require.GreaterOrEqual(t, len(clientGoroutines()), len(peers), "reader goroutines of open clients")

			for _, p := range peers {
				require.NoError(t, p.Close())
				require.NoError(t, p.Close(), "Close is idempotent")
			}
			ci := peers[0].nextClose(t)
			require.Equal(t, 1000, ci.code, "the server answers our Close frame: %v", ci)
			requireNoClientGoroutines(t)

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, err := peers[0].Join(ctx, JoinOptions{Create: true})
			require.ErrorIs(t, err, ErrClosed)
		})
	}
}

// Not parallel: it counts goroutines.
func TestContextCancellation(t *testing.T) {
	// A server that completes the handshake and then never answers.
	silent := rawServer(t, func(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) })

	// Close must not hang on a server that never answers the Close frame:
	// CloseTimeout bounds it.
	c, err := Dial(context.Background(), silent, Options{CloseTimeout: 50 * time.Millisecond})
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	_, err = c.Join(ctx, JoinOptions{Create: true})
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	_, _, err = c.Ping(ctx)
	require.ErrorIs(t, err, context.Canceled)
	c.mu.Lock()
	require.Empty(t, c.pending, "abandoned requests are forgotten")
	c.mu.Unlock()

	require.NoError(t, c.Close())

	// A dial cancelled during the handshake.
	hang := hangingListener(t)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = Dial(ctx, hang, Options{})
	cancel()
	require.Error(t, err)

	requireNoClientGoroutines(t)
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := Dial(ctx, "not a url", Options{})
	require.Error(t, err)
	// Nothing listens on a port we just closed.
	_, err = Dial(ctx, "ws://"+closedPort(t)+"/ws", Options{})
	require.Error(t, err)
}

func TestSendAfterCloseFails(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string, _ func()) {
		a := connect(t, url)
		require.NoError(t, a.Close())
		err := a.Send([]byte("x"), SendOptions{})
		require.ErrorIs(t, err, ErrClosed)
		require.True(t, errors.Is(a.Err(), ErrClosed))
	})
}
