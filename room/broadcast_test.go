package room

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// bytesPeer records what it is delivered: every Frame byte for byte, other
// messages by type (a Joined carries a random resume token).
type bytesPeer struct {
	got       []string
	congested bool
	// congestAfter, when positive, counts down the deliveries after which
	// the peer turns congested (between the frames of one tick).
	congestAfter int
	evicted      []EvictCause
}

func (p *bytesPeer) Deliver(o *Outbound) {
	var msg pb.ServerMessage
	if err := proto.Unmarshal(o.Bytes(), &msg); err != nil {
		p.got = append(p.got, "undecodable: "+err.Error())
	} else if msg.GetFrame() != nil {
		p.got = append(p.got, fmt.Sprintf("frame %x", o.Bytes()))
	} else {
		p.got = append(p.got, fmt.Sprintf("%T", msg.GetBody()))
	}
	o.Release()
	if p.congestAfter > 0 {
		if p.congestAfter--; p.congestAfter == 0 {
			p.congested = true
		}
	}
}
func (p *bytesPeer) Congested() bool                   { return p.congested }
func (p *bytesPeer) Evict(c EvictCause, _ string)      { p.evicted = append(p.evicted, c) }
func (p *bytesPeer) Ready()                            {}
func (p *bytesPeer) JoinRefused(pb.ErrorCode)          {}
func (p *bytesPeer) Address() netip.Addr               { return netip.Addr{} }
func (p *bytesPeer) take() []string                    { g := p.got; p.got = nil; return g }
func (c *stepClock) NewTimer(time.Duration) Timer      { return benchTimer{} }
func (c *stepClock) Now() time.Time                    { return c.t }
func (w *bcastWorld) seatOf(i int) (*Seat, *bytesPeer) { return w.seats[i], w.peers[i] }

type stepClock struct{ t time.Time }

// bcastWorld is one Manager driven by hand on the test goroutine (no
// worker goroutine): commands go through the inbox, drain and step
// process them, the clock moves only when told.
type bcastWorld struct {
	m     *Manager
	w     *worker
	clock *stepClock
	seats []*Seat
	peers []*bytesPeer
}

func newBcastWorld(t *testing.T, cfg Config, perMember bool) *bcastWorld {
	clock := &stepClock{t: time.Unix(1_700_000_000, 0)}
	cfg.Clock = clock
	m, err := newManager(cfg)
	require.NoError(t, err)
	w := m.workers[0]
	w.perMemberRoute = perMember
	return &bcastWorld{m: m, w: w, clock: clock}
}

func (bw *bcastWorld) newSeat() {
	p := &bytesPeer{}
	bw.peers = append(bw.peers, p)
	bw.seats = append(bw.seats, bw.m.NewSeat(p))
}

// TestBroadcastLogMatchesPerMemberRouting runs long random sequences of
// joins, leaves, disconnects (seats kept for a resume), broadcasts and
// targeted sends (echo, latest-only), congestion and ticks, in small
// frames (so that ticks split), against two Managers: one with the room's
// broadcast log, one routing every broadcast into every recipient's
// pending list as the relay did before the log. Every message delivered,
// every frame kept for replay and every counter must be the same, byte
// for byte.
func TestBroadcastLogMatchesPerMemberRouting(t *testing.T) {
	t.Parallel()
	ops := 3000
	if testing.Short() {
		ops = 600
	}
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			runBcastDiff(t, seed, ops)
		})
	}
}

func runBcastDiff(t *testing.T, seed uint64, ops int) {
	rng := rand.New(rand.NewPCG(seed, 17))
	cfg := Config{
		Workers:            1,
		MaxFrameBytes:      minFrameBytesLimit,
		MaxBacklogBytes:    6 << 10,
		SenderTickMessages: 1 << 10,
		SenderTickBytes:    64 << 10,
		AllowImmediate:     true,
		KeepAliveInterval:  300 * time.Millisecond,
		ReplayBytesPerSeat: 8 << 10,
	}
	if seed%2 == 0 {
		cfg.SeatGrace = time.Second
	} else {
		cfg.SeatGrace = -1
	}
	worlds := []*bcastWorld{newBcastWorld(t, cfg, false), newBcastWorld(t, cfg, true)}
	rooms := []string{"r", "s"}
	type seatInfo struct{ gone bool }
	var seats []seatInfo
	period := time.Second / time.Duration(worlds[0].m.cfg.DefaultTickRate)
	payload := make([]byte, 400)
	for i := range payload {
		payload[i] = byte(i)
	}
	each := func(f func(bw *bcastWorld) error) {
		var errs []string
		for _, bw := range worlds {
			err := f(bw)
			errs = append(errs, fmt.Sprint(err))
		}
		require.Equal(t, errs[0], errs[1])
	}
	for op := range ops {
		live := []int{}
		for i, s := range seats {
			if !s.gone {
				live = append(live, i)
			}
		}
		switch k := rng.IntN(100); {
		case k < 6 || len(live) < 2:
			// A new seat joins a room (the second one immediate).
			id := rooms[rng.IntN(len(rooms))]
			seats = append(seats, seatInfo{})
			each(func(bw *bcastWorld) error {
				bw.newSeat()
				s, _ := bw.seatOf(len(bw.seats) - 1)
				return bw.m.Join(s, JoinRequest{RequestID: 1, Join: &pb.Join{
					RoomId: id, CreateIfMissing: true,
					Options: &pb.RoomOptions{Immediate: id == "s"},
				}})
			})
		case k < 8:
			i := live[rng.IntN(len(live))]
			seats[i].gone = true
			each(func(bw *bcastWorld) error { return bw.m.Leave(bw.seats[i], 2) })
		case k < 10:
			i := live[rng.IntN(len(live))]
			seats[i].gone = true
			each(func(bw *bcastWorld) error { bw.m.Disconnect(bw.seats[i]); return nil })
		case k < 16:
			i := live[rng.IntN(len(live))]
			on := rng.IntN(2) == 0
			after := 0
			if !on && rng.IntN(2) == 0 {
				after = 1 + rng.IntN(3)
			}
			each(func(bw *bcastWorld) error {
				bw.peers[i].congested, bw.peers[i].congestAfter = on, after
				return nil
			})
		case k < 26:
			// What the worker does when its inbox wakes it: process the
			// batch, run the ticks due, flush the immediate rooms.
			each(func(bw *bcastWorld) error { bw.w.step(); return nil })
		case k < 36:
			each(func(bw *bcastWorld) error {
				bw.clock.t = bw.clock.t.Add(period)
				bw.w.step()
				return nil
			})
		default:
			i := live[rng.IntN(len(live))]
			v := wire.SendView{
				Payload:    payload[:1+rng.IntN(rng.IntN(len(payload))+1)],
				Kind:       uint32(1 + rng.IntN(3)),
				Echo:       rng.IntN(4) == 0,
				LatestOnly: rng.IntN(3) == 0,
			}
			if rng.IntN(3) == 0 {
				for range 1 + rng.IntN(4) {
					v.Targets = append(v.Targets, uint32(1+rng.IntN(len(seats)+2)))
				}
			}
			each(func(bw *bcastWorld) error { return bw.m.Send(bw.seats[i], uint32(op), &v) })
		}
		for i := range seats {
			a, b := worlds[0].peers[i].take(), worlds[1].peers[i].take()
			require.Equal(t, b, a, "seed %d op %d seat %d: delivered", seed, op, i)
			require.Equal(t, worlds[1].peers[i].evicted, worlds[0].peers[i].evicted, "seat %d evicted", i)
		}
		require.Equal(t, worlds[1].w.count, worlds[0].w.count, "seed %d op %d: counters", seed, op)
	}
	// The frames kept for replay.
	for id, ra := range worlds[0].w.rooms {
		rb := worlds[1].w.rooms[id]
		require.NotNil(t, rb)
		require.Equal(t, len(rb.members), len(ra.members))
		require.Equal(t, rb.deliveries, ra.deliveries)
		for j, ma := range ra.members {
			mb := rb.members[j]
			require.Equal(t, mb.ring.len(), ma.ring.len())
			for k := range ma.ring.len() {
				require.Equal(t, mb.ring.at(k).Bytes(), ma.ring.at(k).Bytes())
			}
		}
	}
	for _, bw := range worlds {
		bw.clock.t = bw.clock.t.Add(period)
		bw.w.step()
		for _, r := range bw.w.rooms {
			require.Empty(t, r.bcast, "the log of room %s is empty after a tick", r.id)
		}
	}
}
