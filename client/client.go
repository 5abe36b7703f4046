// Package client is the Go SDK of tickrelay: it connects to a relay over
// WebSocket, joins a room, sends messages to the other members and receives
// the room's frames.
//
// # Receiving
//
// Frames are delivered to one callback, Options.OnFrame, called on the
// connection's reader goroutine with a *FrameView whose deliveries borrow
// from the read buffer: valid only until OnFrame returns (as bufio's
// "valid until the next read"). This is the allocation-light choice: a
// channel of frames would need each frame copied out of the read buffer (an
// allocation per frame, or a pool whose ownership every caller must get
// right) plus a channel hand-off and a goroutine switch per frame, which is
// what a load generator with 140,000 deliveries per second cannot afford.
// The callback costs nothing beyond decoding; a caller that wants a channel
// copies what it needs in OnFrame and sends it on. Room events (joins,
// leaves, host changes) are rare and decoded into freshly allocated
// *pb.RoomEvent values that the callback may keep.
//
// Callbacks must not block: while one runs, the connection reads nothing.
// They may call Send and Close, but not Join, Leave or Ping, which wait for
// the reader goroutine and would deadlock.
//
// # Concurrency
//
// A Client is safe for concurrent use. Requests (Join, Leave, Ping) are
// matched with their answers by request_id, so several may be in flight.
//
// # Lifetime
//
// The context given to Dial bounds the connect and the handshake only (as
// with net.Dialer.DialContext); contexts given to requests bound the wait
// for their answer. Close ends the connection and returns once the reader
// goroutine is gone: a closed Client leaves no goroutine behind.
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/tickrelay/tickrelay/internal/wsclient"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Subprotocol is the WebSocket subprotocol the client offers.
const Subprotocol = "tickrelay.v1"

// Options configures a connection. A zero field means the default given in
// its comment.
type Options struct {
	// OnFrame receives every Frame of the room, on the reader goroutine. f
	// and the slices it holds are valid only during the call (f.Events
	// excepted). Nil means frames are dropped.
	OnFrame func(f *FrameView)
	// OnInputSet receives the InputSet of every frame that has one (LOCKSTEP
	// rooms), after OnFrame, on the reader goroutine; s is valid only during
	// the call. Nil means InputSets are not decoded.
	OnInputSet func(s *InputSet)
	// OnSnapshotRequest is called (reader goroutine) when a LOCKSTEP room
	// asks this player for a snapshot of its simulation at or after tick
	// earliest: answer with SendSnapshot, from the goroutine that owns the
	// simulation. Nil means requests are ignored (the room asks another
	// member two seconds later).
	OnSnapshotRequest func(earliest uint64)
	// OnLeft is called when the server removes this player from its room
	// without being asked (kicked, room closed, slow consumer). Nil means
	// ignore.
	OnLeft func(l Left)
	// OnError receives Error messages that answer no pending request, such
	// as the refusal of a Send (which has no answer when it succeeds). Nil
	// means ignore.
	OnError func(err *ServerError)
	// OnClose is called once when the connection has ended, after every
	// pending request has failed, with the code and reason of the server's
	// Close frame, or 1006 and the local cause when there was none.
	OnClose func(code int, reason string)

	// DialTimeout bounds the connect and the WebSocket handshake. Zero means
	// 10s.
	DialTimeout time.Duration
	// WriteTimeout bounds each write to the socket: a Send blocks at most this
	// long (and at least half of it) when the socket buffer is full, then
	// fails and closes the connection (a partial frame leaves it unusable).
	// Zero means 5s.
	WriteTimeout time.Duration
	// CloseTimeout is how long Close waits for the server to answer its Close
	// frame before dropping the connection. Zero means 2s.
	CloseTimeout time.Duration
	// PingInterval, if set, sends a WebSocket ping whenever this much time
	// passes, and closes the connection (1006, "keepalive timeout") when
	// nothing at all arrived during a whole interval after a ping. Zero
	// means off: the relay pings idle clients itself, and the client answers.
	PingInterval time.Duration
	// AckInterval, if set, acknowledges the frames received within this
	// long, as the protocol asks of an idle client: their acknowledgement
	// rides on the next Send or Input when the player is sending, and goes
	// alone in an ack-only message when it sent nothing for a whole
	// interval. Until frames are acknowledged the relay keeps them for a
	// resume, so an idle player that never acknowledges costs the relay
	// memory. Zero means off: call Ack yourself (Session does, on a timer).
	AckInterval time.Duration
	// MaxMessageSize caps one message from the server; a larger one closes
	// the connection with 1009. Zero means 1 MiB.
	MaxMessageSize int
	// ReadBufferSize is the size of the socket read buffer. Zero means 4 KiB.
	ReadBufferSize int
	// LocalAddr, if set, is the local address to dial from (e.g. a
	// *net.TCPAddr on 127.0.0.2 to use another source address's ephemeral
	// ports).
	LocalAddr net.Addr
	// Header holds extra HTTP headers for the handshake request.
	Header http.Header

	// seatHook, set by Session, sees every Joined and Resumed on the reader
	// goroutine before the frames that follow it.
	seatHook func(m *pb.ServerMessage)
}

func (o Options) withDefaults() Options {
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 1 << 20
	}
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 4 << 10
	}
	return o
}

// FrameView is one Frame: everything the room addressed to this player during
// one tick. Deliveries borrow from the read buffer and are valid only until
// OnFrame returns; Events are freshly allocated and may be kept.
type FrameView struct {
	// Tick is the room's tick number; it increases from frame to frame.
	Tick uint64
	// Seq is the frame's sequence number in this seat: 1 for the first
	// frame after Joined, then contiguous, across resumes too (zero from a
	// relay that does not number frames).
	Seq uint64
	// Deliveries are the relayed messages, in the order the room received
	// them. Payloads are views into the read buffer: copy to keep.
	Deliveries []Delivery
	// Events are membership and room changes, in order. Apply PLAYER_JOINED
	// events before the deliveries and the others after.
	Events []*pb.RoomEvent
}

// Delivery is one relayed message: Sender (player id), Kind and Payload.
type Delivery = wire.DeliveryView

// Left tells why the player left its room.
type Left struct {
	RoomID  string
	Reason  pb.LeaveReason
	Message string
}

// Client is one connection to a relay. Safe for concurrent use.
type Client struct {
	conn net.Conn
	opts Options

	writeMu  sync.Mutex // guards wbuf, writeErr and every write to conn
	wbuf     []byte
	writeErr error                  // sticky: once a write failed or Close began, nothing more is written
	deadline wsclient.WriteDeadline // of the conn, moved as seldom as possible

	nextID atomic.Uint32

	mu       sync.Mutex // guards pending and closeErr
	pending  map[uint32]chan reply
	closeErr *CloseError // set when the connection has ended

	done       chan struct{} // closed when the connection has ended and requests have failed
	closeOnce  sync.Once
	closing    atomic.Bool // Close was called
	inCallback atomic.Bool // the reader goroutine is running a user callback

	// Keep-alive state, used only when Options.PingInterval is set.
	keepalive  *time.Timer
	frames     atomic.Uint64 // WebSocket frames read so far
	lastFrames uint64        // frames at the previous keep-alive tick; owned by the keep-alive timer
	pinged     bool          // a keep-alive ping went out at the previous tick; owned by the timer
	deadReason atomic.Pointer[string]

	// Frame sequence of the current seat: seq is the highest Frame.seq
	// received (set by the reader goroutine, which also resets it when a
	// Joined or Resumed starts a seat's numbering); ackSent the highest
	// acknowledged to the relay (guarded by writeMu).
	seq     atomic.Uint64
	ackSent uint64
	// With Options.AckInterval: ackTimer runs ackDue; ackArmed says it is
	// set (the reader goroutine arms it at a new frame); ackCarried that a
	// Send or Input carried an ack since it was armed.
	ackTimer   *time.Timer
	ackArmed   atomic.Bool
	ackCarried atomic.Bool

	r reader // owned by the reader goroutine
}

// Dial connects to the relay at url (ws://host:port/ws) and starts the
// connection's reader goroutine. ctx bounds the connect and handshake only.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	local := opts.LocalAddr
	d := ws.Dialer{
		// Optional, but lets a future protocol version be negotiated.
		Protocols:      []string{Subprotocol},
		Timeout:        opts.DialTimeout,
		ReadBufferSize: opts.ReadBufferSize,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: local}
			return nd.DialContext(ctx, network, addr)
		},
	}
	if len(opts.Header) > 0 {
		d.Header = ws.HandshakeHeaderHTTP(opts.Header)
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		var status ws.StatusError
		if errors.As(err, &status) {
			err = &HTTPStatusError{Status: int(status)}
		}
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, opts.ReadBufferSize)
	}
	// else: the server spoke right after the handshake; keep reading through
	// the handshake's buffer, which holds those bytes.
	c := &Client{
		conn:    conn,
		opts:    opts,
		pending: make(map[uint32]chan reply),
		done:    make(chan struct{}),
	}
	c.r.br = br
	c.wbuf = make([]byte, maxClientHeader, 256)
	if opts.PingInterval > 0 {
		c.keepalive = time.AfterFunc(opts.PingInterval, c.keepaliveTick)
	}
	if opts.AckInterval > 0 {
		c.ackTimer = time.AfterFunc(opts.AckInterval, c.ackDue)
		c.ackTimer.Stop() // armed by the first frame
	}
	go c.readLoop()
	return c, nil
}

// Close ends the connection: it sends a Close frame (1000), waits up to
// Options.CloseTimeout for the server's answer, drops the TCP connection and
// returns once the connection has ended (Done is closed): no callback but
// OnClose runs after that, and OnClose may still be running. Pending requests
// fail with ErrClosed. Close is idempotent and safe to call concurrently.
//
// Called while one of the Client's callbacks runs, whether from the callback
// or from another goroutine, Close sends its Close frame and returns without
// waiting (a callback runs on the reader goroutine, which cannot go on
// before it returns); the close handshake then completes in the background,
// within Options.CloseTimeout, and callbacks for what the server sent before
// its answer may still run.
func (c *Client) Close() error {
	// Read once: a callback may start or end while Close runs, and the two
	// decisions below must agree.
	inCallback := c.inCallback.Load()
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.writeMu.Lock()
		if c.writeErr == nil {
			// A short write deadline: a peer that does not read must not
			// hold Close for the whole WriteTimeout.
			_ = c.writeControlLocked(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""), c.opts.CloseTimeout)
			c.writeErr = ErrClosed
		}
		c.writeMu.Unlock()
		// The socket stays open until the server's answer has been read
		// (the reader ends the connection then), or until the timeout: a
		// Close that dropped it at once would lose that answer and end
		// the connection as 1006.
		if inCallback {
			go c.awaitCloseAnswer()
		} else {
			c.awaitCloseAnswer()
		}
	})
	// Look again: a callback that started meanwhile (for a frame read before
	// the socket was dropped) may be waiting for Close's caller. Done, not
	// the reader's end, so that an OnClose that waits for the caller does
	// not wait forever either.
	if !inCallback && !c.inCallback.Load() {
		<-c.done
	}
	return nil
}

// awaitCloseAnswer drops the socket once the connection has ended or
// Options.CloseTimeout has passed.
func (c *Client) awaitCloseAnswer() {
	t := time.NewTimer(c.opts.CloseTimeout)
	select {
	case <-c.done:
	case <-t.C:
	}
	t.Stop()
	_ = c.conn.Close()
}

// Done returns a channel closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns how the connection ended (a *CloseError), or nil while it is
// open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeErr == nil {
		return nil
	}
	return c.closeErr
}

// LastSeq returns the highest Frame.seq received in the current seat: what
// a Resume names as last_seq after this connection is lost.
func (c *Client) LastSeq() uint64 { return c.seq.Load() }

// LocalAddr returns the local address of the connection.
func (c *Client) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// keepaliveTick runs on its own timer goroutine every PingInterval.
func (c *Client) keepaliveTick() {
	if c.closing.Load() {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	n := c.frames.Load()
	if c.pinged && n == c.lastFrames {
		// Nothing arrived since the last ping, not even its pong.
		reason := "keepalive timeout"
		c.deadReason.Store(&reason)
		_ = c.conn.Close()
		return
	}
	c.lastFrames, c.pinged = n, true
	c.writeMu.Lock()
	if c.writeErr == nil {
		_ = c.writeControlLocked(ws.OpPing, nil, c.opts.WriteTimeout)
	}
	c.writeMu.Unlock()
	// Re-arm only while the connection lives: readLoop sets closeErr under
	// mu before it stops the timer, so a tick racing with the end cannot
	// re-arm a stopped timer.
	c.mu.Lock()
	if c.closeErr == nil {
		c.keepalive.Reset(c.opts.PingInterval)
	}
	c.mu.Unlock()
}
