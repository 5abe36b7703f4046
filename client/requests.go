package client

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// JoinOptions says which room to join.
type JoinOptions struct {
	// RoomID is the room to join: 1-64 bytes of [A-Za-z0-9_.:-].
	RoomID string
	// Create asks for a new room with a server-made code; RoomID must be
	// empty. The code is in Joined.RoomID.
	Create bool
	// CreateIfMissing creates the room RoomID when no room has that id.
	CreateIfMissing bool
	// Room holds the options of the room, used only when this Join creates it.
	Room RoomOptions
	// Metadata of this player, shown to the other members.
	Metadata map[string]string
	// AuthToken is reserved for authentication.
	AuthToken string
}

// RoomOptions are set by the player that creates a room. Zero fields mean
// the server's defaults.
type RoomOptions struct {
	MaxPlayers uint32
	// TickRate in ticks per second.
	TickRate uint32
	// Immediate asks for each message to be delivered at once instead of
	// batched per tick (refused by servers that do not allow it).
	Immediate bool
	Metadata  map[string]string
}

// Joined describes the room after a successful Join.
type Joined struct {
	RoomID   string
	PlayerID uint32
	// HostID is the current host: the oldest member.
	HostID uint32
	// TickRate is zero in immediate mode.
	TickRate     uint32
	Tick         uint64
	Members      []Member // oldest first, this player included
	MaxPlayers   uint32
	RoomMetadata map[string]string
	Immediate    bool
}

// Member is one player of a room.
type Member struct {
	PlayerID uint32
	Metadata map[string]string
}

// SendOptions qualify one Send.
type SendOptions struct {
	// Kind is an application-defined message kind, relayed as is.
	Kind uint32
	// Targets are the player ids to deliver to; empty means every other
	// member.
	Targets []uint32
	// Echo also delivers the message to the sender.
	Echo bool
	// LatestOnly marks a state update that a newer one of the same Kind may
	// replace before delivery.
	LatestOnly bool
}

type reply struct {
	msg *pb.ServerMessage
	at  time.Time // when the reader goroutine decoded it
}

// Join enters a room and waits for the server's answer. A refusal is
// returned as a *ServerError that matches the sentinels (errors.Is(err,
// ErrRoomFull)). When ctx ends first, Join returns ctx's error and the join
// may still happen on the server.
func (c *Client) Join(ctx context.Context, o JoinOptions) (*Joined, error) {
	if o.RoomID == "" && !o.Create {
		return nil, ErrNoRoomID
	}
	if o.RoomID != "" && o.Create {
		return nil, fmt.Errorf("client: join %q: Create needs an empty RoomID: %w", o.RoomID, ErrInvalidArgument)
	}
	j := &pb.Join{
		RoomId:          o.RoomID,
		CreateIfMissing: o.CreateIfMissing,
		PlayerMetadata:  o.Metadata,
		AuthToken:       o.AuthToken,
	}
	if ro := o.Room; ro.MaxPlayers != 0 || ro.TickRate != 0 || ro.Immediate || len(ro.Metadata) > 0 {
		j.Options = &pb.RoomOptions{
			MaxPlayers: o.Room.MaxPlayers,
			TickRate:   o.Room.TickRate,
			Immediate:  o.Room.Immediate,
			Metadata:   o.Room.Metadata,
		}
	}
	r, _, err := c.request(ctx, &pb.ClientMessage{Body: &pb.ClientMessage_Join{Join: j}})
	if err != nil {
		return nil, fmt.Errorf("client: join %q: %w", o.RoomID, err)
	}
	switch body := r.msg.GetBody().(type) {
	case *pb.ServerMessage_Joined:
		return newJoined(body.Joined), nil
	case *pb.ServerMessage_Error:
		return nil, fmt.Errorf("client: join %q: %w", o.RoomID, serverError(body.Error))
	default:
		return nil, fmt.Errorf("client: join %q: %w: %T", o.RoomID, ErrUnexpectedReply, body)
	}
}

func newJoined(j *pb.Joined) *Joined {
	out := &Joined{
		RoomID:       j.GetRoomId(),
		PlayerID:     j.GetPlayerId(),
		HostID:       j.GetHostId(),
		TickRate:     j.GetTickRate(),
		Tick:         j.GetTick(),
		MaxPlayers:   j.GetMaxPlayers(),
		RoomMetadata: maps.Clone(j.GetRoomMetadata()),
		Immediate:    j.GetImmediate(),
		Members:      make([]Member, 0, len(j.GetMembers())),
	}
	for _, m := range j.GetMembers() {
		out.Members = append(out.Members, Member{PlayerID: m.GetPlayerId(), Metadata: m.GetMetadata()})
	}
	return out
}

func serverError(e *pb.Error) *ServerError {
	return &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
}

// Leave leaves the current room and waits for the server's confirmation.
// Not being in a room is ErrNotInRoom.
func (c *Client) Leave(ctx context.Context) error {
	r, _, err := c.request(ctx, &pb.ClientMessage{Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	if err != nil {
		return fmt.Errorf("client: leave: %w", err)
	}
	switch body := r.msg.GetBody().(type) {
	case *pb.ServerMessage_Left:
		return nil
	case *pb.ServerMessage_Error:
		return fmt.Errorf("client: leave: %w", serverError(body.Error))
	default:
		return fmt.Errorf("client: leave: %w: %T", ErrUnexpectedReply, body)
	}
}

// Ping measures the round-trip time to the server and the offset of the
// server's clock: clockOffset = server_time - (local send time + rtt/2), so
// local time + clockOffset estimates the server's clock.
func (c *Client) Ping(ctx context.Context) (rtt, clockOffset time.Duration, err error) {
	r, sent, err := c.request(ctx, &pb.ClientMessage{Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{}}})
	if err != nil {
		return 0, 0, fmt.Errorf("client: ping: %w", err)
	}
	switch body := r.msg.GetBody().(type) {
	case *pb.ServerMessage_Pong:
		rtt = r.at.Sub(sent) // monotonic clock
		mid := sent.UnixNano() + int64(rtt/2)
		return rtt, time.Duration(body.Pong.GetServerTime() - mid), nil
	case *pb.ServerMessage_Error:
		return 0, 0, fmt.Errorf("client: ping: %w", serverError(body.Error))
	default:
		return 0, 0, fmt.Errorf("client: ping: %w: %T", ErrUnexpectedReply, body)
	}
}

// request sends m with a fresh request_id and waits for the message that
// answers it. It returns the answer and when m was written.
func (c *Client) request(ctx context.Context, m *pb.ClientMessage) (reply, time.Time, error) {
	id := c.nextID.Add(1)
	if id == 0 { // zero means "no answer wanted"; skip it on wrap-around
		id = c.nextID.Add(1)
	}
	m.RequestId = id
	if p := m.GetPing(); p != nil {
		p.ClientTime = time.Now().UnixNano()
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.closeErr != nil {
		err := c.closeErr
		c.mu.Unlock()
		return reply{}, time.Time{}, err
	}
	c.pending[id] = ch
	c.mu.Unlock()

	c.writeMu.Lock()
	sent := time.Now()
	err := c.writeErr
	if err == nil {
		var buf []byte
		buf, err = proto.MarshalOptions{}.MarshalAppend(c.wbuf[:maxClientHeader], m)
		if err == nil {
			c.wbuf = buf
			err = c.writeFrameLocked(ws.OpBinary, buf, c.opts.WriteTimeout)
		} else {
			err = fmt.Errorf("client: marshal: %w", err)
		}
	}
	c.writeMu.Unlock()
	if err != nil {
		c.forget(id)
		return reply{}, time.Time{}, err
	}

	select {
	case r := <-ch:
		return r, sent, nil
	case <-ctx.Done():
		c.forget(id)
		return reply{}, time.Time{}, ctx.Err()
	case <-c.done:
		// The answer may have arrived just before the end.
		select {
		case r := <-ch:
			return r, sent, nil
		default:
		}
		return reply{}, time.Time{}, c.Err()
	}
}

func (c *Client) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Send relays payload to the other members of the room (or to
// opts.Targets). It encodes without allocating and writes the message before
// returning, blocking at most Options.WriteTimeout on a full socket. Success
// is not acknowledged; a refusal (e.g. not in a room) arrives later through
// Options.OnError. payload is not retained. Safe for concurrent use.
func (c *Client) Send(payload []byte, opts SendOptions) error {
	sv := wire.SendView{
		Payload:    payload,
		Kind:       opts.Kind,
		Targets:    opts.Targets,
		Echo:       opts.Echo,
		LatestOnly: opts.LatestOnly,
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return fmt.Errorf("client: send: %w", c.writeErr)
	}
	buf := wire.AppendSend(c.wbuf[:maxClientHeader], 0, 0, &sv)
	c.wbuf = buf
	if err := c.writeFrameLocked(ws.OpBinary, buf, c.opts.WriteTimeout); err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	return nil
}
