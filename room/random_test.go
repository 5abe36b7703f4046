package room_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/room/roomtest"
)

// TestRandomised runs long random sequences of joins, leaves, disconnects,
// sends (all/targets/echo, normal and latest-only) and ticks against a model,
// then checks that every message reached exactly the members of its room at
// the time it was routed, exactly once, in per-sender order.
//
// The model is exact because one goroutine drives every seat: a room's
// commands all go through its worker's FIFO inbox, so the worker processes
// them in call order and membership at routing time is the model's
// membership at call time. Every periodic room ticks exactly once per
// advance of one period, so the model also knows the latest-only windows.
func TestRandomised(t *testing.T) {
	t.Parallel()
	ops := 4000
	if testing.Short() {
		ops = 800
	}
	for _, seed := range []uint64{1, 2, 3, 4, 5, 6} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			defer func() {
				if t.Failed() {
					t.Logf("failed with seed %d (ops %d)", seed, ops)
				}
			}()
			newSim(t, seed).run(ops)
		})
	}
}

const (
	cIdle    = iota
	cIn      // member in the model (its join may not be processed yet)
	cFailing // its join will fail; the real state may still be joining
	cLeaving // its Leave may not be processed yet
)

type conn struct {
	id    int
	s     *room.Seat
	p     *roomtest.Peer
	state int
	room  *simRoom
	pid   uint32
	dead  bool
	reqID uint32
	// replies expected, by request id.
	want map[uint32]reply
}

type reply struct {
	kind string // "joined", "left", "error"
	code pb.ErrorCode
	pid  uint32
	room string
}

type simRoom struct {
	id        string
	life      int
	members   []*conn
	lastPID   uint32
	max       int
	immediate bool
}

type sentMsg struct {
	from      *conn
	fromPID   uint32
	life      int
	kind      uint32
	latest    bool
	window    int
	immediate bool
	intended  map[*conn]bool
}

type sim struct {
	t      *testing.T
	h      *harness
	rng    *rand.Rand
	conns  []*conn // current connections, one per slot
	all    []*conn
	rooms  map[string]*simRoom
	lives  int
	msgs   []*sentMsg
	window int
}

func newSim(t *testing.T, seed uint64) *sim {
	h := newHarness(t, room.Config{Workers: 3, AllowImmediate: true})
	s := &sim{t: t, h: h, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), rooms: map[string]*simRoom{}}
	for range 14 {
		s.conns = append(s.conns, s.newConn())
	}
	return s
}

func (s *sim) newConn() *conn {
	seat, p := s.h.seat()
	c := &conn{id: len(s.all), s: seat, p: p, want: map[uint32]reply{}}
	s.all = append(s.all, c)
	return c
}

func (s *sim) run(ops int) {
	for range ops {
		c := s.conns[s.rng.IntN(len(s.conns))]
		switch x := s.rng.IntN(100); {
		case x < 15:
			s.join(c)
		case x < 22:
			s.leave(c)
		case x < 25:
			s.disconnect(c)
		case x < 33:
			s.h.tick()
			s.window++
		default:
			s.send(c)
		}
	}
	s.h.tick()
	s.h.tick()
	s.verify()
}

func (s *sim) join(c *conn) {
	t := s.t
	id := fmt.Sprint("r", s.rng.IntN(5))
	create := s.rng.IntN(10) < 8
	opts := &pb.RoomOptions{MaxPlayers: uint32(2 + s.rng.IntN(5)), Immediate: s.rng.IntN(10) < 3}
	c.reqID++
	req := room.JoinRequest{RequestID: c.reqID, Join: &pb.Join{RoomId: id, CreateIfMissing: create, Options: opts}}
	err := s.h.m.Join(c.s, req)
	if errors.Is(err, room.ErrSeatBusy) && (c.state == cFailing || c.state == cLeaving) {
		s.h.sync() // let the worker finish the failed join or the leave
		err = s.h.m.Join(c.s, req)
	}
	if c.state == cIn {
		if errors.Is(err, room.ErrSeatBusy) {
			s.h.sync() // its join is not processed yet
			err = s.h.m.Join(c.s, req)
		}
		require.ErrorIs(t, err, room.ErrAlreadyInRoom)
		return
	}
	require.NoError(t, err)
	r := s.rooms[id]
	switch {
	case r == nil && !create:
		c.want[c.reqID] = reply{kind: "error", code: pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND}
		c.state = cFailing
		return
	case r == nil:
		s.lives++
		r = &simRoom{id: id, life: s.lives, max: int(opts.MaxPlayers), immediate: opts.Immediate}
		s.rooms[id] = r
	case len(r.members) >= r.max:
		c.want[c.reqID] = reply{kind: "error", code: pb.ErrorCode_ERROR_CODE_ROOM_FULL}
		c.state = cFailing
		return
	}
	r.lastPID++
	r.members = append(r.members, c)
	c.state, c.room, c.pid = cIn, r, r.lastPID
	c.want[c.reqID] = reply{kind: "joined", pid: c.pid, room: id}
}

// removeFromRoom updates the model for c leaving its room.
func (s *sim) removeFromRoom(c *conn) {
	r := c.room
	for i, m := range r.members {
		if m == c {
			r.members = append(r.members[:i], r.members[i+1:]...)
			break
		}
	}
	if len(r.members) == 0 {
		delete(s.rooms, r.id)
	}
	c.room = nil
}

func (s *sim) leave(c *conn) {
	c.reqID++
	err := s.h.m.Leave(c.s, c.reqID)
	switch c.state {
	case cIn:
		require.NoError(s.t, err)
		c.want[c.reqID] = reply{kind: "left", room: c.room.id}
		s.removeFromRoom(c)
		c.state = cLeaving
	case cFailing:
		if err == nil { // reached the worker while still joining
			c.want[c.reqID] = reply{kind: "error", code: pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM}
			c.state = cLeaving
		} else {
			require.ErrorIs(s.t, err, room.ErrNotInRoom)
		}
	default:
		require.ErrorIs(s.t, err, room.ErrNotInRoom)
	}
}

func (s *sim) disconnect(c *conn) {
	s.h.m.Disconnect(c.s)
	c.dead = true
	if c.state == cIn {
		s.removeFromRoom(c)
	}
	for i := range s.conns {
		if s.conns[i] == c {
			s.conns[i] = s.newConn()
		}
	}
}

func (s *sim) send(c *conn) {
	c.reqID++
	id := uint32(len(s.msgs))
	var payload [4]byte
	binary.LittleEndian.PutUint32(payload[:], id)
	v := wire.SendView{
		Payload:    payload[:],
		Kind:       uint32(1 + s.rng.IntN(3)),
		Echo:       s.rng.IntN(6) == 0,
		LatestOnly: s.rng.IntN(4) == 0,
	}
	if c.state == cIn && s.rng.IntN(3) == 0 {
		for range s.rng.IntN(5) {
			switch x := s.rng.IntN(10); {
			case x < 7:
				v.Targets = append(v.Targets, c.room.members[s.rng.IntN(len(c.room.members))].pid)
			case x < 9:
				v.Targets = append(v.Targets, 500+uint32(s.rng.IntN(5))) // not a member
			default:
				v.Targets = append(v.Targets, c.pid)
			}
		}
	}
	err := s.h.m.Send(c.s, c.reqID, &v)
	switch c.state {
	case cIn:
	case cFailing:
		if err == nil {
			c.want[c.reqID] = reply{kind: "error", code: pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM}
		} else {
			require.ErrorIs(s.t, err, room.ErrNotInRoom)
		}
		return
	default:
		require.ErrorIs(s.t, err, room.ErrNotInRoom)
		return
	}
	require.NoError(s.t, err)
	m := &sentMsg{from: c, fromPID: c.pid, life: c.room.life, kind: v.Kind, latest: v.LatestOnly,
		window: s.window, immediate: c.room.immediate, intended: map[*conn]bool{}}
	if len(v.Targets) == 0 && len(payload) > 0 && !targetsGiven(v) {
		for _, to := range c.room.members {
			if to != c {
				m.intended[to] = true
			}
		}
	}
	for _, pid := range v.Targets {
		for _, to := range c.room.members {
			if to.pid == pid && to != c {
				m.intended[to] = true
			}
		}
	}
	if v.Echo {
		m.intended[c] = true
	}
	// Mutating Targets after Send must not matter: Send copies.
	for i := range v.Targets {
		v.Targets[i] = 0
	}
	payload[0] ^= 0xff
	s.msgs = append(s.msgs, m)
}

func targetsGiven(v wire.SendView) bool { return len(v.Targets) > 0 }

// superseded reports whether a later latest-only message of the same
// sender membership and kind, addressed to c, makes m droppable for c.
// exact: only in the same window (periodic rooms, where windows are known).
func (s *sim) superseded(i int, c *conn, exact bool) bool {
	m := s.msgs[i]
	for _, n := range s.msgs[i+1:] {
		if n.latest && n.life == m.life && n.fromPID == m.fromPID && n.kind == m.kind && n.intended[c] &&
			(!exact || n.window == m.window) {
			return true
		}
	}
	return false
}

func (s *sim) verify() {
	t := s.t
	received := make(map[*conn]map[uint32]bool)
	for _, c := range s.all {
		require.NoError(t, c.p.Err())
		got := map[uint32]bool{}
		received[c] = got
		lastFrom := map[*conn]uint32{}
		replies := map[uint32]int{}
		for _, msg := range c.p.Messages() {
			if f := msg.GetFrame(); f != nil {
				for _, d := range f.GetDeliveries() {
					require.Len(t, d.GetPayload(), 4)
					id := binary.LittleEndian.Uint32(d.GetPayload())
					require.Less(t, int(id), len(s.msgs))
					m := s.msgs[id]
					require.True(t, m.intended[c], "conn %d got message %d not addressed to it", c.id, id)
					require.False(t, got[id], "conn %d got message %d twice", c.id, id)
					require.Equal(t, m.fromPID, d.GetSender())
					require.Equal(t, m.kind, d.GetKind())
					if last, ok := lastFrom[m.from]; ok {
						require.Greater(t, id, last, "conn %d: per-sender order from conn %d", c.id, m.from.id)
					}
					lastFrom[m.from] = id
					got[id] = true
				}
				continue
			}
			rid := msg.GetRequestId()
			want, ok := c.want[rid]
			require.True(t, ok, "conn %d: unexpected reply %v", c.id, msg)
			replies[rid]++
			switch want.kind {
			case "joined":
				require.Equal(t, want.pid, msg.GetJoined().GetPlayerId(), "conn %d req %d: %v", c.id, rid, msg)
				require.Equal(t, want.room, msg.GetJoined().GetRoomId())
			case "left":
				require.Equal(t, want.room, msg.GetLeft().GetRoomId(), "conn %d req %d: %v", c.id, rid, msg)
				require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, msg.GetLeft().GetReason())
			case "error":
				require.Equal(t, want.code, msg.GetError().GetCode(), "conn %d req %d: %v", c.id, rid, msg)
			}
		}
		for rid := range c.want {
			if !c.dead {
				require.Equal(t, 1, replies[rid], "conn %d: replies to request %d", c.id, rid)
			} else {
				require.LessOrEqual(t, replies[rid], 1)
			}
		}
	}
	delivered := 0
	for i, m := range s.msgs {
		for c := range m.intended {
			if received[c][uint32(i)] {
				delivered++
				continue
			}
			if c.dead {
				continue // dropped with the connection
			}
			if m.latest && s.superseded(i, c, !m.immediate) {
				continue
			}
			require.Fail(t, "message lost", "message %d from conn %d (latest %v, immediate %v) never reached conn %d",
				i, m.from.id, m.latest, m.immediate, c.id)
		}
	}
	require.Positive(t, delivered)
	st := s.h.m.Stats()
	require.EqualValues(t, len(s.msgs), st.MessagesIn)
	// Frames built for a seat an instant before its Disconnect count as
	// deliveries but are dropped, so the counter may exceed what live
	// peers received.
	require.GreaterOrEqual(t, st.Deliveries, uint64(delivered))
}
