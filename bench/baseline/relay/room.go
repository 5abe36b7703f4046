package relay

import (
	"maps"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// room is one game room. Membership changes happen with Server.mu and
// room.mu both held (in that order), so that a room emptied by its last
// member can be removed from the map without racing a joiner; relaying and
// ticking take only room.mu.
type room struct {
	id         string
	maxPlayers int
	tickRate   int // zero: immediate mode
	metadata   map[string]string
	stop       chan struct{} // closed when the room is removed; ends the ticker goroutine

	mu      sync.Mutex // guards the fields below
	members []*member  // oldest first; members[0] is the host
	nextID  uint32
	tick    uint64
}

// member is one player of a room. Its fields are guarded by the room's mu.
type member struct {
	id       uint32
	c        *conn
	metadata map[string]string
	// Tick mode only: what the next tick's Frame for this player carries.
	pending []*pb.Delivery
	events  []*pb.RoomEvent
}

// Server-made room codes use the protocol's alphabet, without look-alike
// characters (0/O, 1/I/L).
const codeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

func validRoomID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9':
		case ch == '_' || ch == '.' || ch == ':' || ch == '-':
		default:
			return false
		}
	}
	return true
}

// newRoomLocked creates and registers a room. s.mu must be held.
func (s *Server) newRoomLocked(id string, opts *pb.RoomOptions) (*room, pb.ErrorCode, string) {
	maxPlayers := int(opts.GetMaxPlayers())
	if maxPlayers == 0 {
		maxPlayers = s.cfg.DefaultMaxPlayers
	}
	if maxPlayers > s.cfg.MaxPlayersPerRoom {
		return nil, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "max_players above the server limit"
	}
	rate := s.cfg.TickRate
	if opts.GetTickRate() != 0 {
		rate = int(opts.GetTickRate())
	}
	if rate > s.cfg.MaxTickRate {
		return nil, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "tick_rate above the server limit"
	}
	if opts.GetImmediate() {
		rate = 0
	}
	if id == "" {
		for {
			b := make([]byte, 6)
			for i := range b {
				b[i] = codeAlphabet[rand.IntN(len(codeAlphabet))]
			}
			if _, taken := s.rooms[string(b)]; !taken {
				id = string(b)
				break
			}
		}
	}
	r := &room{
		id:         id,
		maxPlayers: maxPlayers,
		tickRate:   rate,
		metadata:   maps.Clone(opts.GetMetadata()),
		stop:       make(chan struct{}),
	}
	s.rooms[id] = r
	if rate > 0 {
		s.wg.Add(1)
		go r.run(s)
	}
	return r, 0, ""
}

// join handles a Join from c, which is in no room.
func (s *Server) join(c *conn, requestID uint32, j *pb.Join) {
	id := j.GetRoomId()
	if id != "" && !validRoomID(id) {
		c.sendError(requestID, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, "invalid room id")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[id]
	if r == nil {
		if id != "" && !j.GetCreateIfMissing() {
			c.sendError(requestID, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, "no such room")
			return
		}
		var code pb.ErrorCode
		var text string
		if r, code, text = s.newRoomLocked(id, j.GetOptions()); r == nil {
			c.sendError(requestID, code, text)
			return
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.members) >= r.maxPlayers {
		c.sendError(requestID, pb.ErrorCode_ERROR_CODE_ROOM_FULL, "room full")
		return
	}
	r.nextID++
	m := &member{id: r.nextID, c: c, metadata: maps.Clone(j.GetPlayerMetadata())}
	r.members = append(r.members, m)
	c.room, c.member = r, m

	joined := &pb.Joined{
		RoomId:       r.id,
		PlayerId:     m.id,
		HostId:       r.members[0].id,
		TickRate:     uint32(r.tickRate),
		Tick:         r.tick,
		MaxPlayers:   uint32(r.maxPlayers),
		RoomMetadata: r.metadata,
		Immediate:    r.tickRate == 0,
	}
	for _, o := range r.members {
		joined.Members = append(joined.Members, &pb.Member{PlayerId: o.id, Metadata: o.metadata})
	}
	// Joined is queued under the room lock, so it reaches the player before
	// any frame of the room.
	c.sendMessage(&pb.ServerMessage{RequestId: requestID, Body: &pb.ServerMessage_Joined{Joined: joined}})
	r.eventLocked(&pb.RoomEvent{
		Type:     pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED,
		PlayerId: m.id,
		Metadata: m.metadata,
	}, m)
}

// leave removes c's player from its room, telling the others why.
func (s *Server) leave(c *conn, reason pb.LeaveReason) {
	r, m := c.room, c.member
	c.room, c.member = nil, nil
	s.mu.Lock()
	defer s.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	wasHost := r.members[0] == m
	for i, o := range r.members {
		if o == m {
			r.members = append(r.members[:i], r.members[i+1:]...)
			break
		}
	}
	if len(r.members) == 0 {
		delete(s.rooms, r.id)
		close(r.stop)
		return
	}
	r.eventLocked(&pb.RoomEvent{
		Type:     pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT,
		PlayerId: m.id,
		Reason:   reason,
	}, nil)
	if wasHost {
		r.eventLocked(&pb.RoomEvent{
			Type:     pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED,
			PlayerId: r.members[0].id,
		}, nil)
	}
}

// eventLocked tells every member except skip about ev: at once in immediate
// mode, at the next tick otherwise. r.mu must be held.
func (r *room) eventLocked(ev *pb.RoomEvent, skip *member) {
	if r.tickRate == 0 {
		r.tick++
		b, err := proto.Marshal(&pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{
			Tick:   r.tick,
			Events: []*pb.RoomEvent{ev},
		}}})
		if err != nil {
			return
		}
		for _, o := range r.members {
			if o != skip {
				o.c.enqueue(b)
			}
		}
		return
	}
	for _, o := range r.members {
		if o != skip {
			o.events = append(o.events, ev)
		}
	}
}

// relay routes one Send from member from.
func (r *room) relay(from *member, s *pb.Send) {
	d := &pb.Delivery{Sender: from.id, Kind: s.GetKind(), Payload: s.GetPayload()}
	targets := s.GetTargets()
	echo := s.GetEcho()
	// latest_only is treated as a normal message: the baseline keeps no
	// per-sender conflation state.

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tickRate == 0 {
		// Immediate mode: one Frame per message, encoded once and shared by
		// every recipient.
		r.tick++
		b, err := proto.Marshal(&pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{
			Tick:       r.tick,
			Deliveries: []*pb.Delivery{d},
		}}})
		if err != nil {
			return
		}
		for _, o := range r.members {
			if recipient(o, from, targets, echo) {
				o.c.enqueue(b)
			}
		}
		return
	}
	for _, o := range r.members {
		if recipient(o, from, targets, echo) {
			o.pending = append(o.pending, d)
		}
	}
}

func recipient(o, from *member, targets []uint32, echo bool) bool {
	if o == from {
		return echo
	}
	if len(targets) == 0 {
		return true
	}
	for _, t := range targets {
		if t == o.id {
			return true
		}
	}
	return false
}

// run drives a tick-mode room until it is removed.
func (r *room) run(s *Server) {
	defer s.wg.Done()
	t := time.NewTicker(time.Second / time.Duration(r.tickRate))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.flush()
		case <-r.stop:
			return
		}
	}
}

// flush advances the tick and sends each member one Frame with everything
// addressed to it since the last tick; members with nothing get none.
func (r *room) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tick++
	for _, m := range r.members {
		if len(m.pending) == 0 && len(m.events) == 0 {
			continue
		}
		b, err := proto.Marshal(&pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{
			Tick:       r.tick,
			Deliveries: m.pending,
			Events:     m.events,
		}}})
		// The slices were only read by Marshal; reuse their backing arrays.
		clear(m.pending)
		m.pending = m.pending[:0]
		clear(m.events)
		m.events = m.events[:0]
		if err != nil {
			continue
		}
		m.c.enqueue(b)
	}
}
