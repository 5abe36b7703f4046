package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

// Conn is the edge's view of a client connection: what the transport
// (package server) implements. Every method may be called from any
// goroutine and must not block.
type Conn interface {
	// Deliver writes an encoded ServerMessage to the client (room.Peer's).
	Deliver(msg *room.Outbound)
	// Evict closes the connection for cause (room.Peer's).
	Evict(cause room.EvictCause, detail string)
	// Released tells the connection that its seat left the remote room:
	// its next Join or Resume is routed anew.
	Released()
}

// edgeRoom is a room this node has client connections in.
type edgeRoom struct {
	id  string
	in  string // the room's uplink subject
	sub *nats.Subscription

	mu    sync.Mutex
	conns map[uint64]*Remote
	// The owner's downlinks: the highest epoch seen, and the last seq in
	// it.
	epoch, downSeq uint64
	// partial holds the entries of a batch whose last downlink is still
	// to come (Downlink.more); down loop only. Bounded by the owner's
	// batch, one worker round of the room.
	partial []*cpb.DownEntry
}

// Remote is a client connection of this node in a room owned by a node,
// through NATS (the owner may be this node after a takeover). Its methods
// are safe for concurrent use.
type Remote struct {
	n    *Node
	er   *edgeRoom
	conn Conn
	id   uint64
	addr string

	mu       sync.Mutex
	grant    *cpb.Grant
	player   uint32
	lastSeq  uint64
	lastTick uint64
	taken    uint64   // highest Send.seq the owner acknowledged
	unacked  [][]byte // Sends with a seq above taken, in order (bounded)
	// pending holds requests that wait for an answer (by request id), so a
	// new owner can take them after a takeover.
	pending  map[uint32][]byte
	leaving  bool // a Leave went on and its seat was not released yet
	released bool
	detached bool
}

// RouteResult says where a Join or Resume goes.
type RouteResult int

const (
	// RouteLocal: this node owns the room (or may create it): use the
	// local room.Manager.
	RouteLocal RouteResult = iota
	// RouteRemote: another node owns it: Attach and Forward.
	RouteRemote
	// RoutePending: the answer needs NATS; ready is called when Route
	// can answer at once.
	RoutePending
	// RouteNotFound: no node has the room.
	RouteNotFound
)

// Route says where a Join (or a Resume) for room id goes; create means the
// Join may create the room. It never blocks: when the answer needs a round
// trip to NATS it returns RoutePending, asks, and calls ready when asking
// again gives the answer.
func (n *Node) Route(id string, create bool, ready func()) RouteResult {
	n.mu.Lock()
	if o := n.owned[id]; o != nil {
		o.mu.Lock()
		busy := o.restoring || o.leaving || o.fenced
		o.mu.Unlock()
		n.mu.Unlock()
		if busy {
			go n.retryLater(ready)
			return RoutePending
		}
		return RouteLocal
	}
	if lv, ok := n.leaseView[id]; ok && lv.node != n.cfg.NodeID {
		n.mu.Unlock()
		return RouteRemote
	}
	if done, ok := n.lookedUp[id]; ok && time.Since(done) < n.cfg.LeaseTTL {
		delete(n.lookedUp, id)
		n.mu.Unlock()
		return RouteNotFound // asked NATS already: nobody has it
	}
	n.mu.Unlock()
	go n.lookup(id, create, ready)
	return RoutePending
}

// retryLater calls ready after a short wait (a room in transition).
func (n *Node) retryLater(ready func()) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		ready()
	case <-n.ctx.Done():
	}
}

// lookup finds (or, with create, takes) the owner of room id, then calls
// ready.
func (n *Node) lookup(id string, create bool, ready func()) {
	defer ready()
	n.log.Debug("cluster: looking up a room", "room", id, "create", create)
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
	defer cancel()
	_, err := n.leases.Get(ctx, roomKey(id))
	unowned := noKey(err)
	if unowned {
		// No owner. A room that has a record lost its owner (a crash,
		// a fence): it is taken over, members and all, never created
		// anew under them.
		if _, err := n.recs.Get(ctx, roomKey(id)); err == nil && !n.isDraining() {
			// Unless the room was created between the two reads (a Join
			// on another node, or on this one): its lease is there now.
			// (A takeover would only lose to its owner, counted as a
			// takeover race lost: 20 in a 5 s S1 run of the bench.)
			if _, err := n.leases.Get(ctx, roomKey(id)); noKey(err) {
				if err := n.takeover(id); err != nil {
					n.log.Warn("cluster: taking over a room", "room", id, "err", err)
				}
				return
			}
		}
	}
	elsewhere := ""
	if create && unowned {
		elsewhere = n.placement()
	}
	if elsewhere != "" && n.askToCreate(ctx, elsewhere, id) {
		return
	}
	if create && !n.isDraining() {
		// Placed here: by default, or because the node chosen to place
		// it elsewhere did not take it (a room refused is worse than a
		// node over its share).
		_, err := n.acquire(ctx, id, false)
		if err == nil {
			return
		}
		if !errors.Is(err, errTaken) {
			n.log.Warn("cluster: acquiring a room", "room", id, "err", err)
		}
	}
	e, err := n.leases.Get(ctx, roomKey(id))
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		var l cpb.Lease
		if proto.Unmarshal(e.Value(), &l) == nil {
			if l.GetNode() == n.cfg.NodeID && n.owned[id] == nil {
				// This node's own lease from before a fence: it runs
				// out (or a takeover replaces it) shortly.
				n.mu.Unlock()
				n.retryLater(func() {})
				n.mu.Lock()
				return
			}
			n.leaseView[id] = leaseView{node: l.GetNode(), run: l.GetRun(), rev: e.Revision()}
			return
		}
	}
	if noKey(err) || err == nil {
		n.lookedUp[id] = time.Now()
	}
}

// Attach makes c a connection of room id (owned elsewhere) and tells the
// owner; its requests then go through Forward. grant is what its auth
// allows for the room (nil without auth).
func (n *Node) Attach(c Conn, id string, addr netip.Addr, grant *room.Grant) *Remote {
	n.mu.Lock()
	er := n.edges[id]
	if er == nil {
		er = &edgeRoom{id: id, in: n.names.roomIn(id), conns: make(map[uint64]*Remote)}
		sub, err := n.nc.ChanSubscribe(n.names.roomOut(id), n.down)
		if err != nil {
			n.log.Warn("cluster: subscribing to a room", "room", id, "err", err)
		}
		er.sub = sub
		if lv, ok := n.leaseView[id]; ok {
			er.epoch = 0
			_ = lv
		}
		n.edges[id] = er
	}
	r := &Remote{n: n, er: er, conn: c, id: n.nextConn.Add(1), addr: addr.String(), grant: grantMsg(grant, id), pending: make(map[uint32][]byte)}
	er.mu.Lock()
	er.conns[r.id] = r
	er.mu.Unlock()
	n.mu.Unlock()
	n.uplink(er, &cpb.UpEntry{Conn: r.id, Body: &cpb.UpEntry_Attach{Attach: &cpb.Attach{Addr: r.addr, Grant: r.grant}}})
	return r
}

// uplink sends one entry to the room's owner.
func (n *Node) uplink(er *edgeRoom, e *cpb.UpEntry) bool {
	// The seq of a room's uplinks runs for the node's whole run, across
	// its connections coming and going; published under the lock, so the
	// queue holds them in seq order.
	n.upMu.Lock()
	defer n.upMu.Unlock()
	n.upSeqs[er.id]++
	u := &cpb.Uplink{Node: n.cfg.NodeID, Run: n.run, Seq: n.upSeqs[er.id], Entries: []*cpb.UpEntry{e}}
	return n.publish(er.in, u)
}

// Forward sends one client message on to the room's owner; m is its parse
// (the transport's). It reports false when the connection cannot go on
// (the message could not be queued): the caller closes it so that it
// resumes.
func (r *Remote) Forward(payload []byte, m *wire.ClientMessage) bool {
	r.mu.Lock()
	if r.released || r.detached {
		r.mu.Unlock()
		return true
	}
	switch m.Body {
	case wire.BodySend:
		if m.Send.Seq > r.taken {
			r.unacked = append(r.unacked, append([]byte(nil), payload...))
			if len(r.unacked) > r.n.cfg.ResendInputs {
				r.unacked[0] = nil
				r.unacked = r.unacked[1:]
			}
		}
	case wire.BodyLeave:
		r.leaving = true
		r.pending[m.RequestID] = append([]byte(nil), payload...)
	case wire.BodyJoin, wire.BodyResume:
		if len(r.pending) < 16 {
			r.pending[m.RequestID] = append([]byte(nil), payload...)
		}
	}
	r.mu.Unlock()
	return r.n.uplink(r.er, &cpb.UpEntry{Conn: r.id, Body: &cpb.UpEntry_Client{Client: payload}})
}

// Leaving reports whether a Leave went on and the seat was not released
// yet: a Join behind it must wait (the transport holds it until Released).
func (r *Remote) Leaving() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.leaving && !r.released
}

// Gone tells the owner that the connection dropped.
func (r *Remote) Gone() {
	if r.detach() {
		r.n.uplink(r.er, &cpb.UpEntry{Conn: r.id, Body: &cpb.UpEntry_Gone{Gone: true}})
	}
}

// detach takes r out of its room; false if it was out already.
func (r *Remote) detach() bool {
	r.mu.Lock()
	if r.detached {
		r.mu.Unlock()
		return false
	}
	r.detached = true
	r.mu.Unlock()
	n, er := r.n, r.er
	n.mu.Lock()
	er.mu.Lock()
	delete(er.conns, r.id)
	empty := len(er.conns) == 0
	er.mu.Unlock()
	if empty && n.edges[er.id] == er {
		delete(n.edges, er.id)
		if er.sub != nil {
			_ = er.sub.Unsubscribe()
		}
	}
	n.mu.Unlock()
	return true
}

// downLoop handles the downlinks of rooms with local connections, and
// handover requests.
func (n *Node) downLoop() {
	for {
		select {
		case <-n.ctx.Done():
			return
		case m := <-n.down:
			if len(m.Subject) > 9 && m.Subject[len(m.Subject)-9:] == ".handover" {
				n.answerHandover(m)
				continue
			}
			n.downlink(m)
		}
	}
}

// downlink handles one Downlink of a room.
func (n *Node) downlink(m *nats.Msg) {
	id := roomOfSubject(m.Subject)
	n.mu.Lock()
	er := n.edges[id]
	n.mu.Unlock()
	if er == nil {
		return
	}
	var d cpb.Downlink
	if err := decodeDownlink(m.Data, n.cfg.NodeID, &d); err != nil {
		return
	}
	er.mu.Lock()
	switch {
	case d.GetEpoch() < er.epoch:
		er.mu.Unlock()
		n.stats.staleDropped.Add(1) // a fenced or paused old owner
		return
	case d.GetEpoch() > er.epoch:
		// A stream this node joins midway (its first connection in the
		// room, or a new owner it was not told of): it starts here. An
		// owner that asked for this node's report (a takeover) set the
		// epoch already, and its stream is checked from its first seq.
		er.epoch, er.downSeq = d.GetEpoch(), d.GetSeq()-1
		er.partial = nil
	}
	gap := d.GetSeq() != er.downSeq+1
	er.downSeq = d.GetSeq()
	entries := d.GetEntries()
	switch {
	case gap:
		er.partial = nil
	case d.GetMore():
		// The rest of the batch follows: it is applied whole, so that a
		// tick cut by the owner's death reaches none of the players here
		// rather than some (the takeover's reports must agree on it).
		er.partial = append(er.partial, entries...)
		er.mu.Unlock()
		return
	case len(er.partial) > 0:
		entries = append(er.partial, entries...)
		er.partial = nil
	}
	var lost []*Remote
	if gap {
		for _, r := range er.conns {
			lost = append(lost, r)
		}
	}
	er.mu.Unlock()
	if gap {
		// Frames were lost between the owner and this node: the clients
		// resume, and the owner's replay ring gives them exactly what they
		// miss.
		n.stats.downlinkGaps.Add(1)
		for _, r := range lost {
			r.conn.Evict(room.EvictMoved, "messages between the relay's nodes were lost: resume")
			r.Gone()
		}
		return
	}
	for _, e := range entries { // this node's only (decodeDownlink)
		er.mu.Lock()
		r := er.conns[e.GetConn()]
		er.mu.Unlock()
		if r != nil {
			r.deliver(e)
		}
	}
}

// deliver handles one entry for r.
func (r *Remote) deliver(e *cpb.DownEntry) {
	switch body := e.GetBody().(type) {
	case *cpb.DownEntry_Server:
		b := body.Server
		r.observe(b)
		r.conn.Deliver(r.n.rooms.Outbound(b))
	case *cpb.DownEntry_InputsTaken:
		r.mu.Lock()
		if body.InputsTaken > r.taken {
			r.taken = body.InputsTaken
			r.trimLocked()
		}
		r.mu.Unlock()
	case *cpb.DownEntry_Evict:
		r.conn.Evict(room.EvictCause(body.Evict.GetCause()), body.Evict.GetDetail())
		r.detach()
	case *cpb.DownEntry_Release:
		r.mu.Lock()
		r.released = true
		r.mu.Unlock()
		r.detach()
		r.conn.Released()
	}
}

// trimLocked drops the inputs the owner acknowledged. r.mu held.
func (r *Remote) trimLocked() {
	var m wire.ClientMessage
	i := 0
	for ; i < len(r.unacked); i++ {
		if wire.ParseClientMessage(r.unacked[i], &m) == nil && m.Send.Seq > r.taken {
			break
		}
		r.unacked[i] = nil
	}
	r.unacked = r.unacked[i:]
}

// observe notes what a server message tells of the seat: the last frame
// written, the player, answered requests.
func (r *Remote) observe(b []byte) {
	if isFrame(b) {
		var v wire.ServerMessage
		if wire.ParseServerMessage(b, &v) == nil {
			r.mu.Lock()
			if v.Seq > r.lastSeq {
				r.lastSeq = v.Seq
			}
			r.lastTick = max(r.lastTick, v.Tick)
			r.mu.Unlock()
		}
		return
	}
	var msg pb.ServerMessage
	if proto.Unmarshal(b, &msg) != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rid := msg.GetRequestId(); rid != 0 {
		delete(r.pending, rid)
	}
	switch body := msg.GetBody().(type) {
	case *pb.ServerMessage_Joined:
		r.player, r.lastSeq = body.Joined.GetPlayerId(), 0
		r.lastTick = max(r.lastTick, body.Joined.GetTick())
	case *pb.ServerMessage_Resumed:
		res := body.Resumed
		switch {
		case res.GetRecovered():
			r.lastSeq = res.GetReplayFrom() - 1
		case res.GetSnapshot() != nil:
			r.player, r.lastSeq = res.GetSnapshot().GetPlayerId(), 0
		}
		r.taken = max(r.taken, res.GetInputAck())
	case *pb.ServerMessage_Left:
		r.player = 0
	}
}

// placement is the node a new room should be created on instead of this
// one, or "" for this one. A draining node creates no rooms: the live, not
// draining node with the fewest connections does. A node that owns
// cluster-max-owned-rooms rooms or more places a new room on the live, not
// draining node that owns the fewest, when that one owns fewer than it.
func (n *Node) placement() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.draining {
		return n.leastLoadedLocked((*cpb.NodeInfo).GetConnections)
	}
	limit := n.cfg.MaxOwnedRooms
	if limit <= 0 || len(n.owned) < limit {
		return ""
	}
	peer := n.leastLoadedLocked((*cpb.NodeInfo).GetRoomsOwned)
	if peer == "" || int(n.nodeView[peer].GetRoomsOwned()) >= len(n.owned) {
		return ""
	}
	return peer
}

// leastLoadedLocked picks the live, not draining node with the least load,
// other than this one. n.mu held.
func (n *Node) leastLoadedLocked(load func(*cpb.NodeInfo) uint32) string {
	best, least := "", uint32(0)
	for id, info := range n.nodeView {
		if id == n.cfg.NodeID || info.GetDraining() {
			continue
		}
		if l := load(info); best == "" || l < least {
			best, least = id, l
		}
	}
	return best
}

// noKey reports whether a KV read found no entry (never written, or
// deleted).
func noKey(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// isDraining reports whether the node is draining.
func (n *Node) isDraining() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.draining
}

// The field numbers decodeDownlink reads, from the generated descriptors
// (the .proto is their one source).
var (
	downlinkEntriesField = (&cpb.Downlink{}).ProtoReflect().Descriptor().Fields().ByName("entries").Number()
	downEntryNodeField   = (&cpb.DownEntry{}).ProtoReflect().Descriptor().Fields().ByName("node").Number()
)

// decodeDownlink decodes b into d with only the entries for node. Every
// edge of a room receives the whole batch, the entries of the other edges'
// connections too; decoding those copied their frames for nothing (in a
// room of 100 on three nodes, half of what an edge received).
func decodeDownlink(b []byte, node string, d *cpb.Downlink) error {
	var rest []byte // the fields other than entries, decoded at the end
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("cluster: downlink: %w", protowire.ParseError(n))
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return fmt.Errorf("cluster: downlink: %w", protowire.ParseError(m))
		}
		field := b[:n+m]
		b = b[n+m:]
		if num != downlinkEntriesField || typ != protowire.BytesType {
			rest = append(rest, field...)
			continue
		}
		v, _ := protowire.ConsumeBytes(field[n:])
		if string(entryNode(v)) != node { // no copy: compared in place
			continue
		}
		e := new(cpb.DownEntry)
		if err := proto.Unmarshal(v, e); err != nil {
			return fmt.Errorf("cluster: downlink entry: %w", err)
		}
		d.Entries = append(d.Entries, e)
	}
	entries := d.Entries
	if err := proto.Unmarshal(rest, d); err != nil {
		return fmt.Errorf("cluster: downlink: %w", err)
	}
	d.Entries = entries
	return nil
}

// entryNode is the node field (1) of an encoded DownEntry, nil if none.
func entryNode(b []byte) []byte {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num == downEntryNodeField && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil
			}
			return v
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil
		}
		b = b[m:]
	}
	return nil
}
