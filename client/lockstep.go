package client

import (
	"fmt"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Lockstep rooms (docs/PROTOCOL.md, "Lockstep rooms"): every player sends
// an input per tick with SendInput; every member receives, for each tick,
// the same InputSet with every player's input (Options.OnInputSet).

// LockstepOptions make a room created by a Join a LOCKSTEP room.
type LockstepOptions struct {
	// Tolerance is how long after a tick's deadline the room still takes
	// inputs for it (rounded down to milliseconds). Zero means the relay's
	// default.
	Tolerance time.Duration
	// RepeatLastInput: a player without an input for a tick gets its last
	// one repeated (INPUT_FLAG_REPEATED) instead of an empty one.
	RepeatLastInput bool
}

// LockstepStart is where a player joining a LOCKSTEP room starts: load
// Snapshot (the state after SnapshotTick) when it is not empty, then apply
// the InputSets from FirstTick on; those up to Joined.Tick arrive right
// after the Joined.
type LockstepStart struct {
	FirstTick       uint64
	SnapshotTick    uint64
	Snapshot        []byte
	Tolerance       time.Duration
	RepeatLastInput bool
	// MaxLeadTicks is how far after the last closed tick an input may
	// target; MaxInputBytes the largest input payload.
	MaxLeadTicks  uint32
	MaxInputBytes uint32
}

func newLockstepStart(s *pb.LockstepStart) *LockstepStart {
	if s == nil {
		return nil
	}
	return &LockstepStart{
		FirstTick:       s.GetFirstTick(),
		SnapshotTick:    s.GetSnapshotTick(),
		Snapshot:        s.GetSnapshot(),
		Tolerance:       time.Duration(s.GetToleranceMs()) * time.Millisecond,
		RepeatLastInput: s.GetRepeatLastInput(),
		MaxLeadTicks:    s.GetMaxLeadTicks(),
		MaxInputBytes:   s.GetMaxInputBytes(),
	}
}

// PlayerInput is one player's input in an InputSet. Payload borrows from
// the read buffer: copy to keep.
type PlayerInput = wire.PlayerInputView

// Input flags of a PlayerInput (pb.InputFlag values).
const (
	InputClient           = uint8(pb.InputFlag_INPUT_FLAG_CLIENT)
	InputRepeated         = uint8(pb.InputFlag_INPUT_FLAG_REPEATED)
	InputReplacedByServer = uint8(pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER)
	InputNotPresent       = uint8(pb.InputFlag_INPUT_FLAG_NOT_PRESENT)
)

// InputSet is every player's input for one tick of a LOCKSTEP room. It and
// its payloads are valid only during Options.OnInputSet.
type InputSet struct {
	Tick uint64
	// Inputs holds one entry per member, by player id ascending.
	Inputs []PlayerInput
	// Lead is how long before the tick closed this player's input for it
	// arrived (HasLead false when it sent none): the figure to adapt the
	// input delay to.
	Lead    time.Duration
	HasLead bool
	// Raw is the InputSet's encoding, the same bytes for every member.
	Raw []byte
}

// InputOptions qualify one SendInput.
type InputOptions struct {
	// Seq numbers the input for de-duplication after a resume (Session
	// sets it); zero means none.
	Seq uint64
	// ChecksumTick and Checksum report this client's state checksum after
	// tick ChecksumTick (zero: none), for the room's DESYNC check.
	ChecksumTick uint64
	Checksum     uint64
}

// SendInput sends this player's input for tick (a LOCKSTEP room's tick
// after the last closed one). It encodes without allocating and writes
// before returning, like Send. A refusal (INPUT_TOO_LATE with its timing,
// ...) arrives through Options.OnError. tick 0 sends only the checksum.
func (c *Client) SendInput(tick uint64, payload []byte, opts InputOptions) error {
	v := wire.InputView{TargetTick: tick, Seq: opts.Seq, Payload: payload, ChecksumTick: opts.ChecksumTick, Checksum: opts.Checksum}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return fmt.Errorf("client: send input: %w", c.writeErr)
	}
	var ack uint64
	if seq := c.seq.Load(); seq > c.ackSent {
		ack, c.ackSent = seq, seq
		c.ackCarried.Store(true)
	}
	buf := wire.AppendInput(c.wbuf[:maxClientHeader], 0, ack, &v)
	c.wbuf = buf
	if err := c.writeFrameLocked(ws.OpBinary, buf, c.opts.WriteTimeout); err != nil {
		return fmt.Errorf("client: send input: %w", err)
	}
	return nil
}

// SendSnapshot uploads this player's simulation state after tick (a closed
// tick), for players joining late; send it when Options.OnSnapshotRequest
// asks. Success is not acknowledged; a refusal arrives through OnError.
func (c *Client) SendSnapshot(tick uint64, state []byte) error {
	b, err := proto.Marshal(&pb.ClientMessage{Body: &pb.ClientMessage_Snapshot{Snapshot: &pb.Snapshot{Tick: tick, State: state}}})
	if err != nil {
		return fmt.Errorf("client: send snapshot: %w", err)
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return fmt.Errorf("client: send snapshot: %w", c.writeErr)
	}
	buf := append(c.wbuf[:maxClientHeader], b...)
	c.wbuf = buf
	if err := c.writeFrameLocked(ws.OpBinary, buf, c.opts.WriteTimeout); err != nil {
		return fmt.Errorf("client: send snapshot: %w", err)
	}
	return nil
}

// lockstepFrame hands a frame's InputSet and snapshot requests to the
// callbacks, after OnFrame.
func (c *Client) lockstepFrame() error {
	r := &c.r
	if c.opts.OnSnapshotRequest != nil {
		for _, ev := range r.frame.Events {
			if ev.GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_SNAPSHOT_REQUESTED {
				c.opts.OnSnapshotRequest(ev.GetTick())
			}
		}
	}
	if r.msg.InputSet == nil || c.opts.OnInputSet == nil {
		return nil
	}
	if err := wire.ParseInputSet(r.msg.InputSet, &r.set); err != nil {
		return fmt.Errorf("client: decode input set: %w", err)
	}
	r.inputSet = InputSet{
		Tick:    r.set.Tick,
		Inputs:  r.set.Inputs,
		Lead:    time.Duration(r.msg.InputLeadUs) * time.Microsecond,
		HasLead: r.msg.HasInputLead,
		Raw:     r.msg.InputSet,
	}
	c.opts.OnInputSet(&r.inputSet)
	return nil
}
