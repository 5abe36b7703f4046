package refrelay

import (
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// room is one room: its members and the deliveries routed since the last
// tick.
type room struct {
	id         string
	maxPlayers int

	mu         sync.Mutex // guards the fields below
	members    []member
	nextPlayer uint32
	closed     bool     // empty and removed from the registry
	recs       []byte   // Delivery records (wire.AppendDelivery) of this tick
	index      []record // one per record, in routing order
}

// member is one player; from is the first record of the current tick
// routed after it joined (it receives none before).
type member struct {
	c      *conn
	player uint32
	from   int
}

// record locates one Delivery record in room.recs.
type record struct {
	start, end int
	sender     uint32
}

// add appends a delivery to the tick buffer, once for all recipients;
// false when the buffer is full.
func (r *room) add(sender, kind uint32, payload []byte, limit int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs)+wire.DeliverySize(sender, kind, len(payload)) > limit {
		return false
	}
	start := len(r.recs)
	r.recs = wire.AppendDelivery(r.recs, sender, kind, payload)
	r.index = append(r.index, record{start: start, end: len(r.recs), sender: sender})
	return true
}

// validRoomID: 1-64 bytes of [A-Za-z0-9_.:-], as the protocol says.
func validRoomID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '.' || ch == ':' || ch == '-') {
			return false
		}
	}
	return true
}

// join handles a Join on c's loop.
func (s *Server) join(c *conn, requestID uint32, j *pb.Join) {
	fail := func(code pb.ErrorCode, msg string) { c.sendError(requestID, code, msg) }
	opts := j.GetOptions()
	switch {
	case c.room != nil:
		fail(pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM, "already in a room")
		return
	case !validRoomID(j.GetRoomId()):
		fail(pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "the reference relay needs a room id of 1-64 bytes of [A-Za-z0-9_.:-]")
		return
	case opts.GetImmediate():
		fail(pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "the reference relay has no immediate rooms")
		return
	case opts.GetTickRate() != 0 && int(opts.GetTickRate()) != s.cfg.TickRate:
		fail(pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "the reference relay ticks every room at its own rate")
		return
	case int(opts.GetMaxPlayers()) > s.cfg.MaxPlayersPerRoom:
		fail(pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "max_players above the server's limit")
		return
	}
	for {
		s.mu.Lock()
		r := s.rooms[j.GetRoomId()]
		if r == nil {
			if !j.GetCreateIfMissing() {
				s.mu.Unlock()
				fail(pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, "no such room")
				return
			}
			maxPlayers := int(opts.GetMaxPlayers())
			if maxPlayers == 0 {
				maxPlayers = s.cfg.DefaultMaxPlayers
			}
			r = &room{id: j.GetRoomId(), maxPlayers: maxPlayers}
			s.rooms[r.id] = r
			s.publishRoomsLocked()
		}
		s.mu.Unlock()

		r.mu.Lock()
		if r.closed { // emptied and removed meanwhile: look again
			r.mu.Unlock()
			continue
		}
		if len(r.members) >= r.maxPlayers {
			r.mu.Unlock()
			fail(pb.ErrorCode_ERROR_CODE_ROOM_FULL, "room full")
			return
		}
		r.nextPlayer++
		player := r.nextPlayer
		r.members = append(r.members, member{c: c, player: player, from: len(r.index)})
		joined := &pb.Joined{RoomId: r.id, PlayerId: player, HostId: r.members[0].player,
			TickRate: uint32(s.cfg.TickRate), Tick: s.tick.Load(), MaxPlayers: uint32(r.maxPlayers)}
		for _, m := range r.members {
			joined.Members = append(joined.Members, &pb.Member{PlayerId: m.player})
		}
		c.room, c.player = r, player
		r.mu.Unlock()
		c.reply(&pb.ServerMessage{RequestId: requestID, Body: &pb.ServerMessage_Joined{Joined: joined}})
		return
	}
}

// leave takes c out of its room; an empty room is removed.
func (s *Server) leave(c *conn) {
	r := c.room
	c.room, c.player = nil, 0
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.members {
		if r.members[i].c == c {
			r.members = append(r.members[:i], r.members[i+1:]...)
			break
		}
	}
	if len(r.members) == 0 && !r.closed {
		r.closed = true
		delete(s.rooms, r.id)
		s.publishRoomsLocked()
	}
}

// publishRoomsLocked gives the ticker a fresh list of the rooms. s.mu must
// be held.
func (s *Server) publishRoomsLocked() {
	list := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		list = append(list, r)
	}
	s.roomList.Store(&list)
}

// frame is a pooled buffer holding one WebSocket frame.
type frame struct{ b []byte }

// tickState is the ticker goroutine's reusable state.
type tickState struct {
	next    time.Time
	members []member // snapshot of one room's members
	recs    []byte   // the room's records, swapped out of the room
	index   []record
	w       appender // header writer (a heap-resident io.Writer: no allocation per frame)
}

// runTick sends every room its tick: for each member with something to
// receive, one frame holding every delivery routed since the last tick,
// except its own.
func (s *Server) runTick(tick uint64) {
	t := &s.ticker
	for _, r := range *s.roomList.Load() {
		r.mu.Lock()
		if len(r.index) == 0 {
			r.mu.Unlock()
			continue // nothing routed: idle rooms cost one lock
		}
		// Swap the tick's records out, so that the loops can route into
		// the other buffer while the frames are built.
		r.recs, t.recs = t.recs[:0], r.recs
		r.index, t.index = t.index[:0], r.index
		t.members = append(t.members[:0], r.members...)
		for i := range r.members {
			r.members[i].from = 0
		}
		r.mu.Unlock()
		for _, m := range t.members {
			s.sendFrame(m, tick)
		}
	}
	clear(t.members) // no references to closed connections
}

// sendFrame builds m's frame of the tick and hands it to gnet.
func (s *Server) sendFrame(m member, tick uint64) {
	t := &s.ticker
	c := m.c
	if c.gone.Load() || c.kicked.Load() {
		return
	}
	size := 0
	for _, rec := range t.index[m.from:] {
		if rec.sender != m.player {
			size += rec.end - rec.start
		}
	}
	if size == 0 {
		return
	}
	f := s.frames.Get().(*frame)
	b := t.w.header(f.b[:0], ws.OpBinary, wire.FrameSize(tick, 0, size))
	b = wire.AppendFrameStart(b, tick, 0, size)
	// Copy runs of consecutive records from others at once.
	run := -1
	for i, rec := range t.index[m.from:] {
		switch {
		case rec.sender != m.player && run < 0:
			run = t.index[m.from+i].start
		case rec.sender == m.player && run >= 0:
			b = append(b, t.recs[run:rec.start]...)
			run = -1
		}
	}
	if run >= 0 {
		b = append(b, t.recs[run:]...)
	}
	f.b = b
	if c.inflight == nil {
		c.inflight = make(chan *frame, s.cfg.MaxPendingFrames)
		c.written = c.onWritten
	}
	select {
	case c.inflight <- f:
	default:
		// The loop has not written this connection's last frames: it is
		// hopelessly behind.
		s.frames.Put(f)
		if !c.kicked.Swap(true) {
			body := ws.NewCloseFrameBody(closeSlowConsumer, "slow consumer")
			closeFrame := append(t.w.header(nil, ws.OpClose, len(body)), body...)
			_ = c.gc.AsyncWrite(closeFrame, func(gc gnet.Conn, _ error) error { return gc.Close() })
		}
		return
	}
	if err := c.gc.AsyncWrite(f.b, c.written); err != nil {
		// The task was not queued, so its callback will not run; the
		// frame stays in inflight (never reused) and the connection is
		// given up.
		c.kicked.Store(true)
		_ = c.gc.Close()
	}
}

// appender writes server frame headers with gobwas's header writer into
// a byte slice. Not goroutine-safe: the ticker owns one, the loops take
// theirs from a pool; both live on the heap, so that handing one to the
// io.Writer does not allocate.
type appender struct {
	b       []byte
	scratch [ws.MaxHeaderSize]byte
}

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

// header appends a final, unmasked frame header for a payload of n bytes
// to dst.
func (a *appender) header(dst []byte, op ws.OpCode, n int) []byte {
	a.b = dst
	_ = ws.WriteHeaderBuffer(a, ws.Header{Fin: true, OpCode: op, Length: int64(n)}, a.scratch[:])
	dst, a.b = a.b, nil
	return dst
}
