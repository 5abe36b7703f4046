package client

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server"
)

// resumeRelay starts the real relay with the given seat grace and a
// write-splitting proxy in front of it that the tests cut.
func resumeRelay(t *testing.T, grace time.Duration) (direct string, proxy *splitproxy.Proxy) {
	t.Helper()
	srv, err := server.New(server.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: server.AdminOff,
		Room:        room.Config{SeatGrace: grace, DefaultTickRate: 50},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	p := splitproxy.ForTest(t, srv.Addr(), nil)
	return "ws://" + srv.Addr() + "/ws", p
}

// sessionRecorder collects what a Session's callbacks saw.
type sessionRecorder struct {
	mu        sync.Mutex
	payloads  []string
	seqs      []uint64
	events    []*pb.RoomEvent
	resyncs   []pb.ResumeFailure
	got       chan struct{} // a frame arrived
	reconnect chan *Resumed
	resync    chan *Joined
}

func newSessionRecorder() *sessionRecorder {
	return &sessionRecorder{
		got:       make(chan struct{}, 1),
		reconnect: make(chan *Resumed, 64),
		resync:    make(chan *Joined, 8),
	}
}

func (r *sessionRecorder) options(join JoinOptions) SessionOptions {
	return SessionOptions{
		Join: join,
		OnFrame: func(f *FrameView) {
			r.mu.Lock()
			r.seqs = append(r.seqs, f.Seq)
			for _, d := range f.Deliveries {
				r.payloads = append(r.payloads, string(d.Payload))
			}
			r.events = append(r.events, f.Events...)
			r.mu.Unlock()
			select {
			case r.got <- struct{}{}:
			default:
			}
		},
		OnResync: func(j *Joined, why pb.ResumeFailure) {
			r.mu.Lock()
			r.resyncs = append(r.resyncs, why)
			r.mu.Unlock()
			r.resync <- j
		},
		OnReconnect: func(res *Resumed) { r.reconnect <- res },
		// Fast reconnects: the tests cut often.
		ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond,
		AckInterval:  20 * time.Millisecond,
	}
}

// waitPayload waits until the recorder holds want as its last payload.
func (r *sessionRecorder) waitPayload(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		n := len(r.payloads)
		last := ""
		if n > 0 {
			last = r.payloads[n-1]
		}
		r.mu.Unlock()
		if last == want {
			return
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("no payload %q; last %q", want, last)
		}
	}
}

func (r *sessionRecorder) awaitReconnect(t *testing.T) *Resumed {
	t.Helper()
	select {
	case res := <-r.reconnect:
		return res
	case <-time.After(waitTimeout):
		t.Fatal("the session did not reconnect")
		return nil
	}
}

func numbered(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}

// The player's connection is cut ten times while the room goes on; each
// time the session resumes the seat and the relay replays what the player
// missed. Every message arrives exactly once and in order, and the frame
// numbering has no gap.
func TestSessionResumesAfterCutsWithEveryFrameOnceInOrder(t *testing.T) {
	t.Parallel()
	direct, proxy := resumeRelay(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	sender, err := Dial(ctx, direct, Options{})
	require.NoError(t, err)
	defer sender.Close()
	_, err = sender.Join(ctx, JoinOptions{RoomID: "cuts", CreateIfMissing: true})
	require.NoError(t, err)

	rec := newSessionRecorder()
	s, err := Connect(ctx, "ws://"+proxy.Addr()+"/ws", rec.options(JoinOptions{RoomID: "cuts"}))
	require.NoError(t, err)
	defer s.Close()

	const perRound = 20
	next := 0
	send := func(n int) {
		for range n {
			require.NoError(t, sender.Send([]byte(strconv.Itoa(next)), SendOptions{Kind: 1}))
			next++
		}
	}
	for range 10 {
		send(perRound)
		require.Positive(t, proxy.Cut())
		send(perRound) // while the player is gone, or about to be
		res := rec.awaitReconnect(t)
		require.True(t, res.Recovered, "failure %v", res.Failure)
	}
	send(1)
	rec.waitPayload(t, strconv.Itoa(next-1))

	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, numbered(next), rec.payloads, "every message once, in order")
	for i, seq := range rec.seqs {
		require.EqualValues(t, i+1, seq, "frame numbering without gaps")
	}
	st := s.Stats()
	require.Equal(t, 10, st.Reconnects)
	require.Equal(t, 10, st.Recovered)
	require.Positive(t, st.FramesReplayed, "frames sent into dead connections came back")
	require.Zero(t, st.Resyncs)
	require.Empty(t, rec.resyncs)
}

// The player sends while its connection is cut: inputs in flight at the
// cut, and those sent while it reconnects, reach the room exactly once and
// in order (the session re-sends what the relay did not get; the relay
// drops what it already had).
func TestSessionInputsSurviveCutsExactlyOnce(t *testing.T) {
	t.Parallel()
	direct, proxy := resumeRelay(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	var mu sync.Mutex
	var got []string
	arrived := make(chan struct{}, 1)
	watcher, err := Dial(ctx, direct, Options{OnFrame: func(f *FrameView) {
		mu.Lock()
		for _, d := range f.Deliveries {
			got = append(got, string(d.Payload))
		}
		mu.Unlock()
		select {
		case arrived <- struct{}{}:
		default:
		}
	}})
	require.NoError(t, err)
	defer watcher.Close()
	_, err = watcher.Join(ctx, JoinOptions{RoomID: "inputs", CreateIfMissing: true})
	require.NoError(t, err)

	rec := newSessionRecorder()
	opts := rec.options(JoinOptions{RoomID: "inputs"})
	opts.OnError = func(err *ServerError) { t.Errorf("relay error: %v", err) }
	s, err := Connect(ctx, "ws://"+proxy.Addr()+"/ws", opts)
	require.NoError(t, err)
	defer s.Close()

	next := 0
	send := func(n int) {
		for range n {
			require.NoError(t, s.Send([]byte(strconv.Itoa(next)), SendOptions{Kind: 1}))
			next++
		}
	}
	// waitAll waits until the watcher holds every input sent so far.
	waitAll := func() {
		t.Helper()
		deadline := time.After(waitTimeout)
		for {
			mu.Lock()
			n := len(got)
			mu.Unlock()
			if n >= next {
				return
			}
			select {
			case <-arrived:
			case <-deadline:
				t.Fatalf("the watcher got %d of %d inputs; %+v", n, next, s.Stats())
			}
		}
	}
	for range 8 {
		send(30) // some reach the relay before the cut, some die with it
		proxy.Cut()
		send(30) // buffered, or written into a dying socket
		rec.awaitReconnect(t)
		waitAll()
	}
	want := numbered(next)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, got, "every input once, in order")
	require.Zero(t, s.Stats().InputsLost)
}

// A cut that the relay does not see (the old connection stays open, silent):
// the resume on a new connection replaces it, and the other players never
// see the player away.
func TestSessionResumesOverAHalfOpenConnection(t *testing.T) {
	t.Parallel()
	direct, proxy := resumeRelay(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	watcherRec := newSessionRecorder()
	watcher, err := Dial(ctx, direct, Options{OnFrame: watcherRec.options(JoinOptions{}).OnFrame})
	require.NoError(t, err)
	defer watcher.Close()
	_, err = watcher.Join(ctx, JoinOptions{RoomID: "half", CreateIfMissing: true})
	require.NoError(t, err)

	rec := newSessionRecorder()
	s, err := Connect(ctx, "ws://"+proxy.Addr()+"/ws", rec.options(JoinOptions{RoomID: "half"}))
	require.NoError(t, err)
	defer s.Close()
	me := s.Joined().PlayerID

	require.NoError(t, watcher.Send([]byte("before"), SendOptions{Kind: 1}))
	rec.waitPayload(t, "before")
	require.Positive(t, proxy.CutHalfOpen())
	require.NoError(t, watcher.Send([]byte("during"), SendOptions{Kind: 1}))
	res := rec.awaitReconnect(t)
	require.True(t, res.Recovered)
	require.NoError(t, watcher.Send([]byte("after"), SendOptions{Kind: 1}))
	rec.waitPayload(t, "after")
	require.NoError(t, s.Send([]byte("hello"), SendOptions{Kind: 1}))
	watcherRec.waitPayload(t, "hello")

	rec.mu.Lock()
	require.Equal(t, []string{"before", "during", "after"}, rec.payloads)
	rec.mu.Unlock()
	watcherRec.mu.Lock()
	defer watcherRec.mu.Unlock()
	for _, ev := range watcherRec.events {
		if ev.GetPlayerId() == me {
			require.NotEqual(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_AWAY, ev.GetType(), "the relay replaced the connection without a gap")
		}
	}
}

// Away longer than the grace: the seat is gone. The session comes back
// with a new seat, tells the game to resync (before the new seat's first
// frame), and the game goes on.
func TestSessionResyncsAfterTheSeatExpired(t *testing.T) {
	t.Parallel()
	direct, proxy := resumeRelay(t, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	watcherRec := newSessionRecorder()
	watcher, err := Dial(ctx, direct, Options{OnFrame: watcherRec.options(JoinOptions{}).OnFrame})
	require.NoError(t, err)
	defer watcher.Close()
	_, err = watcher.Join(ctx, JoinOptions{RoomID: "expiry", CreateIfMissing: true})
	require.NoError(t, err)

	rec := newSessionRecorder()
	opts := rec.options(JoinOptions{RoomID: "expiry"})
	s, err := Connect(ctx, "ws://"+proxy.Addr()+"/ws", opts)
	require.NoError(t, err)
	defer s.Close()
	old := s.Joined().PlayerID

	proxy.Refuse(true) // the player cannot come back for now
	proxy.Cut()
	waitEvent(t, watcherRec, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, old)
	proxy.Refuse(false)

	var j *Joined
	select {
	case j = <-rec.resync:
	case <-time.After(waitTimeout):
		t.Fatal("no resync")
	}
	require.NotEqual(t, old, j.PlayerID, "a new seat")
	res := rec.awaitReconnect(t)
	require.False(t, res.Recovered)
	require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_SEAT_EXPIRED, res.Failure)
	require.Equal(t, j.PlayerID, s.Joined().PlayerID)

	require.NoError(t, watcher.Send([]byte("welcome back"), SendOptions{Kind: 1}))
	rec.waitPayload(t, "welcome back")
	ev := waitEvent(t, watcherRec, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, old)
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_SEAT_EXPIRED, ev.GetReason())
	require.Equal(t, 1, s.Stats().Resyncs)
}

// A relay that keeps no seats (seat grace off): the session joins the room
// again after a cut and says so.
func TestSessionRejoinsWhenTheRelayKeepsNoSeats(t *testing.T) {
	t.Parallel()
	_, proxy := resumeRelay(t, -1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rec := newSessionRecorder()
	s, err := Connect(ctx, "ws://"+proxy.Addr()+"/ws", rec.options(JoinOptions{RoomID: "noseats", CreateIfMissing: true}))
	require.NoError(t, err)
	defer s.Close()
	require.Empty(t, s.Joined().ResumeToken)
	proxy.Cut()
	select {
	case j := <-rec.resync:
		require.Equal(t, "noseats", j.RoomID)
	case <-time.After(waitTimeout):
		t.Fatal("no resync")
	}
	rec.mu.Lock()
	require.Equal(t, []pb.ResumeFailure{pb.ResumeFailure_RESUME_FAILURE_UNSPECIFIED}, rec.resyncs)
	rec.mu.Unlock()
}

// A close the relay says not to come back after (kicked: 4500) ends the
// session instead of reconnecting.
func TestSessionEndsOnACloseThatForbidsReconnecting(t *testing.T) {
	t.Parallel()
	_, proxy := resumeRelay(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	rec := newSessionRecorder()
	opts := rec.options(JoinOptions{RoomID: "end", CreateIfMissing: true})
	left := make(chan Left, 1)
	opts.OnLeft = func(l Left) { left <- l }
	s, err := Connect(ctx, "ws://"+proxy.Addr()+"/ws", opts)
	require.NoError(t, err)
	defer s.Close()

	// Two sessions on one seat: the second resumes it, the relay closes the
	// first with 4502 (replaced), and the first must not fight back.
	s.mu.Lock()
	seat, token := s.seat, s.token
	s.mu.Unlock()
	other, err := Dial(ctx, "ws://"+proxy.Addr()+"/ws", Options{})
	require.NoError(t, err)
	defer other.Close()
	res, err := other.Resume(ctx, ResumeOptions{RoomID: seat.RoomID, PlayerID: seat.PlayerID, Token: token})
	require.NoError(t, err)
	require.True(t, res.Recovered)
	select {
	case <-s.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the session went on after 4502")
	}
	var ce *CloseError
	require.ErrorAs(t, s.Err(), &ce)
	require.Equal(t, 4502, ce.Code)
	require.Zero(t, s.Stats().Reconnects)
}

func waitEvent(t *testing.T, r *sessionRecorder, typ pb.RoomEventType, player uint32) *pb.RoomEvent {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		for _, ev := range r.events {
			if ev.GetType() == typ && ev.GetPlayerId() == player {
				r.mu.Unlock()
				return ev
			}
		}
		r.mu.Unlock()
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("no %v for player %d", typ, player)
		}
	}
}
