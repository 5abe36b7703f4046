package cluster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	"github.com/tickrelay/tickrelay/room"
)

// scheduleTakeover tries, after a short random wait (so that the edges of
// a room do not all race at once), to take over room id, whose lease ran
// out while this node has connections in it. n.mu held.
func (n *Node) scheduleTakeover(id string) {
	if n.takingOver[id] {
		return
	}
	n.takingOver[id] = true
	go func() {
		defer func() {
			n.mu.Lock()
			delete(n.takingOver, id)
			n.mu.Unlock()
		}()
		t := time.NewTimer(time.Duration(rand.Int64N(int64(50 * time.Millisecond))))
		defer t.Stop()
		select {
		case <-t.C:
		case <-n.ctx.Done():
			return
		}
		if err := n.takeover(id); err != nil && n.ctx.Err() == nil {
			n.log.Warn("cluster: taking over a room", "room", id, "err", err)
		}
	}()
}

// takeover makes this node the owner of room id, whose owner is gone: it
// takes the lease (one node wins the compare-and-set), asks every node
// what it holds of the room, rebuilds the room from its record and those
// reports, and goes on with it. The players connected to surviving nodes
// keep their connections: each goes on with the frame after the last one
// written to it, and the inputs the old owner had not acknowledged are
// taken again (deduplicated by their Send.seq).
func (n *Node) takeover(id string) error {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL+n.cfg.HandoverWait)
	defer cancel()
	// A room without a record closed on its owner (which deletes the
	// record before the lease), or never had one written: there is
	// nothing to take over, and taking the lease only to give it up
	// started the same attempt on every other node with connections in
	// the room.
	if _, err := n.recs.Get(ctx, roomKey(id)); noKey(err) {
		n.log.Info("cluster: a room's owner is gone and it has no record: closed", "room", id)
		n.roomGone(id)
		return nil
	}
	o, err := n.acquire(ctx, id, true)
	n.log.Debug("cluster: takeover", "room", id, "err", err)
	if errors.Is(err, errTaken) {
		n.stats.takeoverLosses.Add(1)
		return nil // another node won; it asks us for our report
	}
	if err != nil {
		return err
	}
	start := time.Now()
	e, err := n.recs.Get(ctx, roomKey(id))
	if err != nil {
		n.giveUp(o)
		return fmt.Errorf("cluster: room %q has no record to rebuild it from: %w", id, err)
	}
	var st cpb.RoomState
	if err := proto.Unmarshal(e.Value(), &st); err != nil {
		n.giveUp(o)
		return fmt.Errorf("cluster: room %q: bad record: %w", id, err)
	}
	reports := n.gatherReports(ctx, id, o.epoch)
	rec := recordOf(&st)
	if err := n.rebuild(ctx, o, rec, reports); err != nil {
		n.giveUp(o)
		return err
	}
	n.stats.takeovers.Add(1)
	n.log.Info("cluster: took over a room", "room", id, "epoch", o.epoch, "reports", len(reports), "took", time.Since(start))
	return nil
}

// roomGone lets go of this node's connections in room id, which closed:
// one with a request under way (a Join the owner never took) is closed
// with 1012, so that its client tries again; the others are released, and
// their next Join is routed anew.
func (n *Node) roomGone(id string) {
	n.mu.Lock()
	er := n.edges[id]
	n.mu.Unlock()
	if er == nil {
		return
	}
	er.mu.Lock()
	conns := make([]*Remote, 0, len(er.conns))
	for _, r := range er.conns {
		conns = append(conns, r)
	}
	er.mu.Unlock()
	for _, r := range conns {
		r.mu.Lock()
		busy := len(r.pending) > 0 || r.player != 0
		r.released = !busy
		r.mu.Unlock()
		r.detach()
		if busy {
			r.conn.Evict(room.EvictMoved, "the room closed while a request was on its way: try again")
		} else {
			r.conn.Released()
		}
	}
}

// giveUp lets go of a room that could not be rebuilt.
func (n *Node) giveUp(o *owned) {
	n.release(o)
	n.mu.Lock()
	er := n.edges[o.id]
	n.mu.Unlock()
	if er == nil {
		return
	}
	er.mu.Lock()
	var conns []*Remote
	for _, r := range er.conns {
		conns = append(conns, r)
	}
	er.mu.Unlock()
	for _, r := range conns {
		r.conn.Evict(room.EvictMoved, "the room could not be rebuilt after its node failed")
		r.detach()
	}
}

// gatherReports asks every node (this one too) for its connections in room
// id, and waits for the answers of the live nodes, or HandoverWait.
func (n *Node) gatherReports(ctx context.Context, id string, epoch uint64) []*cpb.HandoverReport {
	inbox := n.nc.NewRespInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := n.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := proto.Marshal(&cpb.HandoverRequest{Room: id, Node: n.cfg.NodeID, Epoch: epoch})
	if err := n.nc.PublishRequest(n.names.roomHandover(id), inbox, req); err != nil {
		return nil
	}
	n.mu.Lock()
	want := len(n.nodeView)
	n.mu.Unlock()
	t := time.NewTimer(n.cfg.HandoverWait)
	defer t.Stop()
	var out []*cpb.HandoverReport
	seen := map[string]bool{}
	parts := map[string]*cpb.HandoverReport{} // reports still in parts, by node
	for len(seen) < want {
		select {
		case m := <-replies:
			rep := new(cpb.HandoverReport)
			if proto.Unmarshal(m.Data, rep) != nil || seen[rep.GetNode()] {
				continue
			}
			// The parts of one report come in order (one publisher, one
			// inbox): the connections add up until the last.
			if p := parts[rep.GetNode()]; p != nil && p.GetRun() == rep.GetRun() {
				p.Conns = append(p.Conns, rep.GetConns()...)
				p.More = rep.GetMore()
				rep = p
			}
			if rep.GetMore() {
				parts[rep.GetNode()] = rep
				continue
			}
			delete(parts, rep.GetNode())
			seen[rep.GetNode()] = true
			out = append(out, rep)
		case <-t.C:
			return out
		case <-ctx.Done():
			return out
		}
	}
	return out
}

// answerHandover reports this node's connections in a room to its new
// owner, and from then on takes the new owner's downlinks.
func (n *Node) answerHandover(m *nats.Msg) {
	var req cpb.HandoverRequest
	if proto.Unmarshal(m.Data, &req) != nil || m.Reply == "" {
		return
	}
	rep := &cpb.HandoverReport{Node: n.cfg.NodeID, Run: n.run}
	n.mu.Lock()
	er := n.edges[req.GetRoom()]
	n.mu.Unlock()
	if er != nil {
		er.mu.Lock()
		if req.GetEpoch() > er.epoch {
			// A batch of the old owner still incomplete never will be:
			// it reached none of the players here, as the report says.
			er.epoch, er.downSeq, er.partial = req.GetEpoch(), 0, nil
		}
		n.upMu.Lock()
		rep.UpSeq = n.upSeqs[er.id]
		n.upMu.Unlock()
		conns := make([]*Remote, 0, len(er.conns))
		for _, r := range er.conns {
			conns = append(conns, r)
		}
		er.mu.Unlock()
		for _, r := range conns {
			r.mu.Lock()
			cr := &cpb.ConnReport{
				Conn:        r.id,
				PlayerId:    r.player,
				LastSeq:     r.lastSeq,
				LastTick:    r.lastTick,
				InputsTaken: r.taken,
				Unacked:     append([][]byte(nil), r.unacked...),
				Addr:        r.addr,
				Grant:       r.grant,
			}
			for _, p := range r.pending {
				cr.Pending = append(cr.Pending, p)
			}
			r.mu.Unlock()
			rep.Conns = append(rep.Conns, cr)
		}
	}
	n.sendReport(m.Reply, rep)
}

// sendReport publishes rep to reply in as many parts as fit in NATS's
// largest message: one report over it was refused by NATS, and the new
// owner went on without this node's connections (their unconfirmed inputs
// lost, the connections not in the room). A single connection's report too
// large for a message loses its oldest unconfirmed inputs until it fits
// (they are lost: the SDK's re-send after a resume would not be either).
func (n *Node) sendReport(reply string, rep *cpb.HandoverReport) {
	limit := n.maxDownlink()
	conns := rep.GetConns()
	for {
		// A connection over the limit by itself starts a part (fitting
		// puts it first), and is cut down to fit.
		if len(conns) > 0 && proto.Size(conns[0])+downEntryOverhead > limit {
			dropped := 0
			for len(conns[0].Unacked) > 0 && proto.Size(conns[0])+downEntryOverhead > limit {
				conns[0].Unacked = conns[0].Unacked[1:]
				dropped++
			}
			n.log.Warn("cluster: a connection's handover report is over NATS's max_payload: its oldest unconfirmed inputs are dropped", "conn", conns[0].GetConn(), "dropped", dropped)
		}
		k := fitting(conns, limit)
		part := &cpb.HandoverReport{Node: rep.GetNode(), Run: rep.GetRun(), UpSeq: rep.GetUpSeq(), Conns: conns[:k:k], More: k < len(conns)}
		conns = conns[k:]
		b, err := proto.Marshal(part)
		if err == nil {
			err = n.nc.Publish(reply, b)
		}
		if err != nil {
			n.log.Warn("cluster: sending a handover report", "bytes", len(b), "err", err)
			return
		}
		if !part.More {
			return
		}
	}
}

// rebuild restores room rec on this node from the edges' reports, re-takes
// their unacknowledged inputs and pending requests, then lets the room's
// uplinks in.
func (n *Node) rebuild(ctx context.Context, o *owned, rec *room.RoomRecord, reports []*cpb.HandoverReport) error {
	byPlayer := make(map[uint32]*room.MemberRecord, len(rec.Members))
	for i := range rec.Members {
		byPlayer[rec.Members[i].PlayerID] = &rec.Members[i]
	}
	seats := make(map[uint32]*room.Seat)
	type carried struct {
		rs *remoteSeat
		cr *cpb.ConnReport
	}
	var all []carried
	lastTick := rec.Tick
	for _, rep := range reports {
		o.upSeq[rep.GetNode()+"/"+rep.GetRun()] = rep.GetUpSeq()
		for _, cr := range rep.GetConns() {
			key := connKey{node: rep.GetNode(), conn: cr.GetConn()}
			rs := o.newRemoteSeat(key, cr.GetAddr(), cr.GetGrant())
			o.seats[key] = rs
			all = append(all, carried{rs, cr})
			lastTick = max(lastTick, cr.GetLastTick())
			mr := byPlayer[cr.GetPlayerId()]
			if mr == nil || seats[mr.PlayerID] != nil {
				continue // not seated (yet): its pending Join is taken below
			}
			mr.Seq, mr.InputSeq = cr.GetLastSeq(), cr.GetInputsTaken()
			mr.Away = false
			seats[mr.PlayerID] = rs.seat
		}
	}
	// The old owner may have run ticks no edge saw: go on past them, so
	// that tick x period stays a clock.
	if rec.TickRate > 0 {
		lastTick += uint64(math.Ceil(n.cfg.LeaseTTL.Seconds() * float64(rec.TickRate)))
	}
	rec.Tick = lastTick
	if err := n.rooms.Restore(ctx, rec, seats); err != nil {
		return fmt.Errorf("cluster: restoring room %q: %w", rec.ID, err)
	}
	n.onUpLoop(func() {
		for _, c := range all {
			for _, b := range c.cr.GetUnacked() {
				c.rs.handle(b)
			}
			for _, b := range c.cr.GetPending() {
				c.rs.handle(b)
			}
		}
		o.openUplinks()
	})
	return nil
}

// onUpLoop runs fn on the up loop, which owns the remote seats.
func (n *Node) onUpLoop(fn func()) {
	select {
	case n.upDo <- fn:
	case <-n.ctx.Done():
	}
}

// openUplinks ends o's restoring: the uplinks held meanwhile are handled,
// then new ones as they come. Up loop only.
func (o *owned) openUplinks() {
	o.mu.Lock()
	o.restoring, o.leaving = false, false
	o.mu.Unlock()
	o.applyEarly()
}

// unhold ends the hold of a handoff that failed before the room left: the
// uplinks held meanwhile are handled here, then new ones as they come (a
// room still being restored keeps them for the end of its restore). Up
// loop only.
func (o *owned) unhold() {
	o.mu.Lock()
	o.handing, o.leaving = false, false
	restoring := o.restoring
	o.mu.Unlock()
	if !restoring {
		o.applyEarly()
	}
}

// applyEarly handles the uplinks held in o.early, in order. Up loop only.
func (o *owned) applyEarly() {
	o.mu.Lock()
	early := o.early
	o.early = nil
	o.mu.Unlock()
	for _, m := range early {
		var u cpb.Uplink
		if proto.Unmarshal(m.Data, &u) == nil {
			o.apply(&u)
		}
	}
}

// Drain hands every room this node owns to another node, each at a known
// tick with all of its state, so that nothing is lost and the clients on
// other nodes do not notice; it marks the node draining first, so that no
// new room is created here. Rooms no other node can take stay. The
// node's own clients are closed by the transport afterwards and resume
// elsewhere.
func (n *Node) Drain(ctx context.Context) {
	n.mu.Lock()
	n.draining = true
	rooms := make([]*owned, 0, len(n.owned))
	for _, o := range n.owned {
		rooms = append(rooms, o)
	}
	n.mu.Unlock()
	n.heartbeat(ctx)
	for _, o := range rooms {
		if err := n.handoff(ctx, o); err != nil {
			n.log.Warn("cluster: handing off a room", "room", o.id, "err", err)
		}
	}
}

// successor picks the node to hand room o to: the one holding most of its
// remote players, else the least loaded one.
func (n *Node) successor(o *owned) string {
	count := map[string]int{}
	o.mu.Lock()
	for k := range o.seats {
		if k.node != n.cfg.NodeID {
			count[k.node]++
		}
	}
	o.mu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	best, most := "", 0
	for node, c := range count {
		if info := n.nodeView[node]; info != nil && !info.GetDraining() && c > most {
			best, most = node, c
		}
	}
	if best == "" {
		best = n.leastLoadedLocked((*cpb.NodeInfo).GetConnections)
	}
	return best
}

// handoff gives room o to a successor.
func (n *Node) handoff(ctx context.Context, o *owned) error {
	to := n.successor(o)
	if to == "" {
		return errors.New("cluster: no node to hand the room to")
	}
	subject := n.names.nodeCtl(to, "handoff")
	request := func(h *cpb.Handoff) error {
		b, _ := proto.Marshal(h)
		m, err := n.nc.RequestWithContext(ctx, subject, b)
		if err != nil {
			return fmt.Errorf("cluster: handoff to %s: %w", to, err)
		}
		var a cpb.HandoffAnswer
		if err := proto.Unmarshal(m.Data, &a); err != nil || a.GetError() != "" {
			return fmt.Errorf("cluster: handoff to %s refused: %s", to, a.GetError())
		}
		return nil
	}
	// A room's state (its replay rings) can be larger than NATS's largest
	// message, which NATS refused: the handoff failed, and the room moved
	// by failover when the node left. It goes in pieces then.
	ask := func(h *cpb.Handoff) error {
		b, _ := proto.Marshal(h)
		limit := n.maxDownlink()
		if len(b) <= limit {
			return request(h)
		}
		for len(b) > 0 {
			k := min(limit, len(b))
			if err := request(&cpb.Handoff{PartRoom: o.id, Part: b[:k], More: k < len(b)}); err != nil {
				return err
			}
			b = b[k:]
		}
		return nil
	}
	// First the successor listens to the room's uplinks (and holds them),
	// so that none is lost between the two owners.
	if err := ask(&cpb.Handoff{Prepare: true, Room: &cpb.RoomState{Id: o.id}}); err != nil {
		return err
	}
	o.mu.Lock()
	o.leaving = true
	o.mu.Unlock()
	// The up loop stops handling the room's uplinks before the export: the
	// upSeqs handed on must be exactly those whose requests reached the
	// room before its state was taken. An uplink the up loop handled after
	// the export was counted in upSeqs, so the successor skipped it, yet
	// the room here had gone: that client message was lost (a Send missing
	// for every player).
	if err := n.holdUplinks(o); err != nil {
		o.mu.Lock()
		o.leaving = false
		o.mu.Unlock()
		return err
	}
	// The remote seats move with the room, each to its player.
	carried := make(map[*remoteSeat]uint32)
	rec, err := n.rooms.Export(ctx, o.id, func(s *room.Seat) bool {
		rs, remote := s.Peer().(*remoteSeat)
		if remote {
			carried[rs] = s.PlayerID()
		}
		return remote
	})
	if err != nil {
		// The room stays: the uplinks held meanwhile are handled here.
		n.onUpLoop(o.unhold)
		return fmt.Errorf("cluster: exporting room %q: %w", o.id, err)
	}
	o.flush() // the last tick's frames
	if o.sub != nil {
		_ = o.sub.Unsubscribe()
	}
	// The lease passes by compare-and-set: its new revision is the
	// successor's epoch.
	lease, _ := proto.Marshal(&cpb.Lease{Node: to})
	o.leaseMu.Lock() // a renewal under way ends first: its revision is the one to pass on
	o.mu.Lock()
	last := o.rev
	o.mu.Unlock()
	rev, err := n.leases.Update(ctx, roomKey(o.id), lease, last)
	o.leaseMu.Unlock()
	if err != nil {
		n.disown(o)
		return fmt.Errorf("cluster: passing the lease of room %q: %w", o.id, err)
	}
	h := &cpb.Handoff{Room: stateOf(rec), LeaseRevision: rev, UpSeqs: map[string]uint64{}}
	o.mu.Lock()
	for rs, player := range carried {
		h.Conns = append(h.Conns, &cpb.Carried{Node: rs.key.node, Conn: rs.key.conn, Addr: rs.seat.Address().String(), Grant: grantMsg(rs.grant, o.id), PlayerId: player})
	}
	for link, seq := range o.upSeq {
		h.UpSeqs[link] = seq
	}
	o.mu.Unlock()
	n.disown(o)
	if err := ask(h); err != nil {
		return err
	}
	n.stats.handoffs.Add(1)
	return nil
}

// holdUplinks makes the up loop hold room o's uplinks from now on (see
// owned.handing) and returns once it does: no uplink of the room is being
// handled then, and every request handled before is queued on the room's
// worker ahead of the export. Called once the successor answered Prepare.
func (n *Node) holdUplinks(o *owned) error {
	held := make(chan struct{})
	hold := func() {
		// An uplink NATS routed before the successor subscribed reached
		// only this node, and it is in n.up already: NATS hands a
		// connection's messages to channel subscriptions in order, before
		// the Prepare answer that came after the subscription. The up
		// loop picks among ready channels at random, so it may not have
		// handled it yet: it does now, or the successor would see a gap.
		// (What NATS routed later, the successor has too.)
		for range len(n.up) {
			n.handleUplink(<-n.up)
		}
		o.mu.Lock()
		o.handing = true
		o.mu.Unlock()
		close(held)
	}
	select {
	case n.upDo <- hold:
	case <-n.ctx.Done():
		return fmt.Errorf("cluster: handing off room %q: %w", o.id, n.ctx.Err())
	}
	// Once queued the hold is set however long the wait (the up loop never
	// blocks), so the wait is only for the node closing.
	select {
	case <-held:
		return nil
	case <-n.ctx.Done():
		return fmt.Errorf("cluster: handing off room %q: %w", o.id, n.ctx.Err())
	}
}

// acceptHandoff takes a room a draining owner hands over.
func (n *Node) acceptHandoff(m *nats.Msg) {
	answer := func(err error) {
		a := &cpb.HandoffAnswer{}
		if err != nil {
			a.Error = err.Error()
		}
		b, _ := proto.Marshal(a)
		_ = m.Respond(b)
	}
	var h cpb.Handoff
	if err := proto.Unmarshal(m.Data, &h); err != nil {
		answer(err)
		return
	}
	if pr := h.GetPartRoom(); pr != "" {
		// A piece of a Handoff too large for one message: kept on the
		// prepared room (bounded by what the old owner sends of one
		// room) until the last.
		o := n.ownedRoom(pr)
		if o == nil {
			answer(errors.New("no prepared room " + pr))
			return
		}
		o.mu.Lock()
		o.handoffParts = append(o.handoffParts, h.GetPart()...)
		whole := o.handoffParts
		if !h.GetMore() {
			o.handoffParts = nil
		}
		o.mu.Unlock()
		if h.GetMore() {
			answer(nil)
			return
		}
		h.Reset()
		if err := proto.Unmarshal(whole, &h); err != nil {
			answer(fmt.Errorf("a handoff in pieces: %w", err))
			return
		}
	}
	id := h.GetRoom().GetId()
	if h.GetPrepare() {
		o := n.newOwned(id, 0, time.Now())
		o.restoring = true
		o.leaving = true // no lease yet: nothing to renew or release
		answer(n.own(o, true))
		return
	}
	o := n.ownedRoom(id)
	if o == nil {
		answer(errors.New("no prepared room " + id))
		return
	}
	o.mu.Lock()
	o.epoch, o.rev, o.renewedAt, o.triedAt = h.GetLeaseRevision(), h.GetLeaseRevision(), time.Now(), time.Now()
	for link, seq := range h.GetUpSeqs() {
		o.upSeq[link] = seq
	}
	o.mu.Unlock()
	rec := recordOf(h.GetRoom())
	seats := make(map[uint32]*room.Seat)
	for _, c := range h.GetConns() {
		key := connKey{node: c.GetNode(), conn: c.GetConn()}
		rs := o.newRemoteSeat(key, c.GetAddr(), c.GetGrant())
		o.mu.Lock()
		o.seats[key] = rs
		o.mu.Unlock()
		if c.GetPlayerId() != 0 {
			seats[c.GetPlayerId()] = rs.seat
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
	defer cancel()
	if err := n.rooms.Restore(ctx, rec, seats); err != nil {
		n.disown(o)
		answer(err)
		return
	}
	n.onUpLoop(o.openUplinks)
	n.stats.handoffs.Add(1)
	answer(nil)
}

// askToCreate asks node peer to take the lease of room id (this node is
// draining), so that a Join here can go to it.
func (n *Node) askToCreate(ctx context.Context, peer, id string) bool {
	m, err := n.nc.RequestWithContext(ctx, n.names.nodeCtl(peer, "acquire"), []byte(id))
	if err != nil {
		return false
	}
	rev := uint64(0)
	for _, c := range m.Data {
		rev = rev*10 + uint64(c-'0')
	}
	if rev == 0 {
		return false
	}
	n.mu.Lock()
	n.leaseView[id] = leaseView{node: peer, rev: rev}
	n.mu.Unlock()
	n.stats.placedElsewhere.Add(1)
	return true
}

// acquireFor takes a room's lease for a draining node's Join.
func (n *Node) acquireFor(m *nats.Msg) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
	defer cancel()
	id := string(m.Data)
	o, err := n.acquire(ctx, id, false)
	if err != nil {
		_ = m.Respond([]byte("0"))
		return
	}
	_ = m.Respond(fmt.Appendf(nil, "%d", o.epoch))
}
