package server

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
	"github.com/tickrelay/tickrelay/server/wsproto"
)

// dispatch decodes one client envelope and hands it to the rooms. payload is
// borrowed from the read buffer (valid during this call only); the room
// copies what it keeps.
func (s *Server) dispatch(c *conn, payload []byte) gnet.Action {
	err := wire.ParseClientMessage(payload, &c.msg)
	if errors.Is(err, wire.ErrTooManyTargets) {
		writeError(c, c.msg.RequestID, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, err.Error())
		return gnet.None
	}
	if err != nil {
		return s.badMessage(c, "undecodable envelope: "+err.Error())
	}
	rid := c.msg.RequestID
	switch c.msg.Body {
	case wire.BodySend:
		if err := s.rooms.Send(c.seat, rid, &c.msg.Send); err != nil {
			writeError(c, rid, room.ErrorCode(err), err.Error())
		}
		return gnet.None
	case wire.BodyLeave:
		if err := s.rooms.Leave(c.seat, rid); err != nil {
			writeError(c, rid, room.ErrorCode(err), err.Error())
		}
		return gnet.None
	case wire.BodyJoin, wire.BodyPing:
		// Rare bodies: decoded with the generated code.
		var full pb.ClientMessage
		if err := proto.Unmarshal(payload, &full); err != nil {
			return s.badMessage(c, "undecodable envelope: "+err.Error())
		}
		if join := full.GetJoin(); join != nil {
			if err := s.rooms.Join(c.seat, room.JoinRequest{RequestID: rid, Join: join}); err != nil {
				writeError(c, rid, room.ErrorCode(err), err.Error())
			}
			return gnet.None
		}
		tick, rate, _ := c.seat.Clock()
		_, _ = c.gc.Write(appendServerMessage(nil, &pb.ServerMessage{
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
		return s.badMessage(c, "envelope has no body")
	}
}

// badMessage answers an undecodable envelope; repeated ones close the
// connection with 1008, since a client that keeps sending garbage is broken.
func (s *Server) badMessage(c *conn, text string) gnet.Action {
	c.badFrames++
	s.stats.badMessages.Add(1)
	if c.badFrames >= s.cfg.MaxBadMessages {
		return s.closeOnLoop(c, wsproto.ReasonFor(wsproto.CausePolicy), pb.ErrorCode_ERROR_CODE_POLICY_VIOLATION,
			"too many malformed messages: "+text)
	}
	writeError(c, c.msg.RequestID, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, text)
	return gnet.None
}
