package main

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/client"
	"github.com/tickrelay/tickrelay/client-sim/centrifugo"
	"github.com/tickrelay/tickrelay/client-sim/chaos"
	"github.com/tickrelay/tickrelay/client-sim/report"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// payloadHeader is the part of every payload client-sim reads back: bytes 0-7
// the send time (UnixNano, little endian), bytes 8-15 the sender's sequence
// number (from 1).
const payloadHeader = 16

// centrifugoPayloadHeader: with -protocol centrifugo, bytes 16-23 also hold
// the sender's client number (little endian): Centrifugo's publications
// carry no sender a receiver could use, and it delivers each one back to
// its publisher, so receivers tell senders, and their own publications,
// apart by this number.
const centrifugoPayloadHeader = 24

// connectTimeout bounds one client's dial, handshake and join.
const connectTimeout = 15 * time.Second

// simClient is one simulated player.
type simClient struct {
	idx   int
	room  int
	sim   *sim
	shard *histShard

	// Set by the connect goroutine before the send phase starts: c for the
	// tickrelay protocol, cf for Centrifugo.
	c       *client.Client
	sess    *client.Session // with -resume, instead of c
	cf      *centrifugo.Conn
	channel string // the room's Centrifugo channel (built once: publishes must not allocate)
	player  uint32
	joined  bool

	// Receive side, owned by the client's reader goroutine (onFrame); read
	// by others only after Close has returned.
	senders    []seqTrack // indexed by sender player id
	dups       uint64
	outOfOrder uint64
	badPayload uint64
	// Read by the progress goroutine while running.
	delivered atomic.Uint64 // unique deliveries sent inside the measured window
	received  atomic.Uint64 // every delivery

	// Send side, owned by the client's send shard.
	seq          uint64
	sentTotal    uint64
	sentMeasured uint64 // sends whose timestamp is inside the measured window
	next         int64  // next send, ns since the send phase started

	// dead is set when the connection ended during the run: stop sending.
	dead atomic.Bool
	// lostAt is when the session lost its connection (UnixNano; 0: not
	// lost), for the time to resume.
	lostAt atomic.Int64

	// -mode lockstep: the client's state (lockstep.go), guarded by lsMu
	// (the reader goroutine and the connect goroutine share it), and its
	// histograms' shard.
	lsMu    sync.Mutex
	ls      *lsClient
	lsShard *lsShard
}

func (s *sim) roomID(n int) string {
	return "sim-" + s.runID + "-" + strconv.Itoa(n)
}

// centrifugoNamespace is the channel namespace rooms live in with
// -protocol centrifugo: the server's configuration must let anonymous
// subscribers publish into it (bench/harness's centrifugo system does).
const centrifugoNamespace = "room"

// channel is the Centrifugo channel of room n.
func (s *sim) channel(n int) string {
	return centrifugoNamespace + ":" + s.roomID(n)
}

// connect dials, joins the client's room (creating it if it is the first)
// and records the failures by kind.
func (sc *simClient) connect(ctx context.Context, local net.Addr) {
	s := sc.sim
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if s.cfg.Protocol == report.ProtocolCentrifugo {
		sc.connectCentrifugo(ctx, local)
		return
	}
	if s.cfg.Resume {
		sc.connectSession(ctx, local)
		return
	}
	opts := client.Options{
		OnFrame: sc.onFrame,
		OnClose: sc.onClose,
		OnError: sc.onError,
		OnLeft:  sc.onLeft,
	}
	lockstep := s.cfg.Mode == modeLockstep
	if lockstep {
		opts = sc.lockstepOptions()
	}
	opts.LocalAddr, opts.PingInterval, opts.AckInterval = local, s.cfg.KeepAlive, s.cfg.AckInterval
	c, err := client.Dial(ctx, s.url(sc.idx), opts)
	if err != nil {
		s.errors.add(dialKind(err))
		return
	}
	ro := client.RoomOptions{
		MaxPlayers: uint32(s.roomCapacity),
		TickRate:   uint32(s.cfg.TickRate),
		Immediate:  s.cfg.Immediate,
	}
	if lockstep {
		ro.Lockstep = &client.LockstepOptions{}
	}
	j, err := c.Join(ctx, client.JoinOptions{
		RoomID:          s.roomID(sc.room),
		CreateIfMissing: true,
		Room:            ro,
	})
	if err != nil {
		s.errors.add(joinKind(err))
		_ = c.Close()
		return
	}
	if lockstep {
		sc.startLockstep(c, j) // sets c and player under lsMu: the reader goroutine reads them
	} else {
		sc.c, sc.player = c, j.PlayerID
	}
	sc.joined = true
	s.connected.Add(1)
}

// connectSession joins through a client.Session, which resumes the seat
// after a lost connection.
func (sc *simClient) connectSession(ctx context.Context, local net.Addr) {
	s := sc.sim
	sess, err := client.Connect(ctx, s.url(sc.idx), client.SessionOptions{
		Conn: client.Options{LocalAddr: local, PingInterval: s.cfg.KeepAlive},
		Join: client.JoinOptions{
			RoomID:          s.roomID(sc.room),
			CreateIfMissing: true,
			Room: client.RoomOptions{
				MaxPlayers: uint32(s.roomCapacity),
				TickRate:   uint32(s.cfg.TickRate),
				Immediate:  s.cfg.Immediate,
			},
		},
		OnFrame:      sc.onFrame,
		OnError:      sc.onError,
		OnLeft:       sc.onLeft,
		OnDisconnect: sc.onDisconnect,
		OnReconnect:  sc.onReconnect,
	})
	if err != nil {
		var se *client.ServerError
		if errors.As(err, &se) || errors.Is(err, client.ErrClosed) {
			s.errors.add(joinKind(err))
		} else {
			s.errors.add(dialKind(err))
		}
		return
	}
	sc.sess, sc.player, sc.joined = sess, sess.Joined().PlayerID, true
	s.connected.Add(1)
}

// onDisconnect runs when a session lost its connection and starts
// reconnecting.
func (sc *simClient) onDisconnect(error) {
	sc.lostAt.Store(time.Now().UnixNano())
	sc.sim.disconnects.Add(1)
}

// onReconnect records how long the seat was away.
func (sc *simClient) onReconnect(*client.Resumed) {
	if at := sc.lostAt.Swap(0); at != 0 {
		sc.sim.recordResume(time.Duration(time.Now().UnixNano() - at))
	}
}

// connectCentrifugo connects to a Centrifugo server and subscribes to the
// room's channel: joining a room is subscribing to it.
func (sc *simClient) connectCentrifugo(ctx context.Context, local net.Addr) {
	s := sc.sim
	sc.channel = s.channel(sc.room)
	c, err := centrifugo.Dial(ctx, s.url(sc.idx), sc.channel, centrifugo.Options{
		OnPublications: sc.onPublications,
		OnError:        sc.onCentrifugoError,
		OnClose:        sc.onClose,
		LocalAddr:      local,
	})
	if err != nil {
		s.errors.add(centrifugoDialKind(err))
		return
	}
	sc.cf, sc.joined = c, true
	s.connected.Add(1)
}

// onFrame runs on the client's reader goroutine for every frame: latency of
// each delivery from the timestamp in its payload, duplicates and order from
// its sequence number. One time.Now and at most one shard lock per frame.
// Deliveries from chaos clients (chaos.Kind) are left out: the honest
// figures are the honest clients' alone.
func (sc *simClient) onFrame(f *client.FrameView) {
	if len(f.Deliveries) == 0 {
		return
	}
	rec := sc.startFrame()
	n := 0
	for i := range f.Deliveries {
		d := &f.Deliveries[i]
		if d.Kind == chaos.Kind {
			continue
		}
		rec.observe(sc, d.Sender, d.Payload)
		n++
	}
	rec.finish(sc, n)
}

// onPublications is onFrame for Centrifugo: the publications of one
// WebSocket message. The sender is the client number in the payload; the
// receiver's own publications, which Centrifugo delivers back, are left
// out as the relay leaves out the sender, so that the counts mean the same
// under both protocols.
func (sc *simClient) onPublications(pubs []centrifugo.Publication) {
	rec := sc.startFrame()
	n := 0
	for i := range pubs {
		p := pubs[i].Data
		if len(p) < centrifugoPayloadHeader {
			sc.badPayload++
			continue
		}
		from := binary.LittleEndian.Uint64(p[payloadHeader:])
		if from == uint64(sc.idx) {
			continue
		}
		// Room members are the clients room*size ... room*size+size-1:
		// their slot in the room, from 1, stands for a player id.
		first := uint64(sc.room * sc.sim.cfg.RoomSize)
		if from < first || from >= first+uint64(sc.sim.cfg.RoomSize) {
			sc.badPayload++ // not a member of this room
			continue
		}
		rec.observe(sc, uint32(from-first+1), p)
		n++
	}
	rec.finish(sc, n)
}

// frameRecorder measures the deliveries of one frame (or one Centrifugo
// message) at its receiver: one clock read and at most one histogram lock
// for all of them.
type frameRecorder struct {
	now, winStart, winEnd int64
	measured              uint64
	locked                bool
}

func (sc *simClient) startFrame() frameRecorder {
	return frameRecorder{now: time.Now().UnixNano(), winStart: sc.sim.winStart.Load(), winEnd: sc.sim.winEnd.Load()}
}

// observe records one delivery from sender (a player id, or a room slot).
func (r *frameRecorder) observe(sc *simClient, sender uint32, payload []byte) {
	if len(payload) < payloadHeader {
		sc.badPayload++
		return
	}
	sent := int64(binary.LittleEndian.Uint64(payload))
	seq := binary.LittleEndian.Uint64(payload[8:])
	dup, ooo := sc.track(sender).observe(seq)
	if dup {
		sc.dups++
		return
	}
	if ooo {
		sc.outOfOrder++
	}
	if sent < r.winStart || sent >= r.winEnd {
		return // warm-up, or after the window
	}
	r.measured++
	if !r.locked {
		sc.shard.mu.Lock()
		r.locked = true
	}
	_ = sc.shard.hist.RecordValue(clampUs((r.now - sent) / 1000))
}

// finish releases the histogram and counts the frame's deliveries.
func (r *frameRecorder) finish(sc *simClient, deliveries int) {
	if r.locked {
		sc.shard.mu.Unlock()
	}
	sc.received.Add(uint64(deliveries))
	if r.measured > 0 {
		sc.delivered.Add(r.measured)
	}
}

func (sc *simClient) track(sender uint32) *seqTrack {
	if int(sender) >= len(sc.senders) {
		// Player ids are small (from 1, never reused in a room): a slice
		// indexed by id beats a map on the per-delivery path.
		grown := make([]seqTrack, max(int(sender)+1, sc.sim.cfg.RoomSize+1))
		copy(grown, sc.senders)
		sc.senders = grown
	}
	return &sc.senders[sender]
}

func (sc *simClient) onClose(code int, _ string) {
	sc.dead.Store(true)
	if !sc.sim.stopping.Load() {
		sc.sim.errors.add("disconnect:" + strconv.Itoa(code))
	}
}

func (sc *simClient) onError(err *client.ServerError) {
	sc.sim.errors.add("server_error:" + codeName(err.Code))
}

func (sc *simClient) onLeft(l client.Left) {
	sc.sim.errors.add("left:" + strings.ToLower(strings.TrimPrefix(l.Reason.String(), "LEAVE_REASON_")))
}

// onCentrifugoError counts Error replies (to publishes) and server-side
// unsubscribes.
func (sc *simClient) onCentrifugoError(err *centrifugo.ServerError) {
	sc.sim.errors.add("server_error:centrifugo_" + strconv.FormatUint(uint64(err.Code), 10))
}

func codeName(c pb.ErrorCode) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "ERROR_CODE_"))
}

// dialKind classifies a Dial error for the report.
func dialKind(err error) string {
	var hs *client.HTTPStatusError
	var ne net.Error
	switch {
	case errors.As(err, &hs):
		return "dial:http_" + strconv.Itoa(hs.Status)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "dial:refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "dial:reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "dial:no_ephemeral_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "dial:too_many_open_files"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "dial:timeout"
	case errors.Is(err, context.Canceled):
		return "dial:canceled"
	default:
		return "dial:other"
	}
}

// centrifugoDialKind classifies a failed connect-and-subscribe: dial
// failures as for the relay, refusals by the server as join:centrifugo_CODE.
func centrifugoDialKind(err error) string {
	var se *centrifugo.ServerError
	var hs *centrifugo.HTTPStatusError
	switch {
	case errors.As(err, &se):
		return "join:centrifugo_" + strconv.FormatUint(uint64(se.Code), 10)
	case errors.As(err, &hs):
		return "dial:http_" + strconv.Itoa(hs.Status)
	default:
		return dialKind(err)
	}
}

// joinKind classifies a Join error for the report.
func joinKind(err error) string {
	var se *client.ServerError
	var ce *client.CloseError
	switch {
	case errors.As(err, &se):
		return "join:" + codeName(se.Code)
	case errors.As(err, &ce) && ce.Code >= 4000:
		// The relay's own close codes say why (4002: server full).
		return "join:closed_" + strconv.Itoa(ce.Code)
	case errors.Is(err, client.ErrClosed):
		return "join:closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "join:timeout"
	case errors.Is(err, context.Canceled):
		return "join:canceled"
	default:
		return "join:other"
	}
}
