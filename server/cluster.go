package server

import (
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/cluster"
	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

// In a cluster a connection is in a room of this node through its local
// seat, or in a room owned by another node through a cluster.Remote
// (conn.remote): its requests then go to the owner as they came, after the
// connection's own checks (limits, auth), and what the owner sends comes
// back through Deliver. The connection is attached to one remote room at a
// time; a Join behind a Leave waits until the owner releases the seat.

// clusterJoin routes a Join in a cluster. done: it was handled (forwarded,
// parked or refused); else the local room takes it, with payload (the
// request, re-encoded when the relay chose the room's code).
func (s *Server) clusterJoin(c *conn, rid uint32, join *pb.Join, payload []byte, grant *room.Grant) (done bool, out []byte) {
	if r := c.remote.Load(); r != nil {
		if r.Leaving() {
			s.parkFor(c, payload, grant) // until the owner releases the seat
			return true, payload
		}
		s.forward(c, r, payload, rid, wire.BodyJoin)
		return true, payload
	}
	if !c.seat.Idle() {
		return false, payload // the local room answers (already in a room, or busy)
	}
	id := join.GetRoomId()
	if id == "" {
		// The relay makes the code; the cluster then checks it is free
		// with the room's lease.
		code, err := s.rooms.NewRoomCode()
		if err != nil {
			s.joinError(c, rid, err)
			return true, payload
		}
		join.RoomId, join.CreateIfMissing = code, true
		full := &pb.ClientMessage{RequestId: rid, Body: &pb.ClientMessage_Join{Join: join}}
		if payload, err = proto.Marshal(full); err != nil {
			s.joinError(c, rid, err)
			return true, payload
		}
		id = code
	}
	switch s.cluster.Route(id, join.GetCreateIfMissing(), c.wake) {
	case cluster.RouteLocal:
		return false, payload
	case cluster.RoutePending:
		s.parkFor(c, payload, grant)
	case cluster.RouteNotFound:
		s.joinError(c, rid, room.ErrRoomNotFound)
	case cluster.RouteRemote:
		r := s.cluster.Attach(c, id, c.addr, grant)
		c.remote.Store(r)
		s.forward(c, r, payload, rid, wire.BodyJoin)
	}
	return true, payload
}

// clusterResume routes a Resume in a cluster; false: the local room takes
// it (also when no node knows the room: it answers ROOM_GONE).
func (s *Server) clusterResume(c *conn, rid uint32, res *pb.Resume, payload []byte, grant *room.Grant) bool {
	if r := c.remote.Load(); r != nil {
		if r.Leaving() {
			s.parkFor(c, payload, grant)
			return true
		}
		s.forward(c, r, payload, rid, wire.BodyResume)
		return true
	}
	if !c.seat.Idle() {
		return false
	}
	switch s.cluster.Route(res.GetRoomId(), false, c.wake) {
	case cluster.RoutePending:
		s.parkFor(c, payload, grant)
		return true
	case cluster.RouteRemote:
		r := s.cluster.Attach(c, res.GetRoomId(), c.addr, grant)
		c.remote.Store(r)
		s.forward(c, r, payload, rid, wire.BodyResume)
		return true
	}
	return false
}

// forward sends a request on to the room's owner; a connection whose
// request cannot be queued is closed, to resume (its SDK re-sends).
func (s *Server) forward(c *conn, r *cluster.Remote, payload []byte, rid uint32, body wire.Body) {
	m := &wire.ClientMessage{RequestID: rid, Body: body}
	if !r.Forward(payload, m) {
		c.close(closes.Restart, "the relay's link to the room's node is congested: resume", false)
	}
}

// Released implements cluster.Conn: the owner let the seat go (the player
// left the room, or its join failed); a parked request can be routed anew.
func (c *conn) Released() {
	c.remote.Store(nil)
	c.wake()
}
