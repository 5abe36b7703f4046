package room

import (
	"errors"
	"net/netip"
	"sync/atomic"
	"time"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Errors returned synchronously by Manager methods, or carried (as their
// ErrorCode) in the Error messages a room sends to a peer. Test with errors.Is.
var (
	ErrRoomFull      = errors.New("room: room full")
	ErrRoomNotFound  = errors.New("room: room not found")
	ErrNotInRoom     = errors.New("room: not in a room")
	ErrAlreadyInRoom = errors.New("room: already in a room")
	// ErrSeatBusy: the seat is between rooms (an earlier Join or a Leave
	// not yet answered). The caller holds the request and retries when the
	// Peer is told Ready, which keeps a connection's requests in order.
	ErrSeatBusy        = errors.New("room: seat busy with an earlier request")
	ErrInvalidArgument = errors.New("room: invalid argument")
	ErrRoomLimit       = errors.New("room: room limit reached")
	ErrDraining        = errors.New("room: server draining")
	ErrOverloaded      = errors.New("room: worker inbox full")
	ErrClosed          = errors.New("room: manager stopped") // also: the Seat was disconnected
	ErrPlayerNotFound  = errors.New("room: player not found")
	ErrMessageTooLarge = errors.New("room: message too large") // a payload that cannot fit in one frame
	// ErrUnauthorized: the join's Grant does not allow it (wrapped in an
	// *AuthError that says why).
	ErrUnauthorized = errors.New("room: not allowed")
)

// ErrorCode maps an error from this package to its wire code;
// ERROR_CODE_INTERNAL for anything it does not know.
func ErrorCode(err error) pb.ErrorCode {
	switch {
	case errors.Is(err, ErrRoomFull):
		return pb.ErrorCode_ERROR_CODE_ROOM_FULL
	case errors.Is(err, ErrRoomNotFound):
		return pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND
	case errors.Is(err, ErrNotInRoom):
		return pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM
	case errors.Is(err, ErrAlreadyInRoom):
		return pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM
	case errors.Is(err, ErrInvalidArgument):
		return pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	case errors.Is(err, ErrRoomLimit):
		return pb.ErrorCode_ERROR_CODE_ROOM_LIMIT_REACHED
	case errors.Is(err, ErrDraining):
		return pb.ErrorCode_ERROR_CODE_DRAINING
	case errors.Is(err, ErrOverloaded):
		return pb.ErrorCode_ERROR_CODE_OVERLOADED
	case errors.Is(err, ErrMessageTooLarge):
		return pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE
	case errors.Is(err, ErrUnauthorized):
		return pb.ErrorCode_ERROR_CODE_UNAUTHORIZED
	default:
		return pb.ErrorCode_ERROR_CODE_INTERNAL
	}
}

// AuthError is a join its Grant does not allow. Reason is one of the
// reasons of package auth ("room_not_allowed", "create_not_allowed",
// "option_not_allowed"), sent in Error.reason.
type AuthError struct {
	Reason string
	Detail string
}

func (e *AuthError) Error() string { return "room: not allowed (" + e.Reason + "): " + e.Detail }

// Unwrap makes errors.Is(err, ErrUnauthorized) hold.
func (e *AuthError) Unwrap() error { return ErrUnauthorized }

// Reasons of AuthErrors.
const (
	ReasonRoomNotAllowed   = "room_not_allowed"
	ReasonCreateNotAllowed = "create_not_allowed"
	ReasonOptionNotAllowed = "option_not_allowed"
)

// ErrorReason is the Error.reason of err ("" when it has none).
func ErrorReason(err error) string {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae.Reason
	}
	var re *reasonError
	if errors.As(err, &re) {
		return re.reason
	}
	return ""
}

// Peer is the room system's view of one connection. The server implements it.
// Every method is called from a worker goroutine and must not block. Calls
// normally come from the one worker that owns the peer's room, but while a
// seat moves between rooms of different workers two workers may call the
// same peer concurrently (e.g. an Error for a stale Send on the old worker
// and the Joined of the new room), so implementations must be safe for
// concurrent use. Calls made by one worker happen in order. After the
// Disconnect of the peer's seat, no method is called again.
type Peer interface {
	// Deliver hands over one encoded ServerMessage (a Frame, or the answer to a
	// request: Joined, Left, Error). Ownership of msg passes to the peer, which
	// must call msg.Release once the bytes are written or dropped. Messages
	// delivered to one peer must be written in the order of the calls.
	Deliver(msg *Outbound)
	// Congested reports whether the peer's unwritten outbound bytes are above
	// its soft limit. While it is, the room holds the peer's messages back in a
	// bounded backlog where latest-only updates are superseded.
	Congested() bool
	// Evict tells the peer that the room system removed it for a cause that
	// also ends the connection (slow consumer, kicked). For a kick, the Left
	// explaining it has already been Delivered; for a slow consumer nothing
	// was: detail says why, for the Error the peer sends before its Close
	// (frames the peer has not started writing may be dropped in favour of
	// that explanation). The peer closes its connection with the matching
	// close code.
	Evict(cause EvictCause, detail string)
	// Ready tells the peer that its seat left a transitional state (joining
	// or leaving): a request refused with ErrSeatBusy can be retried now.
	Ready()
	// JoinRefused tells the peer that a Join was refused by its room (not
	// found, full, not allowed): the Error has been delivered. The transport
	// counts it against the client's address (failed-join lockout).
	JoinRefused(code pb.ErrorCode)
	// Address is the client's address as the transport determined it
	// (behind trusted proxies, the forwarded one), invalid when unknown; for
	// the admin API. It is read from other goroutines, so it must not change
	// once the peer has a seat.
	Address() netip.Addr
}

// EvictCause says why a peer was removed and should be disconnected.
type EvictCause uint8

const (
	// EvictSlowConsumer: the peer's backlog passed Config.MaxBacklogBytes.
	EvictSlowConsumer EvictCause = iota + 1
	// EvictKicked: an operator kicked the player.
	EvictKicked
	// EvictReplaced: a Resume on another connection took the seat.
	EvictReplaced
)

// Outbound is one encoded ServerMessage on its way to a peer. Bytes()
// returns the message; the Headroom bytes before it are free for the
// transport to write its framing (a WebSocket header) in place, so the whole
// frame goes out as one contiguous write without a copy.
type Outbound struct {
	buf      []byte // buf[:headroom] free, buf[headroom:] the message
	headroom int
	pool     *outboundPool
	// refs counts the holders: the peer it is delivered to, plus the
	// seat's replay ring while it keeps the frame for a resume. The buffer
	// goes back to its pool with the last Release, so the bytes of a frame
	// kept for replay stay as they were sent.
	refs atomic.Int32
}

// Bytes returns the encoded ServerMessage. Valid until Release.
func (o *Outbound) Bytes() []byte { return o.buf[o.headroom:] }

// WithHeader returns the message with n bytes of headroom in front of it, for
// the caller to fill with its framing. n must not exceed Config.Headroom.
// Valid until Release.
func (o *Outbound) WithHeader(n int) []byte { return o.buf[o.headroom-n:] }

// Release gives up the caller's hold on the message; the buffer returns to
// its pool when no one holds it (the room may keep a frame for replay). The
// caller must not use the Outbound afterwards. Safe to call from any
// goroutine, once per hold.
func (o *Outbound) Release() {
	if o.refs.Add(-1) == 0 {
		o.pool.put(o)
	}
}

// retain adds a hold (the replay ring's).
func (o *Outbound) retain() { o.refs.Add(1) }

// Clock is the time source of the tick schedule. Tests use a fake clock to
// run ticks deterministically.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once after d on its channel.
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the workers use.
type Timer interface {
	C() <-chan time.Time
	// Reset changes the timer to fire after d (it may have fired or been
	// stopped already; pending fires are drained by the implementation).
	Reset(d time.Duration)
	Stop()
}

// Config configures a Manager. A zero field means the default given in its
// comment.
type Config struct {
	// Workers is the number of room worker goroutines. Zero means GOMAXPROCS.
	Workers int
	// Clock drives ticks. Nil means the system clock.
	Clock Clock

	// DefaultTickRate is the tick rate (Hz) of rooms that do not ask for one.
	// Zero means 30.
	DefaultTickRate int
	// MinTickRate and MaxTickRate bound the rate a room may ask for. Zero
	// means 1 and 120.
	MinTickRate int
	MaxTickRate int
	// AllowImmediate lets rooms opt out of batching (RoomOptions.immediate).
	AllowImmediate bool
	// TickPresets choose the tick rate of a room created without one from
	// its metadata: the first preset whose Key has the value Value in the
	// room's metadata gives the rate. Empty means none.
	TickPresets []TickPreset

	// MaxRooms caps the rooms of this Manager. Zero means 100,000.
	MaxRooms int
	// DefaultMaxPlayers is a room's capacity when its creator gives none.
	// Zero means 16, or MaxPlayersPerRoom if that is lower.
	DefaultMaxPlayers int
	// MaxPlayersPerRoom caps the capacity a room may ask for. Zero means 1,000.
	MaxPlayersPerRoom int
	// MaxMetadataBytes caps the total size of one metadata map (keys and
	// values). Zero means 4 KiB.
	MaxMetadataBytes int

	// MaxFrameBytes is the largest encoded ServerMessage a tick frame may
	// take; a bigger batch is split into several frames of the same tick. It
	// must be larger than the largest message the transport accepts, plus
	// 64 bytes. Zero means 256 KiB.
	MaxFrameBytes int
	// MaxBacklogBytes caps the messages held back for one congested peer;
	// past it the peer is evicted as a slow consumer. Zero means 1 MiB.
	MaxBacklogBytes int
	// InboxCapacity caps the relayed messages waiting in one worker's inbox;
	// past it Send fails with ErrOverloaded. Control commands (join, leave,
	// disconnect) are never refused: they are bounded by the number of seats.
	// Zero means 65,536.
	InboxCapacity int
	// SenderTickMessages and SenderTickBytes are each member's budget as a
	// sender for one tick (one flush, in immediate rooms); messages sent
	// with Manager.SendHeldBack may borrow the next tick's. Its messages
	// past the budget are dropped and it is told with Error{RATE_LIMITED},
	// once per tick. They keep one member's burst from flooding the others' frames
	// (and evicting them as slow consumers). Zero means 512 messages and
	// 64 KiB; the transport raises the byte budget to its largest message.
	SenderTickMessages int
	SenderTickBytes    int
	// CodeLength is the length of server-made room codes, 4 to 16. Zero
	// means 6.
	CodeLength int
	// SeatGrace is how long a member whose connection dropped without a
	// Leave keeps its seat (away, for a Resume) when its room does not ask
	// for another value; MaxSeatGrace caps what a room may ask for. Zero
	// means 15s and 2m; a negative SeatGrace releases seats at once (no
	// resume).
	SeatGrace    time.Duration
	MaxSeatGrace time.Duration
	// ReplayBytesPerSeat and ReplayBytesPerRoom bound the frames kept for
	// replay after a resume (until the client acknowledges them): past
	// them the oldest are dropped, and a Resume that needs them is answered
	// TOO_OLD. Zero means 256 KiB and 4 MiB.
	ReplayBytesPerSeat int
	ReplayBytesPerRoom int
	// ConcealRooms makes a Join to a full room fail with ROOM_NOT_FOUND,
	// like one to an unknown code, so that guessing codes tells nothing
	// about which rooms exist.
	ConcealRooms bool
	// InboxPerSeat caps the Sends one seat may have queued in its worker's
	// inbox; past it Send fails with ErrOverloaded for that seat only, so a
	// flooding connection cannot fill the inbox for the worker's other
	// rooms. Zero means 1,024.
	InboxPerSeat int
	// LockstepTolerance is how long after a tick's deadline a LOCKSTEP
	// room waits for inputs before closing it, when the room asks for no
	// other value; LockstepMaxTolerance caps what a room may ask for.
	// Zero means 5ms and 250ms.
	LockstepTolerance    time.Duration
	LockstepMaxTolerance time.Duration
	// LockstepMaxLeadTicks is how many ticks after the last closed one an
	// Input may target. Zero means 32.
	LockstepMaxLeadTicks int
	// LockstepMaxInputBytes caps one Input's payload. Zero means 256.
	LockstepMaxInputBytes int
	// LockstepLogBytes bounds the InputSets a LOCKSTEP room keeps for late
	// joiners (from its first tick, or from its last snapshot). Zero means
	// 1 MiB.
	LockstepLogBytes int
	// LockstepMaxSnapshotBytes caps a snapshot a member uploads (it is
	// handed to joiners inside Joined). Zero means 512 KiB.
	LockstepMaxSnapshotBytes int

	// KeepAliveInterval, if set, sends an empty Frame to every member of a
	// room that has had nothing to deliver for this long, so clients keep a
	// clock even in quiet rooms. Zero means off.
	KeepAliveInterval time.Duration

	// Headroom is the free space left before every Outbound message for the
	// transport's framing. Zero means 10 (the largest header of an unmasked
	// WebSocket frame).
	Headroom int

	// Observer receives tick measurements. Nil means none.
	Observer Observer
	// Hooks connect the rooms to a cluster layer. Nil means a single node.
	Hooks Hooks
}

// TickPreset maps a room metadata entry to a tick rate (see
// Config.TickPresets). Rate must lie within MinTickRate..MaxTickRate.
type TickPreset struct {
	Key, Value string
	Rate       int
}

// ResumeRequest is a decoded Resume.
type ResumeRequest struct {
	RequestID uint32
	Resume    *pb.Resume
	// Grant is the connection's auth, as for a Join (nil without auth).
	// A seat taken back keeps the user id it joined with; the grant
	// matters when the Resume fails and the player is seated anew.
	Grant *Grant
}

// JoinRequest is a decoded Join.
type JoinRequest struct {
	RequestID uint32
	// Join carries the client's request. The room keeps no reference to it
	// past the Join call's return (metadata maps are copied).
	Join *pb.Join
	// Grant is what the player's auth token allows; nil when the relay
	// runs without authentication (anyone may join and create).
	Grant *Grant
}

// Grant is what a verified auth token lets a player do, and who it is.
type Grant struct {
	// UserID is the player's stable user id (the token's sub), shown to
	// the room in Member.user_id and PLAYER_JOINED.
	UserID string
	// Metadata is player metadata set by the game's backend; its keys
	// override the client's own player metadata, so the client cannot
	// forge them.
	Metadata map[string]string
	// AllowsRoom reports whether the token admits room id; nil admits any.
	AllowsRoom func(id string) bool
	// AnyRoom: the token names no rooms, so it may create a room with a
	// server-made code.
	AnyRoom bool
	// Create: the player may create rooms.
	Create bool
	// MaxTickRate and MaxPlayers bound the options of a room the player
	// creates (explicit ones above are refused, defaults are lowered to
	// them). Zero means no bound beyond the relay's.
	MaxTickRate int
	MaxPlayers  int
}

// RoomInfo is a summary of one room, for listings.
type RoomInfo struct {
	ID         string
	Players    int
	MaxPlayers int
	TickRate   int // zero in immediate mode
	Immediate  bool
	// Lockstep: a LOCKSTEP room (its tick rate cannot change).
	Lockstep  bool
	Tick      uint64
	CreatedAt time.Time
	// MessagesIn counts relayed messages received since the room was created.
	MessagesIn uint64
	// Deliveries counts messages delivered to members.
	Deliveries uint64
	// Lateness of the last tick and the largest seen: how long after its
	// deadline the tick ran.
	LastLateness time.Duration
	MaxLateness  time.Duration
	// Overruns counts ticks that ran more than one period late (and skipped
	// tick numbers).
	Overruns uint64
	Metadata map[string]string
}

// RoomDetail is everything about one room, for the admin API.
type RoomDetail struct {
	RoomInfo
	Host    uint32
	Members []MemberInfo
}

// MemberInfo is one member of a room.
type MemberInfo struct {
	PlayerID uint32
	// UserID is from the player's auth token ("" without auth).
	UserID string
	// Address is the client's address as the transport determined it
	// (behind trusted proxies, the forwarded one); invalid when unknown.
	Address  netip.Addr
	JoinedAt time.Time
	Metadata map[string]string
	// Backlog is the bytes held back because the peer is congested.
	Backlog int
	// Away: the player's connection dropped and its seat is kept for a
	// resume.
	Away bool
}

// RoomUpdate changes a live room. Nil fields are left unchanged. Changes
// take effect at the room's next tick.
type RoomUpdate struct {
	TickRate   *int // zero switches to immediate mode (if allowed)
	MaxPlayers *int
}

// Stats are counters summed over all workers.
type Stats struct {
	Rooms      int
	Players    int
	MessagesIn uint64 // relayed messages accepted
	// MessagesDropped counts messages accepted from a client but delivered
	// to nobody: refused with ErrOverloaded (InboxFull, OverInboxShare),
	// over their sender's tick budget (OverBudget), or latest-only updates
	// superseded before their tick (Superseded); once per message, not per
	// recipient. It is the sum of those four.
	MessagesDropped uint64
	// InboxFull counts Sends refused (ErrOverloaded) because their worker's
	// inbox was full.
	InboxFull uint64
	// Superseded counts latest-only updates superseded by a newer one
	// before their tick (once per message).
	Superseded    uint64
	Deliveries    uint64 // message copies put into frames
	Frames        uint64 // frames handed to peers
	FrameBytes    uint64
	Ticks         uint64
	TickOverruns  uint64
	SlowConsumers uint64 // peers evicted as slow consumers
	// OverBudget counts messages dropped for passing their sender's budget
	// of the tick (SenderTickMessages, SenderTickBytes).
	OverBudget uint64
	// OverInboxShare counts Sends refused (ErrOverloaded) because their
	// seat already had InboxPerSeat messages queued.
	OverInboxShare uint64
	// BacklogSuperseded counts latest-only copies dropped from congested
	// members' backlogs by a newer update (one per recipient).
	BacklogSuperseded uint64
	// Resumes counts Resume requests by outcome: "recovered", or the
	// ResumeFailure name without its prefix ("seat_expired",
	// "bad_token", "too_old", "room_gone").
	Resumes map[string]uint64
	// ReplayedFrames counts frames replayed after resumes.
	ReplayedFrames uint64
	// SeatsAway is the members whose connection dropped and whose seat is
	// kept for a resume, now; SeatsExpired counts those whose grace ran out.
	SeatsAway    int
	SeatsExpired uint64
	// ReplayBytes is the bytes of frames kept for replay, now.
	ReplayBytes int64
	// DuplicateInputs counts Sends and Inputs dropped because their seq
	// was not above the seat's last accepted one (re-sends after a resume).
	DuplicateInputs uint64
	// Lockstep rooms: InputSets closed (one per room and tick) and
	// delivered (one per member: frames carrying one); Inputs refused
	// for a tick already closed; inputs the room filled in (REPEATED or
	// REPLACED_BY_SERVER); DESYNC reports; snapshots taken.
	LockstepInputSets          uint64
	LockstepInputSetsDelivered uint64
	LockstepLateInputs         uint64
	LockstepReplacedInputs     uint64
	LockstepDesyncs            uint64
	LockstepSnapshots          uint64
}

// Observer receives per-tick measurements (for metrics). Called on worker
// goroutines; must be cheap and must not block. May be nil.
type Observer interface {
	// ObserveTick reports one room tick: how late it ran after its deadline
	// and how long building and handing over its frames took.
	ObserveTick(lateness, duration time.Duration)
}
