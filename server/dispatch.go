package server

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

// dispatch decodes one client envelope and hands it to the rooms. payload is
// borrowed from the read buffer (valid during this call only); the room
// copies what it keeps. now is when its batch of input was read.
func (s *Server) dispatch(c *conn, payload []byte, now time.Time) gnet.Action {
	pol := s.policy()
	switch c.limits.admit(pol, now, len(payload)) {
	case rateAllow:
	case rateDrop:
		s.stats.rateLimited.Add(1)
		return gnet.None
	case rateNotify:
		s.stats.rateLimited.Add(1)
		retry := c.limits.retryAfter(pol, now, len(payload))
		c.answer(appendServerMessage(nil, rateLimitedMessage(retry)))
		return gnet.None
	case rateClose:
		s.stats.rateLimited.Add(1)
		// The last Error says when the buckets would let a message through
		// again, as every RATE_LIMITED before it did.
		retry := c.limits.retryAfter(pol, now, len(payload))
		c.refuse(closes.RateLimited, "kept sending over the rate limits after RATE_LIMITED", rateRetryHint(retry), true)
		return gnet.None
	}
	return s.request(c, payload)
}

func rateLimitedMessage(retry time.Duration) *pb.ServerMessage {
	m := errorMessage(0, pb.ErrorCode_ERROR_CODE_RATE_LIMITED,
		"sending faster than the relay allows: messages are being dropped")
	m.GetError().RetryAfterMs = uint32(rateRetryHint(retry).Milliseconds())
	return m
}

// rateRetryHint is the retry_after_ms of a rate-limit answer: the wait the
// buckets need, rounded up (never 0: 0 means "no hint"), at most a minute.
func rateRetryHint(wait time.Duration) time.Duration {
	return min(wait.Truncate(time.Millisecond)+time.Millisecond, time.Minute)
}

// request handles one admitted envelope.
func (s *Server) request(c *conn, payload []byte) gnet.Action {
	msg := &c.loop.msg
	err := wire.ParseClientMessage(payload, msg)
	if errors.Is(err, wire.ErrTooManyTargets) {
		writeError(c, msg.RequestID, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, err.Error())
		return gnet.None
	}
	if err != nil {
		return s.badMessage(c, "undecodable envelope: "+err.Error())
	}
	rid := msg.RequestID
	if r := c.remote.Load(); r != nil {
		switch msg.Body {
		case wire.BodyJoin, wire.BodyResume, wire.BodyAuthenticate:
			// Routed (or answered) here, below.
		default:
			// In a room of another node: its owner answers (acks too).
			if !r.Forward(payload, msg) {
				c.close(closes.Restart, "the relay's link to the room's node is congested: resume", false)
			}
			return gnet.None
		}
	}
	if msg.Ack != 0 && c.seat != nil {
		c.seat.Ack(msg.Ack) // frames the client holds: the room lets them go
	}
	switch msg.Body {
	case wire.BodySend:
		var err error
		if c.readingHeld {
			err = s.rooms.SendHeldBack(c.seat, rid, &msg.Send)
		} else {
			err = s.rooms.Send(c.seat, rid, &msg.Send)
		}
		if err != nil {
			writeError(c, rid, room.ErrorCode(err), err.Error())
		}
		return gnet.None
	case wire.BodyInput:
		if err := s.rooms.Input(c.seat, rid, &msg.Input); err != nil {
			writeError(c, rid, room.ErrorCode(err), err.Error())
		}
		return gnet.None
	case wire.BodySnapshot:
		var full pb.ClientMessage
		if err := proto.Unmarshal(payload, &full); err != nil {
			return s.badMessage(c, "undecodable envelope: "+err.Error())
		}
		snap := full.GetSnapshot()
		if err := s.rooms.Snapshot(c.seat, rid, snap.GetTick(), snap.GetState()); err != nil {
			writeError(c, rid, room.ErrorCode(err), err.Error())
		}
		return gnet.None
	case wire.BodyLeave:
		if err := s.rooms.Leave(c.seat, rid); err != nil {
			writeError(c, rid, room.ErrorCode(err), err.Error())
		}
		return gnet.None
	case wire.BodyJoin, wire.BodyPing, wire.BodyAuthenticate, wire.BodyResume:
		// Rare bodies: decoded with the generated code. A Join alone in its
		// envelope (every client's) is decoded into the loop's reused Join:
		// a burst of joins then leaves only its strings for the collector.
		if msg.Body == wire.BodyJoin && msg.Rare != nil {
			join := c.loop.resetJoin()
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(msg.Rare, join); err != nil {
				return s.badMessage(c, "undecodable envelope: "+err.Error())
			}
			s.join(c, rid, join, payload)
			return gnet.None
		}
		var full pb.ClientMessage
		if err := proto.Unmarshal(payload, &full); err != nil {
			return s.badMessage(c, "undecodable envelope: "+err.Error())
		}
		if join := full.GetJoin(); join != nil {
			s.join(c, rid, join, payload)
			return gnet.None
		}
		if a := full.GetAuthenticate(); a != nil {
			s.authenticate(c, rid, a.GetToken())
			return gnet.None
		}
		if r := full.GetResume(); r != nil {
			s.resume(c, rid, r, payload)
			return gnet.None
		}
		tick, rate, _ := c.seat.Clock()
		c.answer(appendServerMessage(nil, &pb.ServerMessage{
			RequestId: rid,
			Body: &pb.ServerMessage_Pong{Pong: &pb.Pong{
				ClientTime: full.GetPing().GetClientTime(),
				ServerTime: time.Now().UnixNano(),
				Tick:       tick,
				TickRate:   uint32(rate),
			}},
		}))
		return gnet.None
	default:
		if msg.Ack != 0 {
			// An acknowledgement alone (an idle client's): no answer, and
			// the room lets go of the acknowledged frames now, since an
			// idle room builds no frame that would.
			if c.seat != nil {
				s.rooms.TrimReplay(c.seat)
			}
			return gnet.None
		}
		return s.badMessage(c, "envelope has no body")
	}
}

// join hands a Join to the rooms. A seat between two rooms (its Leave, or
// an earlier Join, not yet answered) cannot take it yet: the request is
// parked and the connection's input held, so requests are processed in the
// order they were sent; the room wakes the connection when the seat is
// ready (conn.Ready).
func (s *Server) join(c *conn, rid uint32, join *pb.Join, payload []byte) {
	if !s.allowJoinFrom(c, rid) {
		return
	}
	grant, err := s.joinGrant(c, join.GetAuthToken())
	if err != nil {
		s.authFailed(c, rid, err)
		return
	}
	s.joinRoute(c, rid, join, payload, grant)
}

// joinRoute hands an admitted Join to the room that takes it: on this node,
// or (in a cluster) through the room's owner. It parks the Join while the
// seat is busy or the owner is being looked up.
func (s *Server) joinRoute(c *conn, rid uint32, join *pb.Join, payload []byte, grant *room.Grant) {
	if s.cluster != nil {
		done, b := s.clusterJoin(c, rid, join, payload, grant)
		if done {
			return
		}
		payload = b
	}
	err := s.rooms.Join(c.seat, room.JoinRequest{RequestID: rid, Join: join, Grant: grant})
	if errors.Is(err, room.ErrSeatBusy) {
		s.park(c, payload, grant)
		return
	}
	if err != nil {
		s.joinError(c, rid, err)
	}
}

// park holds a request the connection cannot take yet (its seat is busy
// with an earlier one); input waits behind it, so requests keep their
// order. The room wakes the connection when the seat is ready.
func (s *Server) park(c *conn, payload []byte, grant *room.Grant) {
	s.parkFor(c, payload, grant)
	if !c.seat.Busy() {
		// The seat settled between the request and the flag: look again
		// rather than miss the wake-up.
		c.wake()
	}
}

// parkFor holds a request until something else wakes the connection (a
// route found, a remote seat released).
func (s *Server) parkFor(c *conn, payload []byte, grant *room.Grant) {
	c.parked = &parkedRequest{payload: append([]byte(nil), payload...), grant: grant}
	c.held().Store(true)
}

// allowJoinFrom applies the per-address join limits (the lockout after
// failed joins, the join rate) to a Join or Resume, refusing it with
// RATE_LIMITED when they say no.
func (s *Server) allowJoinFrom(c *conn, rid uint32) bool {
	now := time.Now()
	if locked, left := s.access.limits.LockedOut(c.addr, now); locked {
		s.refuseJoin(c, rid, "too many failed joins from your address: locked out", "locked_out", left)
		return false
	}
	if ok, retry := s.access.limits.AllowJoin(c.addr, now); !ok {
		s.refuseJoin(c, rid, "too many joins from your address", "address_rate", retry)
		return false
	}
	return true
}

// resume hands a Resume to the rooms, under the same per-address limits as
// a Join (a resume token cannot be guessed at speed either).
func (s *Server) resume(c *conn, rid uint32, r *pb.Resume, payload []byte) {
	if !s.allowJoinFrom(c, rid) {
		return
	}
	var grant *room.Grant
	if s.access.verifier != nil {
		// The resume token proves the seat is this client's; the
		// connection's auth decides whether, failing that, it may be
		// seated anew.
		grant = &room.Grant{AllowsRoom: func(string) bool { return false }}
		if cl := c.claims(); cl != nil && (cl.ExpiresAt.IsZero() || time.Now().Before(cl.ExpiresAt)) {
			grant = grantOf(cl)
		}
	}
	s.resumeRoute(c, rid, r, payload, grant)
}

// resumeRoute hands an admitted Resume to the room's node.
func (s *Server) resumeRoute(c *conn, rid uint32, r *pb.Resume, payload []byte, grant *room.Grant) {
	if s.cluster != nil && s.clusterResume(c, rid, r, payload, grant) {
		return
	}
	err := s.rooms.Resume(c.seat, room.ResumeRequest{RequestID: rid, Resume: r, Grant: grant})
	if errors.Is(err, room.ErrSeatBusy) {
		s.park(c, payload, grant)
		return
	}
	if err != nil {
		s.joinError(c, rid, err)
	}
}

// joinError answers a Join refused before it reached a room.
func (s *Server) joinError(c *conn, rid uint32, err error) {
	if errors.Is(err, room.ErrUnauthorized) {
		s.access.limits.JoinFailed(c.addr, time.Now())
	}
	m := errorMessage(rid, room.ErrorCode(err), err.Error())
	m.GetError().Reason = room.ErrorReason(err)
	c.answer(appendServerMessage(nil, m))
}

// refuseJoin answers a Join refused by the per-address limits.
func (s *Server) refuseJoin(c *conn, rid uint32, text, reason string, retry time.Duration) {
	s.stats.addressRefusals.Add(1)
	m := errorMessage(rid, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, text)
	m.GetError().Reason = reason
	m.GetError().RetryAfterMs = uint32(min(retry.Milliseconds()+1, 1<<31))
	c.answer(appendServerMessage(nil, m))
}

// unpark retries a parked request; false while the seat is still busy.
func (s *Server) unpark(c *conn) bool {
	var full pb.ClientMessage
	p := c.parked
	c.parked = nil
	if err := proto.Unmarshal(p.payload, &full); err != nil || full.GetJoin() == nil && full.GetResume() == nil {
		return true // cannot happen: it was decoded before
	}
	// Routed again as it was admitted (limits and auth are not charged
	// twice); it parks itself again if it still cannot go.
	if j := full.GetJoin(); j != nil {
		s.joinRoute(c, full.GetRequestId(), j, p.payload, p.grant)
	} else {
		s.resumeRoute(c, full.GetRequestId(), full.GetResume(), p.payload, p.grant)
	}
	return c.parked == nil // parked again: still busy
}

// badMessage answers an undecodable envelope; repeated ones close the
// connection with 1008, since a client that keeps sending garbage is broken.
// Called from request only: the loop's parse target holds c's envelope.
func (s *Server) badMessage(c *conn, text string) gnet.Action {
	c.rare().badMessages++
	s.stats.badMessages.Add(1)
	if int(c.rare().badMessages) >= s.cfg.MaxBadMessages {
		c.close(closes.Policy, "too many malformed messages: "+text, true)
		return gnet.None
	}
	writeError(c, c.loop.msg.RequestID, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, text)
	return gnet.None
}
