package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// SessionOptions configures a Session. A zero field means the default given
// in its comment.
type SessionOptions struct {
	// Conn configures each connection. Its callbacks are not used: the
	// session's own below replace them.
	Conn Options
	// Join is the room to join. After a seat is lost for good, the session
	// joins Join.RoomID (the room's code, when Join.Create made it) again.
	Join JoinOptions
	// Token, if set, returns the auth token for a new connection, presented
	// with Authenticate before the Join or Resume; it is called again for
	// every reconnect, so it can fetch a fresh one.
	Token func(ctx context.Context) (string, error)

	// OnFrame receives every frame of the seat exactly once and in order,
	// across resumes (replayed frames included), on the reader goroutine of
	// the connection; as with Options.OnFrame, f is valid during the call.
	OnFrame func(f *FrameView)
	// OnResync is called when the seat could not be taken back as it was:
	// j is the seat the player has now (a new player id, or the same seat
	// when the frames it missed were no longer kept), and the game rebuilds
	// its state from it. why is the relay's reason (UNSPECIFIED when the
	// relay keeps no seats for resume). Called on the reader goroutine,
	// before the first frame of the seat.
	OnResync func(j *Joined, why pb.ResumeFailure)
	// OnLeft is called when the relay removed the player from the room
	// (kicked, room closed); the session then ends. Reader goroutine.
	OnLeft func(l Left)
	// OnError receives errors that answer no request (a refused Send).
	// Reader goroutine.
	OnError func(err *ServerError)
	// OnDisconnect is called when the connection was lost and the session
	// starts reconnecting; OnReconnect when it is back (r says how: with
	// the seat recovered or not). Called on the session's goroutine.
	OnDisconnect func(err error)
	OnReconnect  func(r *Resumed)

	// ReconnectMin and ReconnectMax bound the backoff between reconnect
	// attempts: attempt n waits a random time up to min(ReconnectMax,
	// ReconnectMin·2ⁿ) ("full jitter", so that clients dropped together do
	// not come back together). Zero means 100ms and 5s.
	ReconnectMin, ReconnectMax time.Duration
	// ReconnectTimeout is how long the session tries to reconnect before it
	// ends with the error that lost the connection. Zero means the relay's
	// seat grace (Joined.SeatGrace) plus 10s, or 30s without one.
	ReconnectTimeout time.Duration
	// AckInterval is how soon the session tells the relay which frames it
	// holds: on its next Send, or alone when it sent nothing for that long
	// (the connection's Options.AckInterval). Zero means 250ms.
	AckInterval time.Duration
	// ResendInputs is how many of the latest Sends are kept to be re-sent
	// after a resume, when the relay did not get them before the connection
	// dropped (Resumed.InputAck); it also caps the Sends buffered while
	// reconnecting (beyond it Send fails with ErrBacklogFull). Zero means
	// 256.
	ResendInputs int
}

func (o SessionOptions) withDefaults() SessionOptions {
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 5 * time.Second
	}
	if o.AckInterval == 0 {
		o.AckInterval = 250 * time.Millisecond
	}
	if o.ResendInputs == 0 {
		o.ResendInputs = 256
	}
	return o
}

// ErrBacklogFull is returned by Session.Send while reconnecting, when
// SessionOptions.ResendInputs Sends are already waiting.
var ErrBacklogFull = errors.New("client: session backlog full while reconnecting")

// SessionStats counts what a Session went through.
type SessionStats struct {
	// Reconnects is the number of connections after the first.
	Reconnects int
	// Recovered counts resumes that took the seat back with every frame;
	// Resyncs the times the game had to resynchronise instead (OnResync).
	Recovered, Resyncs int
	// FramesReplayed is the number of frames the relay replayed on resume.
	FramesReplayed uint64
	// InputsResent counts Sends re-sent after a resume because the relay
	// had not got them; InputsLost those that could not be (the seat was
	// lost, or they were older than the ResendInputs kept).
	InputsResent, InputsLost int
}

// pendingInput is one Send (or lockstep Input, when input is set) kept
// for re-sending.
type pendingInput struct {
	payload []byte
	opts    SendOptions
	input   bool
	tick    uint64
	inOpts  InputOptions
}

// seq is the input's sequence number.
func (in *pendingInput) seq() uint64 {
	if in.input {
		return in.inOpts.Seq
	}
	return in.opts.Seq
}

// send writes the input on c.
func (in *pendingInput) send(c *Client) error {
	if in.input {
		return c.SendInput(in.tick, in.payload, in.inOpts)
	}
	return c.Send(in.payload, in.opts)
}

// Session keeps one player's seat in a room across lost connections: when
// the connection drops it reconnects with backoff and resumes the seat, the
// relay replays the frames the player missed (OnFrame sees each frame once,
// in order), and Sends the relay did not get are sent again. It is the SDK
// side of docs/PROTOCOL.md, "Resume". Safe for concurrent use.
//
// A Session runs one goroutine besides its connection's reader; Close ends
// both.
type Session struct {
	url  string
	opts SessionOptions

	mu       sync.Mutex
	conn     *Client // the current connection (nil before the first)
	live     bool    // conn holds the seat and may send
	seat     *Joined // the current seat
	token    []byte  // the seat's resume token
	inputSeq uint64  // the last Send's Seq
	inputs   []pendingInput
	offline  int // of inputs, those sent while reconnecting
	// rejoinWhy, when set, is the failure that made the session join the
	// room again: the next Joined is a resync.
	rejoinWhy pb.ResumeFailure
	rejoining bool
	stats     SessionStats
	err       error

	closing chan struct{}
	left    chan struct{} // a Left ended the session: close the connection
	done    chan struct{}
	once    sync.Once
}

// Connect dials url, joins opts.Join and returns the session once the seat
// is taken; ctx bounds this first connect and join. Reconnects later are
// bounded by SessionOptions.ReconnectTimeout.
func Connect(ctx context.Context, url string, opts SessionOptions) (*Session, error) {
	if opts.Join.RoomID == "" && !opts.Join.Create {
		return nil, ErrNoRoomID
	}
	s := &Session{
		url:     url,
		opts:    opts.withDefaults(),
		closing: make(chan struct{}),
		left:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	j, err := c.Join(ctx, s.opts.Join)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	s.mu.Lock()
	s.conn, s.live = c, true
	s.setSeatLocked(j)
	s.mu.Unlock()
	go s.run()
	return s, nil
}

// Joined returns the current seat: the room, this player's id (which
// changes after a resync) and the room as it was at the seat's start.
func (s *Session) Joined() *Joined {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seat
}

// Stats returns what the session went through so far.
func (s *Session) Stats() SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Done is closed when the session has ended: Close, a Left, a close the
// relay says not to reconnect after, or reconnecting for longer than
// ReconnectTimeout.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended (nil after Close, or while it runs).
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Send relays payload like Client.Send, numbered so that the relay applies
// it once even when it is re-sent after a resume. While the session is
// reconnecting the Send is buffered (up to ResendInputs) and goes out after
// the resume. Options.Seq is set by the session.
func (s *Session) Send(payload []byte, opts SendOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.isClosing() {
		return fmt.Errorf("client: session send: %w", ErrClosed)
	}
	if !s.live && s.offline >= s.opts.ResendInputs {
		return ErrBacklogFull
	}
	s.inputSeq++
	opts.Seq = s.inputSeq
	opts.Targets = append([]uint32(nil), opts.Targets...)
	return s.queueLocked(pendingInput{payload: append([]byte(nil), payload...), opts: opts})
}

// SendInput sends a lockstep input like Client.SendInput, numbered in the
// same sequence as Send so that the relay takes it once even when it is
// re-sent after a resume (one for a tick that closed meanwhile is answered
// INPUT_TOO_LATE and the room filled that tick in). Buffered while
// reconnecting, like Send. opts.Seq is set by the session.
func (s *Session) SendInput(tick uint64, payload []byte, opts InputOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.isClosing() {
		return fmt.Errorf("client: session send input: %w", ErrClosed)
	}
	if !s.live && s.offline >= s.opts.ResendInputs {
		return ErrBacklogFull
	}
	s.inputSeq++
	opts.Seq = s.inputSeq
	return s.queueLocked(pendingInput{payload: append([]byte(nil), payload...), input: true, tick: tick, inOpts: opts})
}

// SendSnapshot uploads a lockstep snapshot (Client.SendSnapshot) on the
// current connection; while reconnecting it fails (the room asks again).
func (s *Session) SendSnapshot(tick uint64, state []byte) error {
	s.mu.Lock()
	c, live := s.conn, s.live
	s.mu.Unlock()
	if !live || c == nil {
		return fmt.Errorf("client: session send snapshot: %w", ErrClosed)
	}
	return c.SendSnapshot(tick, state)
}

// queueLocked keeps in for re-sending and sends it when live. s.mu must be
// held.
func (s *Session) queueLocked(in pendingInput) error {
	if len(s.inputs) == s.opts.ResendInputs {
		copy(s.inputs, s.inputs[1:]) // the oldest was surely delivered or is beyond help
		s.inputs = s.inputs[:len(s.inputs)-1]
	}
	s.inputs = append(s.inputs, in)
	if !s.live {
		s.offline++
		return nil
	}
	// A failed write means the connection is going: the input stays
	// buffered, and the resume sends it again if the relay lacks it.
	_ = in.send(s.conn)
	return nil
}

// Close leaves the room, closes the connection and stops reconnecting. It
// returns once the session's goroutines are gone.
func (s *Session) Close() error {
	s.once.Do(func() { close(s.closing) })
	<-s.done
	return nil
}

func (s *Session) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// dial opens a connection wired to the session and authenticates it.
func (s *Session) dial(ctx context.Context) (*Client, error) {
	o := s.opts.Conn
	o.OnFrame = s.opts.OnFrame
	o.OnError = s.opts.OnError
	o.OnLeft = s.onLeft
	o.OnClose = nil
	o.AckInterval = s.opts.AckInterval
	o.seatHook = s.onSeat
	c, err := Dial(ctx, s.url, o)
	if err != nil {
		return nil, err
	}
	if s.opts.Token != nil {
		token, err := s.opts.Token(ctx)
		if err == nil {
			_, err = c.Authenticate(ctx, token)
		} else {
			err = fmt.Errorf("client: session token: %w", err)
		}
		if err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	return c, nil
}

// run watches the connection and reconnects when it is lost (each
// connection acknowledges frames itself: Options.AckInterval).
func (s *Session) run() {
	defer close(s.done)
	for {
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		select {
		case <-s.closing:
			s.leave(c)
			return
		case <-s.left:
			_ = c.Close()
			return
		case <-c.Done():
		}
		err := c.Err()
		s.mu.Lock()
		s.live = false
		ended := s.err != nil
		s.mu.Unlock()
		if ended { // a Left ended the session
			return
		}
		var ce *CloseError
		if errors.As(err, &ce) && !closes.MayReconnect(ce.Code) {
			s.end(err)
			return
		}
		if s.opts.OnDisconnect != nil {
			s.opts.OnDisconnect(err)
		}
		if !s.reconnect(c.LastSeq(), err) {
			return
		}
	}
}

// leave ends the session on Close: a Leave so the seat is not kept, then
// the connection's close.
func (s *Session) leave(c *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Conn.withDefaults().CloseTimeout)
	defer cancel()
	s.mu.Lock()
	live := s.live
	s.live = false
	s.mu.Unlock()
	if live {
		_ = c.Leave(ctx)
	}
	_ = c.Close()
}

// end records why the session ended.
func (s *Session) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.live = false
	s.mu.Unlock()
}

// reconnect dials again with backoff until the seat is back (recovered or
// resynced), the session is closed, or ReconnectTimeout passes. It reports
// whether the session goes on.
func (s *Session) reconnect(lastSeq uint64, cause error) bool {
	s.mu.Lock()
	timeout := s.opts.ReconnectTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
		if s.seat.SeatGrace > 0 {
			timeout = s.seat.SeatGrace + 10*time.Second
		}
	}
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	go func() {
		select {
		case <-s.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wait time.Duration
	for attempt := 0; ; attempt++ {
		ceiling := min(s.opts.ReconnectMax, s.opts.ReconnectMin<<min(attempt, 20))
		if wait == 0 {
			wait = rand.N(ceiling) + 1
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if !s.isClosing() {
				s.end(fmt.Errorf("client: session: no reconnect within %v: %w", timeout, cause))
			}
			return false
		case <-t.C:
		}
		wait = 0
		r, err := s.resume(ctx, lastSeq)
		if err == nil {
			s.mu.Lock()
			s.stats.Reconnects++
			s.mu.Unlock()
			if s.opts.OnReconnect != nil {
				s.opts.OnReconnect(r)
			}
			return true
		}
		if permanent(err) {
			s.end(err)
			return false
		}
		var se *ServerError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			wait = se.RetryAfter // the relay said when
		}
		cause = err
	}
}

// permanent tells errors that another attempt would meet again.
func permanent(err error) bool {
	var hs *HTTPStatusError
	if errors.As(err, &hs) {
		return hs.Status >= 400 && hs.Status < 500 && hs.Status != http.StatusRequestTimeout && hs.Status != http.StatusTooManyRequests
	}
	var ce *CloseError
	if errors.As(err, &ce) {
		return !closes.MayReconnect(ce.Code)
	}
	return errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrRoomNotFound)
}

// resume opens a connection and takes the seat back: a Resume, or a Join
// when the seat cannot be resumed. On success the connection is the
// session's, with the inputs the relay lacks sent again.
func (s *Session) resume(ctx context.Context, lastSeq uint64) (*Resumed, error) {
	c, err := s.dial(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	seat, token := s.seat, s.token
	s.mu.Unlock()
	var r *Resumed
	if len(token) > 0 {
		r, err = c.Resume(ctx, ResumeOptions{RoomID: seat.RoomID, PlayerID: seat.PlayerID, Token: token, LastSeq: lastSeq})
		if err != nil {
			_ = c.Close()
			return nil, err
		}
	} else {
		r = &Resumed{} // the relay keeps no seats: join again
	}
	if !r.Recovered && r.Snapshot == nil {
		// The seat and the room's place for it are gone: join again.
		j := s.opts.Join
		j.RoomID, j.Create = seat.RoomID, false
		s.mu.Lock()
		s.rejoinWhy, s.rejoining = r.Failure, true
		s.mu.Unlock()
		_, err := c.Join(ctx, j)
		s.mu.Lock()
		s.rejoining = false
		s.mu.Unlock()
		if err != nil {
			_ = c.Close()
			return nil, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = c
	if r.Recovered {
		s.stats.Recovered++
		s.stats.FramesReplayed += r.ReplayTo + 1 - r.ReplayFrom
		s.resendLocked(c, r.InputAck)
	} else {
		// A new seat: the inputs of the old one are moot.
		s.stats.InputsLost += len(s.inputs)
		s.inputs = s.inputs[:0]
	}
	s.live, s.offline = true, 0
	return r, nil
}

// resendLocked sends the kept inputs the relay did not get (Seq above
// inputAck), in order, before any new Send. s.mu must be held.
func (s *Session) resendLocked(c *Client, inputAck uint64) {
	keep := s.inputs[:0]
	for _, in := range s.inputs {
		if in.seq() > inputAck {
			keep = append(keep, in)
		}
	}
	s.inputs = keep
	if len(keep) > 0 && keep[0].seq() > inputAck+1 {
		s.stats.InputsLost += int(keep[0].seq() - inputAck - 1)
	}
	for i := range keep {
		_ = keep[i].send(c)
	}
	s.stats.InputsResent += len(keep)
}

// onSeat sees every Joined and Resumed on the reader goroutine, before the
// frames that follow them, so that OnResync runs before the new seat's first
// frame.
func (s *Session) onSeat(m *pb.ServerMessage) {
	var j *Joined
	var why pb.ResumeFailure
	s.mu.Lock()
	switch body := m.GetBody().(type) {
	case *pb.ServerMessage_Joined:
		if !s.rejoining {
			s.mu.Unlock()
			return // the first Join: Connect takes it
		}
		j, why = newJoined(body.Joined), s.rejoinWhy
	case *pb.ServerMessage_Resumed:
		if body.Resumed.GetRecovered() {
			s.token = body.Resumed.GetNewToken()
			s.mu.Unlock()
			return
		}
		if body.Resumed.GetSnapshot() == nil {
			s.mu.Unlock()
			return
		}
		j, why = newJoined(body.Resumed.GetSnapshot()), body.Resumed.GetFailure()
	}
	s.setSeatLocked(j)
	s.stats.Resyncs++
	s.mu.Unlock()
	if s.opts.OnResync != nil {
		s.opts.OnResync(j, why)
	}
}

// setSeatLocked makes j the session's seat. s.mu must be held.
func (s *Session) setSeatLocked(j *Joined) {
	s.seat, s.token = j, j.ResumeToken
}

// onLeft ends the session when the relay removed the player (the player's
// own Leave comes only from Close).
func (s *Session) onLeft(l Left) {
	if l.Reason == pb.LeaveReason_LEAVE_REASON_SLOW_CONSUMER {
		return // the connection closes next (4000); a resume resyncs
	}
	s.end(fmt.Errorf("client: session: left room %q: %s", l.RoomID, l.Reason))
	if s.opts.OnLeft != nil {
		s.opts.OnLeft(l)
	}
	select {
	case s.left <- struct{}{}:
	default:
	}
}
