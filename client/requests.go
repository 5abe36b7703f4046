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
	// AuthToken is the auth token (JWT) for this join, for a relay with
	// auth on that has not seen one on this connection (Authenticate).
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
	// Lockstep, if set, makes the room a LOCKSTEP room.
	Lockstep *LockstepOptions
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
	// ResumeToken takes this seat back after the connection is lost
	// (Resume); empty when the relay keeps no seats. SeatGrace is how long
	// the relay keeps the seat of a lost connection.
	ResumeToken []byte
	SeatGrace   time.Duration
	// Mode is the room's mode; Lockstep (LOCKSTEP rooms only) says where
	// this player starts.
	Mode     pb.RoomMode
	Lockstep *LockstepStart
}

// Member is one player of a room.
type Member struct {
	PlayerID uint32
	UserID   string
	Metadata map[string]string
	// Away: the member's connection dropped; its seat waits for a resume.
	Away bool
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
	// Seq, if set, is the seat's input sequence number: the relay drops a
	// Send whose Seq is not above the highest it accepted, so that inputs
	// re-sent after a resume are applied once (Session does this).
	Seq uint64
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
	if ro := o.Room; ro.MaxPlayers != 0 || ro.TickRate != 0 || ro.Immediate || len(ro.Metadata) > 0 || ro.Lockstep != nil {
		j.Options = &pb.RoomOptions{
			MaxPlayers: o.Room.MaxPlayers,
			TickRate:   o.Room.TickRate,
			Immediate:  o.Room.Immediate,
			Metadata:   o.Room.Metadata,
		}
		if ls := ro.Lockstep; ls != nil {
			j.Options.Mode = pb.RoomMode_ROOM_MODE_LOCKSTEP
			j.Options.Lockstep = &pb.LockstepOptions{ToleranceMs: uint32(ls.Tolerance.Milliseconds()), RepeatLastInput: ls.RepeatLastInput}
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
		ResumeToken:  j.GetResumeToken(),
		SeatGrace:    time.Duration(j.GetSeatGraceMs()) * time.Millisecond,
		Mode:         j.GetMode(),
		Lockstep:     newLockstepStart(j.GetLockstep()),
		Members:      make([]Member, 0, len(j.GetMembers())),
	}
	for _, m := range j.GetMembers() {
		out.Members = append(out.Members, Member{PlayerID: m.GetPlayerId(), UserID: m.GetUserId(), Metadata: m.GetMetadata(), Away: m.GetAway()})
	}
	return out
}

func serverError(e *pb.Error) *ServerError {
	return &ServerError{
		Code:       e.GetCode(),
		Message:    e.GetMessage(),
		Reason:     e.GetReason(),
		RetryAfter: time.Duration(e.GetRetryAfterMs()) * time.Millisecond,
		Tick:       e.GetTick(),
		InputTick:  e.GetInputTick(),
		InputLead:  time.Duration(e.GetInputLeadUs()) * time.Microsecond,
	}
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
		Seq:        opts.Seq,
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return fmt.Errorf("client: send: %w", c.writeErr)
	}
	var ack uint64
	if seq := c.seq.Load(); seq > c.ackSent {
		ack, c.ackSent = seq, seq // piggybacked: the relay can trim its replay ring
		c.ackCarried.Store(true)
	}
	buf := wire.AppendSend(c.wbuf[:maxClientHeader], 0, ack, &sv)
	c.wbuf = buf
	if err := c.writeFrameLocked(ws.OpBinary, buf, c.opts.WriteTimeout); err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	return nil
}

// ackDue runs on the ack timer (Options.AckInterval) an interval after a
// frame arrived with nothing armed. A player that sent meanwhile carries its
// acks on its messages: look again an interval later, in case it stopped.
// Otherwise it acknowledges alone. Disarmed before Ack reads the sequence,
// so a frame arriving meanwhile arms the timer again or is acknowledged
// now.
func (c *Client) ackDue() {
	if c.ackCarried.Swap(false) {
		c.ackTimer.Reset(c.opts.AckInterval)
		return
	}
	c.ackArmed.Store(false)
	_ = c.Ack() // fails only on a closed connection
}

// Ack tells the relay which frames this client holds (the highest
// Frame.seq received), so that it can let go of them: without acks a seat's
// replay ring fills and a resume must resync from a snapshot. Send
// piggybacks acks already; Ack is for a player with nothing to send, and
// writes nothing when every frame received was acknowledged. Session calls
// it on a timer.
func (c *Client) Ack() error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	seq := c.seq.Load()
	if seq <= c.ackSent {
		return nil
	}
	if c.writeErr != nil {
		return fmt.Errorf("client: ack: %w", c.writeErr)
	}
	c.ackSent = seq
	buf := wire.AppendAck(c.wbuf[:maxClientHeader], seq)
	c.wbuf = buf
	if err := c.writeFrameLocked(ws.OpBinary, buf, c.opts.WriteTimeout); err != nil {
		return fmt.Errorf("client: ack: %w", err)
	}
	return nil
}

// ResumeOptions name the seat to take back: from the seat's last Joined
// (or Resumed), and the highest Frame.seq received (Client.LastSeq of the
// lost connection).
type ResumeOptions struct {
	RoomID   string
	PlayerID uint32
	Token    []byte
	LastSeq  uint64
}

// Resumed is the answer to a Resume.
type Resumed struct {
	// Recovered: the seat is back, and the frames after LastSeq
	// (ReplayFrom..ReplayTo) arrive through OnFrame right after.
	Recovered bool
	// Failure says why not, when Recovered is false.
	Failure pb.ResumeFailure
	// NewToken is the token for the next Resume (the old one is spent).
	NewToken []byte
	// ReplayFrom and ReplayTo bound the frames replayed, inclusive.
	ReplayFrom, ReplayTo uint64
	// InputAck is the highest Send.Seq the relay accepted from the seat:
	// re-send what came after it.
	InputAck uint64
	// Snapshot, when the seat was not recovered but the relay seated the
	// player again (a new player id; or the same seat, resynced, after
	// RESUME_FAILURE_TOO_OLD), describes the room now, as a Join would.
	Snapshot *Joined
}

// Resume takes back a seat whose connection was lost. It must be the first
// request of this connection (after an Authenticate, if any). A relay that
// refuses the request itself (e.g. rate limits) answers with an error; the
// outcomes of a resume, good or bad, are in Resumed.
func (c *Client) Resume(ctx context.Context, o ResumeOptions) (*Resumed, error) {
	r, _, err := c.request(ctx, &pb.ClientMessage{Body: &pb.ClientMessage_Resume{Resume: &pb.Resume{
		RoomId:   o.RoomID,
		PlayerId: o.PlayerID,
		Token:    o.Token,
		LastSeq:  o.LastSeq,
	}}})
	if err != nil {
		return nil, fmt.Errorf("client: resume %q: %w", o.RoomID, err)
	}
	switch body := r.msg.GetBody().(type) {
	case *pb.ServerMessage_Resumed:
		rb := body.Resumed
		out := &Resumed{
			Recovered:  rb.GetRecovered(),
			Failure:    rb.GetFailure(),
			NewToken:   rb.GetNewToken(),
			ReplayFrom: rb.GetReplayFrom(),
			ReplayTo:   rb.GetReplayTo(),
			InputAck:   rb.GetInputAck(),
		}
		if rb.GetSnapshot() != nil {
			out.Snapshot = newJoined(rb.GetSnapshot())
		}
		return out, nil
	case *pb.ServerMessage_Error:
		return nil, fmt.Errorf("client: resume %q: %w", o.RoomID, serverError(body.Error))
	default:
		return nil, fmt.Errorf("client: resume %q: %w: %T", o.RoomID, ErrUnexpectedReply, body)
	}
}

// Authenticated is the answer to Authenticate.
type Authenticated struct {
	// UserID is the token's subject (empty from a relay without auth).
	UserID string
	// ExpiresAt is when the token expires (zero: never); joins after it
	// need a fresh token.
	ExpiresAt time.Time
}

// Authenticate presents an auth token for the whole connection, instead of
// one per Join. A refused token is a *ServerError matching ErrUnauthorized;
// its Reason says why.
func (c *Client) Authenticate(ctx context.Context, token string) (*Authenticated, error) {
	r, _, err := c.request(ctx, &pb.ClientMessage{Body: &pb.ClientMessage_Authenticate{Authenticate: &pb.Authenticate{Token: token}}})
	if err != nil {
		return nil, fmt.Errorf("client: authenticate: %w", err)
	}
	switch body := r.msg.GetBody().(type) {
	case *pb.ServerMessage_Authenticated:
		out := &Authenticated{UserID: body.Authenticated.GetUserId()}
		if ms := body.Authenticated.GetExpiresAtMs(); ms != 0 {
			out.ExpiresAt = time.UnixMilli(ms)
		}
		return out, nil
	case *pb.ServerMessage_Error:
		return nil, fmt.Errorf("client: authenticate: %w", serverError(body.Error))
	default:
		return nil, fmt.Errorf("client: authenticate: %w: %T", ErrUnexpectedReply, body)
	}
}
