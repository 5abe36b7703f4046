package room_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/room/roomtest"
)

// testRate is the default tick rate of test Managers: 100 ms periods.
const testRate = 10

var testStart = time.Unix(1_700_000_000, 0)

// harness is a Manager on a fake clock with recording peers.
type harness struct {
	t      *testing.T
	m      *room.Manager
	clock  *roomtest.Clock
	period time.Duration
	peers  []*roomtest.Peer
}

func newHarness(t *testing.T, cfg room.Config) *harness {
	t.Helper()
	clock := roomtest.NewClock(testStart)
	cfg.Clock = clock
	if cfg.DefaultTickRate == 0 {
		cfg.DefaultTickRate = testRate
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.SeatGrace == 0 {
		// Most tests are about rooms without resume: a dropped connection
		// leaves at once. Resume tests set a grace.
		cfg.SeatGrace = -1
	}
	m, err := room.New(cfg)
	require.NoError(t, err)
	h := &harness{t: t, m: m, clock: clock, period: time.Second / time.Duration(cfg.DefaultTickRate)}
	t.Cleanup(func() {
		m.Close()
		for i, p := range h.peers {
			require.NoError(t, p.Err(), "peer %d", i)
		}
	})
	return h
}

// seat returns a new seat and its peer.
func (h *harness) seat() (*room.Seat, *roomtest.Peer) {
	p := roomtest.NewPeer(0)
	h.peers = append(h.peers, p)
	return h.m.NewSeat(p), p
}

func (h *harness) sync() {
	h.t.Helper()
	require.NoError(h.t, h.m.Sync())
}

// tick lets exactly one tick of every periodic room at the default rate
// run (deadlines are one period apart), with everything queued before it.
func (h *harness) tick() {
	h.t.Helper()
	h.sync()
	h.clock.Advance(h.period)
	h.sync()
}

// join joins roomID (creating it if asked) and returns the Joined.
func (h *harness) join(s *room.Seat, p *roomtest.Peer, j *pb.Join) *pb.Joined {
	h.t.Helper()
	require.NoError(h.t, h.m.Join(s, room.JoinRequest{RequestID: 77, Join: j}))
	h.sync()
	msgs := p.Take()
	require.NotEmpty(h.t, msgs)
	last := msgs[len(msgs)-1]
	require.NotNil(h.t, last.GetJoined(), "want Joined, got %v", last)
	require.EqualValues(h.t, 77, last.GetRequestId())
	return last.GetJoined()
}

// member is a seat in a room, for tests.
type member struct {
	s  *room.Seat
	p  *roomtest.Peer
	id uint32
}

// room creates (or joins) roomID with n new members and drops their
// Joined and presence messages (after one tick).
func (h *harness) room(id string, n int, opts *pb.RoomOptions) []member {
	h.t.Helper()
	ms := make([]member, n)
	for i := range ms {
		s, p := h.seat()
		j := h.join(s, p, &pb.Join{RoomId: id, CreateIfMissing: true, Options: opts})
		ms[i] = member{s: s, p: p, id: j.GetPlayerId()}
	}
	h.tick()
	for _, m := range ms {
		m.p.Take()
	}
	return ms
}

func (h *harness) send(m member, v wire.SendView) {
	h.t.Helper()
	require.NoError(h.t, h.m.Send(m.s, 0, &v))
}

// frames returns the frames among msgs, failing on anything else.
func frames(t *testing.T, msgs []*pb.ServerMessage) []*pb.Frame {
	t.Helper()
	var fs []*pb.Frame
	for _, m := range msgs {
		require.NotNil(t, m.GetFrame(), "want a Frame, got %v", m)
		fs = append(fs, m.GetFrame())
	}
	return fs
}

// deliveries flattens the deliveries of frames.
func deliveries(fs []*pb.Frame) []*pb.Delivery {
	var ds []*pb.Delivery
	for _, f := range fs {
		ds = append(ds, f.GetDeliveries()...)
	}
	return ds
}

// payloads returns the payloads of ds as strings.
func payloads(ds []*pb.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.GetPayload())
	}
	return out
}

// events flattens the events of frames.
func events(fs []*pb.Frame) []*pb.RoomEvent {
	var es []*pb.RoomEvent
	for _, f := range fs {
		es = append(es, f.GetEvents()...)
	}
	return es
}

func text(s string) wire.SendView { return wire.SendView{Payload: []byte(s), Kind: 1} }
