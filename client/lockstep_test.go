package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server"
)

// startLockstepRelay runs a relay for lockstep tests (fast ticks allowed,
// rate limits far above one input per tick) behind a splitproxy, and
// returns the proxy's URL.
func startLockstepRelay(t *testing.T, mutate func(*server.Config), proxy func(*splitproxy.Config)) string {
	t.Helper()
	cfg := server.Config{
		Listen:      "127.0.0.1:0",
		AdminListen: server.AdminOff,
		EventLoops:  2,
		Room:        room.Config{MaxTickRate: 1000, Workers: 2},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	cfg.RateLimits.MessagesPerSecond = 10_000
	cfg.RateLimits.MessageBurst = 10_000
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := server.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	p := splitproxy.ForTest(t, srv.Addr(), proxy)
	return "ws://" + p.Addr() + "/ws"
}

// setLog keeps copies of the InputSets a client received, by tick.
type setLog struct {
	mu     sync.Mutex
	sets   map[uint64]InputSet // payloads and Raw copied
	errs   []*ServerError
	events []*pb.RoomEvent
	asked  []uint64
	notify chan struct{}
}

func newSetLog() *setLog {
	return &setLog{sets: map[uint64]InputSet{}, notify: make(chan struct{}, 1)}
}

func (l *setLog) opts() Options {
	return Options{
		OnInputSet: func(s *InputSet) {
			cp := InputSet{Tick: s.Tick, Lead: s.Lead, HasLead: s.HasLead, Raw: append([]byte(nil), s.Raw...)}
			for _, in := range s.Inputs {
				in.Payload = append([]byte(nil), in.Payload...)
				cp.Inputs = append(cp.Inputs, in)
			}
			l.mu.Lock()
			l.sets[s.Tick] = cp
			l.mu.Unlock()
			l.poke()
		},
		OnFrame: func(f *FrameView) {
			if len(f.Events) == 0 {
				return
			}
			l.mu.Lock()
			l.events = append(l.events, f.Events...)
			l.mu.Unlock()
		},
		OnError: func(e *ServerError) {
			l.mu.Lock()
			l.errs = append(l.errs, e)
			l.mu.Unlock()
			l.poke()
		},
		OnSnapshotRequest: func(earliest uint64) {
			l.mu.Lock()
			l.asked = append(l.asked, earliest)
			l.mu.Unlock()
			l.poke()
		},
	}
}

func (l *setLog) poke() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// waitFor waits until cond (called under l.mu) holds.
func (l *setLog) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout * 3)
	for {
		l.mu.Lock()
		ok := cond()
		l.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-l.notify:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestLockstepSDK(t *testing.T) {
	t.Parallel()
	url := startLockstepRelay(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	la, lb := newSetLog(), newSetLog()
	a, err := Dial(ctx, url, la.opts())
	require.NoError(t, err)
	defer a.Close()
	b, err := Dial(ctx, url, lb.opts())
	require.NoError(t, err)
	defer b.Close()
	ja, err := a.Join(ctx, JoinOptions{RoomID: "ls-sdk", CreateIfMissing: true, Room: RoomOptions{
		TickRate: 50, Lockstep: &LockstepOptions{Tolerance: 10 * time.Millisecond}}})
	require.NoError(t, err)
	require.Equal(t, pb.RoomMode_ROOM_MODE_LOCKSTEP, ja.Mode)
	require.NotNil(t, ja.Lockstep)
	require.EqualValues(t, 1, ja.Lockstep.FirstTick)
	require.Equal(t, 10*time.Millisecond, ja.Lockstep.Tolerance)
	jb, err := b.Join(ctx, JoinOptions{RoomID: "ls-sdk"})
	require.NoError(t, err)

	// Both send inputs a few ticks ahead; both get the same InputSets.
	start := jb.Tick + 1
	for tick := start; tick < start+10; tick++ {
		require.NoError(t, a.SendInput(tick+5, []byte{'a', byte(tick)}, InputOptions{}))
		require.NoError(t, b.SendInput(tick+5, []byte{'b', byte(tick)}, InputOptions{}))
	}
	last := start + 14
	for _, l := range []*setLog{la, lb} {
		l.waitFor(t, "input sets", func() bool { _, ok := l.sets[last]; return ok })
	}
	la.mu.Lock()
	lb.mu.Lock()
	for tick := start + 5; tick <= last; tick++ {
		sa, sb := la.sets[tick], lb.sets[tick]
		require.Equal(t, sa.Raw, sb.Raw, "tick %d", tick)
		require.Len(t, sa.Inputs, 2)
		for i, in := range sa.Inputs {
			require.Equal(t, InputClient, in.Flag, "tick %d player %d", tick, i)
		}
		require.Equal(t, []byte{'a', byte(tick - 5)}, sa.Inputs[0].Payload)
		require.True(t, sa.HasLead)
		require.Greater(t, sa.Lead, time.Duration(0))
	}
	lb.mu.Unlock()
	la.mu.Unlock()

	// An input for a closed tick comes back with its timing.
	require.NoError(t, a.SendInput(start, []byte("late"), InputOptions{}))
	la.waitFor(t, "INPUT_TOO_LATE", func() bool { return len(la.errs) > 0 })
	la.mu.Lock()
	e := la.errs[0]
	la.mu.Unlock()
	require.True(t, errors.Is(e, ErrInputTooLate), "%v", e)
	require.Equal(t, "closed", e.Reason)
	require.Equal(t, start, e.InputTick)
	require.GreaterOrEqual(t, e.Tick, last)
	require.Less(t, e.InputLead, time.Duration(0))

	// Checksums that disagree: both are named (two groups tie).
	require.NoError(t, a.SendInput(0, nil, InputOptions{ChecksumTick: last, Checksum: 1}))
	require.NoError(t, b.SendInput(0, nil, InputOptions{ChecksumTick: last, Checksum: 2}))
	lb.waitFor(t, "DESYNC", func() bool {
		for _, ev := range lb.events {
			if ev.GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_DESYNC {
				return ev.GetTick() == last && len(ev.GetPlayers()) == 2
			}
		}
		return false
	})
}

// The snapshot hook: with a small log the room asks a member for a
// snapshot; a late joiner then starts from it.
func TestLockstepSDKSnapshot(t *testing.T) {
	t.Parallel()
	url := startLockstepRelay(t, func(c *server.Config) { c.Room.LockstepLogBytes = 2000 }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	la := newSetLog()
	a, err := Dial(ctx, url, la.opts())
	require.NoError(t, err)
	defer a.Close()
	_, err = a.Join(ctx, JoinOptions{RoomID: "ls-snap", CreateIfMissing: true, Room: RoomOptions{TickRate: 100, Lockstep: &LockstepOptions{}}})
	require.NoError(t, err)
	la.waitFor(t, "a snapshot request", func() bool { return len(la.asked) > 0 })
	// Answer with the state after the newest tick received.
	var tick uint64
	la.mu.Lock()
	for t := range la.sets {
		tick = max(tick, t)
	}
	la.mu.Unlock()
	require.NoError(t, a.SendSnapshot(tick, []byte("state-"+strings.Repeat("x", 10))))
	// The relay does not acknowledge a snapshot, and c's Join below comes on
	// another connection, which the room may read first (and rightly seat
	// from the log, which still reaches tick 1). a's messages reach the room
	// in order, so once an input a sent after the snapshot shows in an
	// InputSet, the snapshot has been taken.
	// (An input that arrives after its tick closed is refused; then try
	// further ahead.)
	for taken := false; !taken; {
		var barrierTick uint64
		la.mu.Lock()
		for t := range la.sets {
			barrierTick = max(barrierTick, t+8)
		}
		la.mu.Unlock()
		require.NoError(t, a.SendInput(barrierTick, []byte("after-snapshot"), InputOptions{}))
		la.waitFor(t, "the InputSet of the input sent after the snapshot", func() bool { _, ok := la.sets[barrierTick]; return ok })
		la.mu.Lock()
		s := la.sets[barrierTick]
		taken = len(s.Inputs) == 1 && string(s.Inputs[0].Payload) == "after-snapshot"
		la.mu.Unlock()
	}

	lc := newSetLog()
	c, err := Dial(ctx, url, lc.opts())
	require.NoError(t, err)
	defer c.Close()
	var jc *Joined
	for {
		jc, err = c.Join(ctx, JoinOptions{RoomID: "ls-snap"})
		var se *ServerError
		if errors.As(err, &se) && se.Reason == "snapshot_pending" {
			select { // the snapshot is on its way
			case <-time.After(se.RetryAfter / 10):
				continue
			case <-ctx.Done():
			}
		}
		break
	}
	require.NoError(t, err)
	require.Equal(t, tick, jc.Lockstep.SnapshotTick)
	require.Equal(t, tick+1, jc.Lockstep.FirstTick)
	require.Equal(t, "state-xxxxxxxxxx", string(jc.Lockstep.Snapshot))
	lc.waitFor(t, "the first InputSet after the snapshot", func() bool { _, ok := lc.sets[tick+1]; return ok })
}
