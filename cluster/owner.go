package cluster

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

// owned is a room this node owns: its lease and the seats of the players
// connected to other nodes (or to this one, after a takeover).
type owned struct {
	n     *Node
	id    string
	out   string // the room's downlink subject
	epoch uint64 // the lease's revision when this node got it

	// Lease state, owned by the lease loop (and set before the room is
	// published in Node.owned).
	rev       uint64
	renewedAt time.Time // when the last successful renewal was sent
	triedAt   time.Time
	renewing  atomic.Bool // a renewal (or the fence it led to) is in flight
	// leaseMu orders the writes of the room's lease (renewal, handoff,
	// release), each of which needs the revision the one before it got.
	leaseMu sync.Mutex
	sub     *nats.Subscription

	mu sync.Mutex
	// fenced: the node stopped serving the room; nothing more is sent.
	// leaving: it is being handed off or given up; its closing must not
	// release the lease. restoring: uplinks wait in early until the room
	// is rebuilt. handing: the room is being exported to a successor:
	// uplinks wait in early (at most maxHeldUplinks), for the successor
	// has them too and takes those the export did not; they are handled
	// here only if the handoff fails before the room left.
	fenced, leaving, restoring, handing bool
	early                               []*nats.Msg
	seats                               map[connKey]*remoteSeat
	// upSeq is the last uplink handled per edge run.
	upSeq   map[string]uint64
	pending []*cpb.DownEntry
	downSeq uint64
	// handoffParts gathers a Handoff sent in pieces to this prepared
	// room (Handoff.part), until its last.
	handoffParts []byte
}

// connKey names a client connection in the cluster.
type connKey struct {
	node string
	conn uint64
}

func (n *Node) newOwned(id string, epoch uint64, sentAt time.Time) *owned {
	return &owned{
		n:         n,
		id:        id,
		out:       n.names.roomOut(id),
		epoch:     epoch,
		rev:       epoch,
		renewedAt: sentAt,
		triedAt:   sentAt,
		seats:     make(map[connKey]*remoteSeat),
		upSeq:     make(map[string]uint64),
	}
}

// add queues an entry for the room's next downlink; immediate sends it
// (with what was queued before it) at once.
func (o *owned) add(e *cpb.DownEntry, immediate bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.fenced {
		return
	}
	o.pending = append(o.pending, e)
	if immediate {
		o.flushLocked()
	}
}

// flush sends the queued entries as one downlink.
func (o *owned) flush() {
	o.mu.Lock()
	o.flushLocked()
	o.mu.Unlock()
}

func (o *owned) flushLocked() {
	if len(o.pending) == 0 || o.fenced {
		return
	}
	if !o.restoring && o.epoch != 0 && time.Since(o.renewedAt) > o.n.cfg.LeaseTTL-o.n.cfg.FenceMargin {
		// The lease may be another node's by now (this process was
		// paused, or cannot renew): send nothing; the lease loop fences
		// the room at its next look.
		o.pending = nil
		return
	}
	// A tick's entries go in as few downlinks as fit in NATS's largest
	// message, each with the next seq, all but the last marked more (the
	// edges apply the batch whole): one downlink over the limit was
	// refused by NATS, and the gap it left closed every player of the
	// room on the edges with 1012 (the 3-node bench's S2: rooms of 100, a
	// downlink carrying the frames of ~67 remote players).
	limit := o.n.maxDownlink()
	entries := o.pending
	o.pending = nil
	for len(entries) > 0 {
		k := fitting(entries, limit)
		o.downSeq++
		d := &cpb.Downlink{Node: o.n.cfg.NodeID, Run: o.n.run, Epoch: o.epoch, Seq: o.downSeq, Entries: entries[:k:k], More: k < len(entries)}
		o.n.publish(o.out, d)
		entries = entries[k:]
	}
}

// downEntryOverhead bounds what an entry adds to a Downlink beside its own
// size (its tag and length); downlinkHeadroom bounds the Downlink's other
// fields.
const (
	downEntryOverhead = 8
	downlinkHeadroom  = 1 << 10
)

// fitting is how many of items, from the first, fit in limit bytes as the
// repeated field of one message (at least one: a single item over the
// limit still goes alone).
func fitting[T proto.Message](items []T, limit int) int {
	k, size := 0, 0
	for ; k < len(items); k++ {
		s := proto.Size(items[k]) + downEntryOverhead
		if k > 0 && size+s > limit {
			break
		}
		size += s
	}
	return k
}

// maxDownlink is the most entry bytes one downlink carries: NATS's
// largest message (its max_payload, 1 MiB by default), less headroom. A
// single entry larger than that still goes alone, and is refused.
func (n *Node) maxDownlink() int {
	return max(int(n.nc.MaxPayload())-downlinkHeadroom, downlinkHeadroom)
}

// remoteSeat is the owner's side of a client connection on an edge: a
// room.Peer whose deliveries go into the room's downlinks.
type remoteSeat struct {
	o    *owned
	key  connKey
	seat *room.Seat
	// grant and addr came with the connection's Attach.
	grant *room.Grant
	addr  netip.Addr
	// parked holds requests the seat cannot take yet (a Join behind an
	// unanswered Leave), in order; handled by the up loop only.
	parked [][]byte
	msg    wire.ClientMessage // parse target; up loop only
}

func (o *owned) newRemoteSeat(key connKey, addr string, g *cpb.Grant) *remoteSeat {
	rs := &remoteSeat{o: o, key: key, grant: grantOf(g)}
	if a, err := netip.ParseAddr(addr); err == nil {
		rs.addr = a
	}
	rs.seat = o.n.rooms.NewSeat(rs)
	return rs
}

// isFrame tells a Frame from the other server messages by its first field:
// frames carry no request_id and start with the frame body's tag.
func isFrame(b []byte) bool { return len(b) > 0 && b[0] == 0x1a }

// Deliver implements room.Peer.
func (rs *remoteSeat) Deliver(msg *room.Outbound) {
	b := append([]byte(nil), msg.Bytes()...)
	msg.Release()
	rs.o.add(&cpb.DownEntry{Node: rs.key.node, Conn: rs.key.conn, Body: &cpb.DownEntry_Server{Server: b}}, !isFrame(b))
}

// Congested implements room.Peer: the edge's connection has its own
// bounds (and closes a client that cannot keep up).
func (rs *remoteSeat) Congested() bool { return false }

// Evict implements room.Peer.
func (rs *remoteSeat) Evict(cause room.EvictCause, detail string) {
	rs.o.add(&cpb.DownEntry{Node: rs.key.node, Conn: rs.key.conn, Body: &cpb.DownEntry_Evict{Evict: &cpb.Evict{Cause: uint32(cause), Detail: detail}}}, true)
	rs.o.mu.Lock()
	delete(rs.o.seats, rs.key)
	rs.o.mu.Unlock()
}

// Ready implements room.Peer: a parked request may go now, and a seat out
// of the room is released to its edge.
func (rs *remoteSeat) Ready() {
	select {
	case rs.o.n.wake <- rs:
	default:
		// The up loop is flooded; it retries parked seats on every
		// uplink of the room anyway.
	}
	if rs.seat.Idle() {
		rs.o.add(&cpb.DownEntry{Node: rs.key.node, Conn: rs.key.conn, Body: &cpb.DownEntry_Release{Release: true}}, true)
		rs.o.mu.Lock()
		if rs.o.seats[rs.key] == rs {
			delete(rs.o.seats, rs.key)
		}
		rs.o.mu.Unlock()
		rs.o.n.rooms.Disconnect(rs.seat)
	}
}

// JoinRefused implements room.Peer (the edge counts refusals itself).
func (rs *remoteSeat) JoinRefused(pb.ErrorCode) {}

// Address implements room.Peer: the address the edge sent with Attach.
func (rs *remoteSeat) Address() netip.Addr { return rs.addr }

// InputsTaken implements room.InputAcker.
func (rs *remoteSeat) InputsTaken(seq uint64) {
	rs.o.add(&cpb.DownEntry{Node: rs.key.node, Conn: rs.key.conn, Body: &cpb.DownEntry_InputsTaken{InputsTaken: seq}}, false)
}

// answer sends msg to the seat's client at once.
func (rs *remoteSeat) answer(msg *pb.ServerMessage) {
	b, err := proto.Marshal(msg)
	if err != nil {
		return
	}
	rs.o.add(&cpb.DownEntry{Node: rs.key.node, Conn: rs.key.conn, Body: &cpb.DownEntry_Server{Server: b}}, true)
}

func (rs *remoteSeat) refuse(rid uint32, err error) {
	rs.answer(&pb.ServerMessage{RequestId: rid, Body: &pb.ServerMessage_Error{Error: &pb.Error{
		Code: room.ErrorCode(err), Message: err.Error(), Reason: room.ErrorReason(err),
	}}})
}

// handle processes one client message forwarded by the edge, as the
// server does for a local connection (the edge applied the connection's
// limits and auth already). Up loop only.
func (rs *remoteSeat) handle(b []byte) {
	if len(rs.parked) > 0 {
		rs.parked = append(rs.parked, b)
		return
	}
	if !rs.handleNow(b) {
		rs.parked = append(rs.parked, b)
	}
}

// unpark retries the parked requests, in order. Up loop only.
func (rs *remoteSeat) unpark() {
	for len(rs.parked) > 0 {
		if !rs.handleNow(rs.parked[0]) {
			return
		}
		rs.parked[0] = nil
		rs.parked = rs.parked[1:]
	}
}

// handleNow handles b, or reports false when the seat is busy (ErrSeatBusy).
func (rs *remoteSeat) handleNow(b []byte) bool {
	rooms := rs.o.n.rooms
	m := &rs.msg
	if err := wire.ParseClientMessage(b, m); err != nil {
		return true // the edge checked it; cannot happen
	}
	if m.Ack != 0 {
		rs.seat.Ack(m.Ack)
	}
	rid := m.RequestID
	switch m.Body {
	case wire.BodySend:
		if err := rooms.Send(rs.seat, rid, &m.Send); err != nil {
			rs.refuse(rid, err)
		}
		return true
	case wire.BodyLeave:
		if err := rooms.Leave(rs.seat, rid); err != nil {
			rs.refuse(rid, err)
		}
		return true
	case wire.BodyNone:
		return true // an ack alone
	}
	var full pb.ClientMessage
	if err := proto.Unmarshal(b, &full); err != nil {
		return true
	}
	switch {
	case full.GetJoin() != nil:
		err := rooms.Join(rs.seat, room.JoinRequest{RequestID: rid, Join: full.GetJoin(), Grant: rs.grant})
		if errors.Is(err, room.ErrSeatBusy) {
			return false
		}
		if err != nil {
			rs.refuse(rid, err)
			rs.Ready() // nothing happened: release the seat to its edge
		}
	case full.GetResume() != nil:
		err := rooms.Resume(rs.seat, room.ResumeRequest{RequestID: rid, Resume: full.GetResume(), Grant: rs.grant})
		if errors.Is(err, room.ErrSeatBusy) {
			return false
		}
		if err != nil {
			rs.refuse(rid, err)
			rs.Ready()
		}
	case full.GetPing() != nil:
		tick, rate, _ := rs.seat.Clock()
		rs.answer(&pb.ServerMessage{RequestId: rid, Body: &pb.ServerMessage_Pong{Pong: &pb.Pong{
			ClientTime: full.GetPing().GetClientTime(),
			ServerTime: time.Now().UnixNano(),
			Tick:       tick,
			TickRate:   uint32(rate),
		}}})
	}
	return true
}

// maxHeldUplinks bounds the uplinks a room being handed off keeps in case
// the handoff fails (the export takes one room worker round trip).
const maxHeldUplinks = 4096

// upLoop handles the uplinks of owned rooms, and parked seats woken by
// their room.
func (n *Node) upLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case rs := <-n.wake:
			rs.unpark()
		case fn := <-n.upDo:
			fn()
		case m := <-n.up:
			n.handleUplink(m)
		}
	}
}

// handleUplink handles one Uplink of an owned room.
func (n *Node) handleUplink(m *nats.Msg) {
	o := n.ownedRoom(roomOfSubject(m.Subject))
	if o == nil {
		return // not (or no longer) ours: the new owner has it too
	}
	o.mu.Lock()
	if o.restoring || o.handing {
		if o.restoring || len(o.early) < maxHeldUplinks {
			o.early = append(o.early, m)
		}
		// Past the bound a handing room drops the uplink: the successor
		// holds it, and should the handoff fail, apply's sequence check
		// makes that edge's clients resume.
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	var u cpb.Uplink
	if err := proto.Unmarshal(m.Data, &u); err != nil {
		return
	}
	o.apply(&u)
}

// apply handles an uplink, after checking its sequence. Up loop only.
func (o *owned) apply(u *cpb.Uplink) {
	link := u.GetNode() + "/" + u.GetRun()
	o.mu.Lock()
	last, known := o.upSeq[link]
	if known && u.GetSeq() <= last {
		o.mu.Unlock()
		return // handled already (a handoff's overlap)
	}
	o.upSeq[link] = u.GetSeq()
	gap := known && u.GetSeq() != last+1
	var lost []*remoteSeat
	if gap {
		// Requests of that edge were lost: its clients resume, which
		// tells the room (and their SDKs) exactly what it has.
		for k, rs := range o.seats {
			if k.node == u.GetNode() {
				lost = append(lost, rs)
			}
		}
	}
	o.mu.Unlock()
	if gap {
		o.n.stats.uplinkGaps.Add(1)
		for _, rs := range lost {
			rs.Evict(room.EvictMoved, "messages between the relay's nodes were lost: resume")
			o.n.rooms.Disconnect(rs.seat)
		}
	}
	for _, e := range u.GetEntries() {
		key := connKey{node: u.GetNode(), conn: e.GetConn()}
		o.mu.Lock()
		rs := o.seats[key]
		switch body := e.GetBody().(type) {
		case *cpb.UpEntry_Attach:
			if rs == nil {
				rs = o.newRemoteSeat(key, body.Attach.GetAddr(), body.Attach.GetGrant())
				o.seats[key] = rs
			}
			o.mu.Unlock()
			continue
		case *cpb.UpEntry_Gone:
			delete(o.seats, key)
			o.mu.Unlock()
			if rs != nil {
				o.n.rooms.Disconnect(rs.seat)
			}
			continue
		}
		o.mu.Unlock()
		if rs == nil {
			// A connection whose seat was released (a Send that crossed
			// the release) or that the room never knew: not in the room.
			o.refuseUnknown(key, e.GetClient())
			continue
		}
		rs.handle(e.GetClient())
		rs.unpark()
	}
}

// ownedRoom is the owned room id, or nil.
func (n *Node) ownedRoom(id string) *owned {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.owned[id]
}

// roomOfSubject extracts the room id of a room subject.
func roomOfSubject(subject string) string {
	// prefix.r.<hex>.<kind>
	end := len(subject)
	for end > 0 && subject[end-1] != '.' {
		end--
	}
	start := end - 1
	for start > 0 && subject[start-1] != '.' {
		start--
	}
	if start <= 0 || end <= start {
		return ""
	}
	id, _ := roomOfKey("r." + subject[start:end-1])
	return id
}

// edgeGone lets go of the seats of a node that died or restarted: its
// players are away, for a resume elsewhere.
func (n *Node) edgeGone(node, run string) {
	n.mu.Lock()
	rooms := make([]*owned, 0, len(n.owned))
	for _, o := range n.owned {
		rooms = append(rooms, o)
	}
	n.mu.Unlock()
	for _, o := range rooms {
		var gone []*remoteSeat
		o.mu.Lock()
		for k, rs := range o.seats {
			if k.node == node {
				gone = append(gone, rs)
				delete(o.seats, k)
			}
		}
		o.mu.Unlock()
		for _, rs := range gone {
			n.rooms.Disconnect(rs.seat)
		}
	}
	_ = run
}

// hooks implements room.Hooks for the node.
type hooks Node

func (h *hooks) node() *Node { return (*Node)(h) }

// MayCreate implements room.Hooks: only the lease holder creates a room.
func (h *hooks) MayCreate(id string) bool {
	o := h.node().ownedRoom(id)
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.fenced && !o.leaving
}

// RoomChanged implements room.Hooks: the record goes to the rooms bucket.
func (h *hooks) RoomChanged(rec *room.RoomRecord) {
	n := h.node()
	n.mu.Lock()
	var closed *owned
	if o := n.owned[rec.ID]; o != nil {
		n.recPending[rec.ID] = rec
		// The room is here again (restored) before its closed
		// incarnation's record was deleted: keep the record, only the
		// old lease goes (by its revision: a newer one stays).
		closed = n.recGone[rec.ID]
		delete(n.recGone, rec.ID)
	}
	n.mu.Unlock()
	if closed != nil {
		go n.release(closed)
	}
	select {
	case n.writes <- struct{}{}:
	default:
	}
}

// RoomClosed implements room.Hooks: the lease and the record go.
func (h *hooks) RoomClosed(id string) {
	n := h.node()
	n.mu.Lock()
	o := n.owned[id]
	if o == nil {
		n.mu.Unlock()
		return
	}
	o.mu.Lock()
	leaving := o.leaving || o.fenced
	o.mu.Unlock()
	if leaving {
		n.mu.Unlock()
		return
	}
	delete(n.owned, id)
	delete(n.recPending, id)
	// The record goes first, then the lease (the record loop does both,
	// after any write of the record under way): a node with connections
	// in the room sees the lease go and looks for the record to take the
	// room over with. Lease first, it found the record and brought the
	// closed room back, or (the purge just done) found none, and closed
	// its connections with 1012.
	n.recGone[id] = o
	n.mu.Unlock()
	o.flush()
	select {
	case n.writes <- struct{}{}:
	default:
	}
}

// FramesDone implements room.Hooks: the tick's downlink goes out whole.
func (h *hooks) FramesDone(id string) {
	if o := h.node().ownedRoom(id); o != nil {
		o.flush()
	}
}

// recordLoop writes room records (the latest of each room) to the rooms
// bucket, off the workers.
func (n *Node) recordLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.writes:
		}
		n.mu.Lock()
		recs, gone := n.recPending, n.recGone
		n.recPending, n.recGone = make(map[string]*room.RoomRecord), make(map[string]*owned)
		epochs := make(map[string]uint64, len(recs))
		for id := range recs {
			if o := n.owned[id]; o != nil {
				epochs[id] = o.epoch
			}
		}
		n.mu.Unlock()
		for id, rec := range recs {
			st := stateOf(rec)
			st.Owner, st.Epoch = n.cfg.NodeID, epochs[id]
			b, err := proto.Marshal(st)
			if err == nil {
				ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
				_, err = n.recs.Put(ctx, roomKey(id), b)
				cancel()
			}
			if err != nil && n.ctx.Err() == nil {
				n.log.Warn("cluster: writing a room record", "room", id, "err", err)
			}
		}
		for id, o := range gone {
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
			if err := n.recs.Purge(ctx, roomKey(id)); err != nil && n.ctx.Err() == nil {
				n.log.Warn("cluster: deleting a room record", "room", id, "err", err)
			}
			cancel()
			go n.release(o)
		}
	}
}

// refuseUnknown answers a request of a connection without a seat here.
func (o *owned) refuseUnknown(key connKey, b []byte) {
	var m wire.ClientMessage
	if err := wire.ParseClientMessage(b, &m); err != nil || m.Body == wire.BodyNone {
		return
	}
	rs := &remoteSeat{o: o, key: key}
	rs.refuse(m.RequestID, room.ErrNotInRoom)
}
