package main

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/client"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// payloadHeader is the part of every payload client-sim reads back: bytes 0-7
// the send time (UnixNano, little endian), bytes 8-15 the sender's sequence
// number (from 1).
const payloadHeader = 16

// connectTimeout bounds one client's dial, handshake and join.
const connectTimeout = 15 * time.Second

// simClient is one simulated player.
type simClient struct {
	idx   int
	room  int
	sim   *sim
	shard *histShard

	// Set by the connect goroutine before the send phase starts.
	c      *client.Client
	player uint32
	joined bool

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
}

func (s *sim) roomID(n int) string {
	return "sim-" + s.runID + "-" + strconv.Itoa(n)
}

// connect dials, joins the client's room (creating it if it is the first)
// and records the failures by kind.
func (sc *simClient) connect(ctx context.Context, local net.Addr) {
	s := sc.sim
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := client.Dial(ctx, s.cfg.URL, client.Options{
		OnFrame:      sc.onFrame,
		OnClose:      sc.onClose,
		OnError:      sc.onError,
		OnLeft:       sc.onLeft,
		LocalAddr:    local,
		PingInterval: s.cfg.KeepAlive,
	})
	if err != nil {
		s.errors.add(dialKind(err))
		return
	}
	j, err := c.Join(ctx, client.JoinOptions{
		RoomID:          s.roomID(sc.room),
		CreateIfMissing: true,
		Room: client.RoomOptions{
			MaxPlayers: uint32(s.cfg.RoomSize),
			TickRate:   uint32(s.cfg.TickRate),
			Immediate:  s.cfg.Immediate,
		},
	})
	if err != nil {
		s.errors.add(joinKind(err))
		_ = c.Close()
		return
	}
	sc.c, sc.player, sc.joined = c, j.PlayerID, true
	s.connected.Add(1)
}

// onFrame runs on the client's reader goroutine for every frame: latency of
// each delivery from the timestamp in its payload, duplicates and order from
// its sequence number. One time.Now and at most one shard lock per frame.
func (sc *simClient) onFrame(f *client.FrameView) {
	if len(f.Deliveries) == 0 {
		return
	}
	now := time.Now().UnixNano()
	winStart, winEnd := sc.sim.winStart.Load(), sc.sim.winEnd.Load()
	var measured uint64
	locked := false
	for i := range f.Deliveries {
		d := &f.Deliveries[i]
		if len(d.Payload) < payloadHeader {
			sc.badPayload++
			continue
		}
		sent := int64(binary.LittleEndian.Uint64(d.Payload))
		seq := binary.LittleEndian.Uint64(d.Payload[8:])
		dup, ooo := sc.track(d.Sender).observe(seq)
		if dup {
			sc.dups++
			continue
		}
		if ooo {
			sc.outOfOrder++
		}
		if sent < winStart || sent >= winEnd {
			continue // warm-up, or after the window
		}
		measured++
		if !locked {
			sc.shard.mu.Lock()
			locked = true
		}
		_ = sc.shard.hist.RecordValue(clampUs((now - sent) / 1000))
	}
	if locked {
		sc.shard.mu.Unlock()
	}
	sc.received.Add(uint64(len(f.Deliveries)))
	if measured > 0 {
		sc.delivered.Add(measured)
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

// joinKind classifies a Join error for the report.
func joinKind(err error) string {
	var se *client.ServerError
	switch {
	case errors.As(err, &se):
		return "join:" + codeName(se.Code)
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
