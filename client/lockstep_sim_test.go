package client

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// A deterministic reference simulation: integer physics of one body per
// player, driven only by the InputSets. Every client runs its own copy;
// identical InputSets must give identical state, tick after tick.

type body struct {
	id             uint32
	x, y, vx, vy   int64
	pushes, misses int64
}

type refSim struct {
	bodies []body // by player id ascending, like InputSet entries
	hash   uint64 // the state hash chain
}

const worldEdge = 100_000

func sign(v int64) int64 {
	switch {
	case v > 0:
		return 1
	case v < 0:
		return -1
	}
	return 0
}

// step applies the InputSet of tick t.
func (s *refSim) step(t uint64, set *InputSet) {
	// Bodies follow the members: new players appear, players who left go.
	next := s.bodies[:0:0]
	for _, in := range set.Inputs {
		i := slices.IndexFunc(s.bodies, func(b body) bool { return b.id == in.PlayerID })
		b := body{id: in.PlayerID, x: int64(in.PlayerID) * 1000}
		if i >= 0 {
			b = s.bodies[i]
		}
		switch {
		case in.Flag == InputClient && len(in.Payload) == 2:
			b.vx += int64(int8(in.Payload[0]))
			b.vy += int64(int8(in.Payload[1]))
			b.pushes++
		default:
			b.misses++
		}
		next = append(next, b)
	}
	// Every body is pulled towards every other one by one unit.
	for i := range next {
		for j := range next {
			if i != j {
				next[i].vx += sign(next[j].x - next[i].x)
				next[i].vy += sign(next[j].y - next[i].y)
			}
		}
	}
	for i := range next {
		b := &next[i]
		b.vx = max(min(b.vx, 400), -400)
		b.vy = max(min(b.vy, 400), -400)
		b.x += b.vx
		b.y += b.vy
		if b.x > worldEdge || b.x < -worldEdge {
			b.x = sign(b.x)*2*worldEdge - b.x
			b.vx = -b.vx
		}
		if b.y > worldEdge || b.y < -worldEdge {
			b.y = sign(b.y)*2*worldEdge - b.y
			b.vy = -b.vy
		}
	}
	s.bodies = next
	h := fnv.New64a()
	var buf [8]byte
	binary.LittleEndian.PutUint64(buf[:], s.hash)
	h.Write(buf[:])
	binary.LittleEndian.PutUint64(buf[:], t)
	h.Write(buf[:])
	for _, b := range s.bodies {
		for _, v := range []int64{int64(b.id), b.x, b.y, b.vx, b.vy, b.pushes, b.misses} {
			binary.LittleEndian.PutUint64(buf[:], uint64(v))
			h.Write(buf[:])
		}
	}
	s.hash = h.Sum64()
}

// inputFor is player id's input for tick t: a pure function, so the test
// knows what everyone sent.
func inputFor(id uint32, t uint64) []byte {
	x := uint64(id)<<40 ^ t*0x9e3779b97f4a7c15
	x ^= x >> 31
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 29
	return []byte{byte(int8(x%7) - 3), byte(int8((x>>8)%7) - 3)}
}

// simPlayer is one client of the deterministic test. Everything but c and
// the channels is owned by the client's reader goroutine until done, then
// read by the test under mu.
type simPlayer struct {
	name   string
	c      *Client
	id     uint32
	delay  uint64 // input delay, ticks
	lateOn func(t uint64) bool

	mu         sync.Mutex
	sim        refSim
	first      uint64
	last       uint64
	hashes     map[uint64]uint64
	raws       map[uint64]uint64   // fnv of InputSet.Raw
	replacedBy map[uint64][]uint32 // players REPLACED_BY_SERVER, by tick
	replaced   map[uint64]bool     // ticks where own flag was (filled in at the end)
	lateErrs   map[uint64]bool     // input ticks refused INPUT_TOO_LATE{closed}
	deliberate map[uint64]bool     // ticks whose input was held back on purpose
	otherErrs  []*ServerError
	desyncs    []*pb.RoomEvent
	leads      []time.Duration
	sendErr    error
	stopped    bool        // leaving: send nothing more
	progress   chan uint64 // wakes waitTick: a tick was applied
}

func newSimPlayer(name string, delay uint64) *simPlayer {
	return &simPlayer{
		name: name, delay: delay,
		hashes: map[uint64]uint64{}, raws: map[uint64]uint64{}, replaced: map[uint64]bool{}, replacedBy: map[uint64][]uint32{},
		lateErrs: map[uint64]bool{}, deliberate: map[uint64]bool{}, progress: make(chan uint64, 1),
	}
}

func (p *simPlayer) options() Options {
	return Options{
		MaxMessageSize: 4 << 20,
		OnInputSet:     p.onInputSet,
		OnFrame: func(f *FrameView) {
			for _, ev := range f.Events {
				if ev.GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_DESYNC {
					p.mu.Lock()
					p.desyncs = append(p.desyncs, ev)
					p.mu.Unlock()
				}
			}
		},
		OnError: func(e *ServerError) {
			p.mu.Lock()
			defer p.mu.Unlock()
			if e.Code == pb.ErrorCode_ERROR_CODE_INPUT_TOO_LATE && e.Reason == "closed" {
				p.lateErrs[e.InputTick] = true
				return
			}
			p.otherErrs = append(p.otherErrs, e)
		},
	}
}

func (p *simPlayer) onInputSet(s *InputSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first == 0 {
		p.first = s.Tick
	}
	if s.Tick != p.last+1 && p.last != 0 {
		p.sendErr = fmt.Errorf("%s: InputSet %d after %d", p.name, s.Tick, p.last)
	}
	p.last = s.Tick
	p.sim.step(s.Tick, s)
	p.hashes[s.Tick] = p.sim.hash
	h := fnv.New64a()
	h.Write(s.Raw)
	p.raws[s.Tick] = h.Sum64()
	mine := false
	for _, in := range s.Inputs {
		if in.PlayerID == p.id && p.id != 0 {
			mine = true
		}
		if in.Flag == InputReplacedByServer {
			p.replacedBy[s.Tick] = append(p.replacedBy[s.Tick], in.PlayerID)
		}
	}
	if s.HasLead {
		p.leads = append(p.leads, s.Lead)
	}
	if mine && p.sendErr == nil && !p.stopped {
		p.sendAfter(s.Tick)
	}
	// A wake-up for waitTick, which reads p.last itself: when one is
	// pending already, that one will do. (Taking it out to put in a newer
	// one blocked for ever, holding p.mu, when waitTick took it first.)
	select {
	case p.progress <- s.Tick:
	default:
	}
}

// sendAfter sends, on seeing InputSet tick, the input for tick+delay with
// the checksum of tick; one held back on purpose goes out only once its
// tick has closed. p.mu must be held.
func (p *simPlayer) sendAfter(tick uint64) {
	target := tick + p.delay
	var err error
	if p.lateOn != nil && p.lateOn(target) {
		p.deliberate[target] = true
		err = p.c.SendInput(0, nil, InputOptions{ChecksumTick: tick, Checksum: p.hashes[tick]})
	} else {
		err = p.c.SendInput(target, inputFor(p.id, target), InputOptions{ChecksumTick: tick, Checksum: p.hashes[tick]})
	}
	if err == nil && p.deliberate[tick] {
		err = p.c.SendInput(tick, inputFor(p.id, tick), InputOptions{})
	}
	if err != nil && p.sendErr == nil {
		p.sendErr = err
	}
}

// join dials and joins room; it sends the inputs for the first delay
// ticks after the Joined at once (later ones follow each InputSet).
func (p *simPlayer) join(t *testing.T, ctx context.Context, url, room string, opts RoomOptions) *Joined {
	t.Helper()
	c, err := Dial(ctx, url, p.options())
	require.NoError(t, err)
	p.mu.Lock()
	p.c = c
	p.mu.Unlock()
	j, err := c.Join(ctx, JoinOptions{RoomID: room, CreateIfMissing: true, Room: opts})
	require.NoError(t, err)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.id = j.PlayerID
	for tick := j.Tick + 1; tick <= j.Tick+p.delay; tick++ {
		require.NoError(t, c.SendInput(tick, inputFor(j.PlayerID, tick), InputOptions{}))
	}
	// Live InputSets that came before Join returned (the callback did not
	// know its player id yet).
	for tick := j.Tick + 1; tick <= p.last; tick++ {
		p.sendAfter(tick)
	}
	return j
}

// waitTick waits until p has applied tick.
func (p *simPlayer) waitTick(t *testing.T, ctx context.Context, tick uint64) {
	t.Helper()
	for {
		p.mu.Lock()
		last, err := p.last, p.sendErr
		p.mu.Unlock()
		require.NoError(t, err)
		if last >= tick {
			return
		}
		select {
		case <-p.progress:
		case <-p.c.Done():
			t.Fatalf("%s: connection ended at tick %d: %v", p.name, last, p.c.Err())
		case <-ctx.Done():
			t.Fatalf("%s: timed out at tick %d waiting for %d", p.name, last, tick)
		}
	}
}

// TestLockstepDeterministicSimulation runs the reference simulation on
// four clients over real sockets through a proxy that cuts and delays
// every write, for 10,000 ticks at 400 Hz; one player leaves at tick
// 3,000, one joins at 5,000 and catches up from the room's input log, and
// one holds back every 97th input until its tick has closed. Every
// client's hash chain must be the same, every InputSet the same bytes, and
// a player's input must be REPLACED_BY_SERVER exactly at the ticks whose
// input the relay refused as late: the deliberate ones, and any that the
// proxy's pauses (or a loaded machine) made late.
func TestLockstepDeterministicSimulation(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 10,000 ticks in real time")
	}
	t.Parallel()
	const (
		rate    = 400
		end     = 10_000
		leaveAt = 3_000
		joinAt  = 5_000
		delay   = 16 // 40 ms of input delay
	)
	url := startLockstepRelay(t, nil, func(c *splitproxy.Config) {
		c.MaxPause = time.Millisecond
		c.PauseChance = 0.1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := RoomOptions{TickRate: rate, MaxPlayers: 8, Lockstep: &LockstepOptions{}}

	a, b, c, d := newSimPlayer("a", delay), newSimPlayer("b", delay), newSimPlayer("c", delay), newSimPlayer("d", delay)
	c.lateOn = func(t uint64) bool { return t%97 == 0 }
	for _, p := range []*simPlayer{a, b, c, d} {
		p.join(t, ctx, url, "sim", opts)
		defer p.c.Close()
	}

	a.waitTick(t, ctx, leaveAt)
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	require.NoError(t, d.c.Leave(ctx))
	d.mu.Lock()
	dLast := d.last
	d.mu.Unlock()

	a.waitTick(t, ctx, joinAt)
	e := newSimPlayer("e", delay)
	je := e.join(t, ctx, url, "sim", RoomOptions{})
	defer e.c.Close()
	require.NotNil(t, je.Lockstep)
	require.EqualValues(t, 1, je.Lockstep.FirstTick, "the log reaches back to tick 1")
	require.Empty(t, je.Lockstep.Snapshot)

	live := []*simPlayer{a, b, c, e}
	for _, p := range live {
		p.waitTick(t, ctx, end+2*delay) // errors for inputs up to end are in by then
	}
	for _, p := range append(live, d) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for tick, ids := range p.replacedBy {
			if slices.Contains(ids, p.id) {
				p.replaced[tick] = true
			}
		}
		require.NoError(t, p.sendErr)
		require.Empty(t, p.otherErrs, "%s", p.name)
		require.Empty(t, p.desyncs, "%s", p.name)
	}

	// One history: the same InputSet bytes and the same state after every
	// tick, for everyone who saw the tick (d until it left; e from tick 1,
	// through the log).
	for _, p := range []*simPlayer{a, b, c, d, e} {
		require.EqualValues(t, 1, p.first, "%s starts from the log at tick 1", p.name)
	}
	for tick := uint64(1); tick <= end; tick++ {
		for _, p := range []*simPlayer{b, c, d, e} {
			if p == d && tick > dLast {
				continue
			}
			require.Equal(t, a.raws[tick], p.raws[tick], "InputSet %d differs for %s", tick, p.name)
			require.Equal(t, a.hashes[tick], p.hashes[tick], "state after tick %d differs for %s", tick, p.name)
		}
	}

	// Flags match the lateness: a player's input is REPLACED_BY_SERVER at
	// exactly the ticks for which the relay told it INPUT_TOO_LATE.
	for _, p := range []*simPlayer{a, b, c, e} {
		for tick := range p.lateErrs {
			if tick <= end {
				require.True(t, p.replaced[tick], "%s: tick %d refused as late but not replaced", p.name, tick)
			}
		}
		for tick := range p.replaced {
			// Past end the relay's answer to a late input may still be on
			// its way.
			if tick <= end {
				require.True(t, p.lateErrs[tick], "%s: tick %d replaced without a late input", p.name, tick)
			}
		}
	}
	deliberate := 0
	for tick := range c.deliberate {
		if tick <= end {
			deliberate++
			require.True(t, c.replaced[tick], "c: tick %d held back but not replaced", tick)
		}
	}
	require.Greater(t, deliberate, 90)
	late := 0
	for _, p := range []*simPlayer{a, b, e} {
		late += len(p.lateErrs)
	}
	slices.Sort(a.leads)
	t.Logf("%d ticks at %d Hz; deliberate late inputs %d, others late %d (of %d), c late %d; a's lead p50 %v p1 %v",
		end, rate, deliberate, late, 3*end, len(c.lateErrs), a.leads[len(a.leads)/2], a.leads[len(a.leads)/100])
}
