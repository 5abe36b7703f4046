package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/proto/closes"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// One bad client harms nobody else (issue 10): each test runs an attacker
// beside an honest room of 8 and asserts what the honest players saw and
// that the relay's memory stayed within its caps.

// honestRoom is 8 well-behaved players in one room.
type honestRoom struct {
	t       *testing.T
	clients []*wsClient
	ids     []uint32
}

func newHonestRoom(t *testing.T, srv *Server, id string) *honestRoom {
	h := &honestRoom{t: t}
	for i := range 8 {
		c := dial(t, srv)
		j := c.join(id, uint32(i+1))
		h.clients = append(h.clients, c)
		h.ids = append(h.ids, j.GetPlayerId())
	}
	return h
}

// exchange has every member send k messages to the room and checks that
// every member receives all k*7 of the others', in per-sender order, with
// no error and no close. It returns when all arrived.
func (h *honestRoom) exchange(k int) {
	h.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(h.clients))
	for i, c := range h.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			honest := map[uint32]bool{}
			for _, id := range h.ids {
				honest[id] = true
			}
			next := map[uint32]int{}
			got := 0
			for got < k*(len(h.clients)-1) {
				m, err := c.tryRead()
				if err != nil {
					errs <- fmt.Errorf("honest player %d: %w (after %d of %d)", h.ids[i], err, got, k*7)
					return
				}
				if e := m.GetError(); e != nil {
					errs <- fmt.Errorf("honest player %d got %v", h.ids[i], e)
					return
				}
				for _, d := range m.GetFrame().GetDeliveries() {
					if !honest[d.GetSender()] {
						continue // the attacker's, when it shares the room
					}
					seq := int(binary.BigEndian.Uint32(d.GetPayload()))
					if seq != next[d.GetSender()] {
						errs <- fmt.Errorf("player %d: from %d got seq %d, want %d", h.ids[i], d.GetSender(), seq, next[d.GetSender()])
						return
					}
					next[d.GetSender()]++
					got++
				}
			}
		}()
	}
	for j := range k {
		for _, c := range h.clients {
			p := binary.BigEndian.AppendUint32(nil, uint32(j))
			c.send(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: append(p, make([]byte, 60)...), Kind: 1}}})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(h.t, err)
	}
}

// tryRead reads one message, returning the error instead of failing.
func (c *wsClient) tryRead() (*pb.ServerMessage, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		return nil, err
	}
	_, b, err := c.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var m pb.ServerMessage
	return &m, unmarshal(b, &m)
}

// dialSmallBuffer opens a raw connection whose receive buffer is tiny, so a
// client that does not read backs up into the relay at once.
func dialSmallBuffer(t *testing.T, srv *Server) *rawConn {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	nc, err := d.Dial("tcp", clientAddr(srv))
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(testTimeout)))
	return &rawConn{t: t, nc: nc, br: newReader(nc)}
}

// maxOutbound is the largest unwritten output of any connection now.
func maxOutbound(srv *Server) int64 {
	var m int64
	srv.conns.each(func(c *conn) { m = max(m, c.out.total()) })
	return m
}

// A client that floods pings and refused Sends without reading gets its
// answers budgeted: its output stops at the hard limit, its input is not
// read, and it is closed; the room beside it loses nothing.
func TestIsolationFlooderThatNeverReads(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.SocketSendBuffer = 8 << 10
		c.OutboundSoftBytes = 32 << 10
		c.OutboundHardBytes = 256 << 10
		c.RateLimits.MessagesPerSecond = 1e6 // the buckets are not what is under test
		c.RateLimits.MessageBurst = 1e6
	})
	h := newHonestRoom(t, srv, "honest")
	f := dialSmallBuffer(t, srv)
	f.upgrade()
	ping := clientFrame(true, opPing, make([]byte, 125), false)
	outside := clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{RequestId: 9, Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("x")}}}), false)
	var batch []byte
	for range 64 {
		batch = append(batch, ping...)
		batch = append(batch, outside...)
	}
	flooded := make(chan error, 1)
	var peak int64
	go func() {
		for {
			_ = f.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := f.nc.Write(batch); err != nil {
				flooded <- err
				return
			}
		}
	}()
	h.exchange(50)
	select {
	case <-flooded: // closed by the relay (or blocked: it stopped reading)
	case <-time.After(testTimeout):
		t.Fatal("the flooder was never stopped")
	}
	peak = maxOutbound(srv)
	require.LessOrEqual(t, peak, int64(256<<10)+4<<10, "output of one connection stays within its hard limit")
	require.Eventually(t, func() bool { return srv.stats.closesByCause[closes.SlowConsumer].Load() > 0 },
		testTimeout, 10*time.Millisecond, "the flooder is closed as a slow consumer")
	h.exchange(10) // and the room goes on
}

// One member's burst (36 x 64 KiB at once) is cut to its tick budget: the
// others are not evicted, the burster is told RATE_LIMITED, and one that
// keeps bursting past the grace is closed with 4003.
func TestIsolationBurstDoesNotEvictTheRoom(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.RateLimits.Grace = time.Second
	})
	h := newHonestRoom(t, srv, "burst")
	b := dialRaw(t, srv)
	b.upgrade()
	b.write(clientFrame(true, opBinary, joinMessage(t, "burst", 99), false))
	require.NotNil(t, b.readServerMessage().GetJoined())
	big := clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: make([]byte, 64<<10-64)}}}), false)
	var burst []byte
	for range 36 {
		burst = append(burst, big...)
	}
	b.write(burst)
	h.exchange(20)
	require.Zero(t, srv.Rooms().Stats().SlowConsumers, "no honest member evicted")
	d, err := srv.Rooms().Room(t.Context(), "burst")
	require.NoError(t, err)
	require.Len(t, d.Members, 9)

	// Its first answer says why and when to retry.
	var limited *pb.Error
	for limited == nil {
		if e := b.readServerMessage().GetError(); e != nil {
			limited = e
		}
	}
	require.Equal(t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, limited.GetCode())
	require.Positive(t, limited.GetRetryAfterMs())

	// Bursting on and on: closed with 4003 once over the limits for longer
	// than the grace; the others stay.
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.nc.SetWriteDeadline(time.Now().Add(testTimeout))
			if _, err := b.nc.Write(burst); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	code, _ := b.expectClose()
	require.Equal(t, 4003, code)
	h.exchange(10)
	require.Zero(t, srv.Rooms().Stats().SlowConsumers)
}

// A client whose input the relay held back while its own frames backed up
// (it read slowly) is read all at once when they drain. What it sent at its
// own pace meanwhile, more than one tick's budget, is delivered, not
// refused as a burst: held-back Sends may borrow the next tick's budget.
// Direct only: through the splitting proxy the proxy's own socket
// buffers take the unread output, and the relay never holds the input.
func TestIsolationHeldInputIsNotABurst(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.Room.DefaultTickRate = 1 // one long tick: the held input is read within it
		c.OutboundSoftBytes = 8 << 10
		c.SocketSendBuffer = 4 << 10
		c.CloseTimeout = 200 * time.Millisecond // the sweeper looks at held input every 50 ms
		c.RateLimits.MessagesPerSecond = 1e6    // the pings below are not what is limited
		c.RateLimits.MessageBurst = 1e6
	})
	other := dial(t, srv)
	other.join("held", 1)
	slow := dialRaw(t, srv)
	require.NoError(t, slow.nc.(*net.TCPConn).SetReadBuffer(4<<10))
	slow.upgrade()
	slow.write(clientFrame(true, opBinary, joinMessage(t, "held", 2), false))
	joined := slow.readServerMessage().GetJoined()
	require.NotNil(t, joined)

	// Pings whose pongs it does not read yet: more output than the
	// kernel's buffers take, so the relay holds back what it sends next.
	// Not many more: what is held (the pings left and the Sends) must stay
	// within what a held connection may buffer (max-message-bytes + 64 KiB).
	const pings = 300
	var burst []byte
	for range pings {
		burst = append(burst, clientFrame(true, opPing, make([]byte, 125), false)...)
	}
	const n, size = 5, 14 << 10 // 70 KiB: more than the tick budget (64 KiB)
	for i := range n {
		p := make([]byte, size)
		p[0] = byte(i)
		burst = append(burst, clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: p, Kind: 1}}}), false)...)
	}
	slow.write(burst)
	require.Eventually(t, func() bool { return inputHeld(srv) }, testTimeout, 5*time.Millisecond)

	// It reads again: its pongs drain, its input is read, the Sends at
	// once. Reading at the sweeper's pace takes seconds under -race.
	require.NoError(t, slow.nc.SetDeadline(time.Now().Add(3*testTimeout)))
	go func() {
		for range pings {
			if op, _ := slow.readFrame(); op != opPong {
				return // closed: the test fails below, on what other got
			}
		}
	}()
	for next := 0; next < n; {
		m := other.read()
		require.Nil(t, m.GetError())
		for _, d := range m.GetFrame().GetDeliveries() {
			require.Equal(t, joined.GetPlayerId(), d.GetSender())
			require.Len(t, d.GetPayload(), size)
			require.Equal(t, byte(next), d.GetPayload()[0], "in order, none dropped")
			next++
		}
	}
	require.Zero(t, srv.Rooms().Stats().OverBudget, "nothing refused over the tick budget")
}

// Two connections flooding latest-only updates over 8,000 kinds cannot
// saturate the worker their room shares with an honest room.
func TestIsolationLatestOnlyKindFlood(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.Room.Workers = 1 // the honest room shares the flooders' worker
		c.RateLimits.MessagesPerSecond = 1e6
		c.RateLimits.MessageBurst = 1e6
		c.RateLimits.BytesPerSecond = 1 << 30
	})
	h := newHonestRoom(t, srv, "honest")
	var flooders []*rawConn
	for i := range 2 {
		f := dialRaw(t, srv)
		f.upgrade()
		f.write(clientFrame(true, opBinary, joinMessage(t, "kinds", uint32(i+1)), false))
		require.NotNil(t, f.readServerMessage().GetJoined())
		flooders = append(flooders, f)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, f := range flooders {
		var batch []byte
		for k := range 8000 {
			batch = append(batch, clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{
				Payload: []byte("state"), Kind: uint32(k), LatestOnly: true,
			}}}), false)...)
		}
		wg.Add(2)
		go func() { // drain what the flooders are sent
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				if _, err := f.nc.Read(buf); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = f.nc.SetWriteDeadline(time.Now().Add(testTimeout))
				if _, err := f.nc.Write(batch); err != nil {
					return
				}
			}
		}()
	}
	h.exchange(100) // every honest message delivered, no OVERLOADED
	close(stop)
	for _, f := range flooders {
		_ = f.nc.Close()
	}
	wg.Wait()
}

// A client trickling a frame that never completes is closed after the
// message read timeout (it would otherwise pin its buffer forever).
func TestIsolationTricklingFrameIsClosed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.MessageReadTimeout = 500 * time.Millisecond })
	r := dialRaw(t, srv)
	r.upgrade()
	frame := clientFrame(true, opBinary, make([]byte, 1000), false)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < len(frame); i++ {
			if _, err := r.nc.Write(frame[i : i+1]); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // the attack: a byte at a time, forever
		}
	}()
	code, errMsg := r.expectClose()
	require.Equal(t, 4004, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_TIMEOUT, errMsg.GetCode())
	_ = r.nc.Close()
	<-done
	require.EqualValues(t, 1, srv.stats.slowMessages.Load())
}

// An evicted slow reader learns why: frames not yet written are dropped, so
// the Error{SLOW_CONSUMER} and close 4000 reach it before the connection
// ends, and the room goes on.
func TestIsolationEvictedClientLearnsWhy(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.SocketSendBuffer = 8 << 10
		c.OutboundSoftBytes = 16 << 10
		c.Room.MaxBacklogBytes = 64 << 10
		// A slow reader on a loaded test machine may stall for a while; it
		// is dropped only after reading nothing for this long.
		c.FailLinger = 2 * time.Second
		c.CloseTimeout = 5 * time.Second
	})
	h := newHonestRoom(t, srv, "slow")
	s := dialSmallBuffer(t, srv)
	s.upgrade()
	s.write(clientFrame(true, opBinary, joinMessage(t, "slow", 50), false))
	joined := s.readServerMessage().GetJoined()
	require.NotNil(t, joined)
	// The slow reader: 512 bytes every 5 ms (100 KB/s) while the room
	// sends it far more.
	s.br = bufio.NewReaderSize(slowReader{s.nc}, 512)
	result := make(chan string, 1)
	go func() {
		var code int
		var sawError bool
		for {
			_ = s.nc.SetReadDeadline(time.Now().Add(testTimeout))
			op, payload := readFrameErr(s)
			switch {
			case op == 0:
				result <- fmt.Sprintf("ended: error=%v close=%d", sawError, code)
				return
			case op == opClose && len(payload) >= 2:
				code = int(binary.BigEndian.Uint16(payload))
			case op == opBinary:
				var m pb.ServerMessage
				if unmarshal(payload, &m) == nil && m.GetError().GetCode() == pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER {
					sawError = true
				}
			}
		}
	}()
	// 800 KB/s from one honest player until the slow one is evicted.
	sent := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(sent)
		big := make([]byte, 8<<10)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				h.clients[0].send(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: big}}})
			}
		}
	}()
	h.clients[1].awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, joined.GetPlayerId())
	close(stop)
	<-sent
	select {
	case r := <-result:
		require.Equal(t, "ended: error=true close=4000", r)
	case <-time.After(testTimeout):
		t.Fatal("the evicted client never saw the end")
	}
}

// readFrameErr reads one server frame; op 0 when the connection ended.
func readFrameErr(r *rawConn) (op byte, payload []byte) {
	var hdr [2]byte
	if _, err := ioReadFull(r, hdr[:]); err != nil {
		return 0, nil
	}
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := ioReadFull(r, ext[:]); err != nil {
			return 0, nil
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := ioReadFull(r, ext[:]); err != nil {
			return 0, nil
		}
		n = int(binary.BigEndian.Uint64(ext[:]))
	}
	payload = make([]byte, n)
	if _, err := ioReadFull(r, payload); err != nil {
		return 0, nil
	}
	return hdr[0] & 0x0f, payload
}

// Drain loses nothing the relay accepted: messages it read before the
// drain are delivered in a last tick before the 1001.
func TestIsolationDrainFlushesTheLastTick(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.Room.DefaultTickRate = 1 }) // a long tick: the messages wait in it
	h := newHonestRoom(t, srv, "drain")
	for i, c := range h.clients {
		for j := range 5 {
			p := binary.BigEndian.AppendUint32(nil, uint32(j))
			c.send(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: p}}})
		}
		// A Pong after them: the relay has read (and accepted) them.
		c.send(pingMessage(uint32(100 + i)))
		c.readUntil(isPong)
	}
	srv.Drain(time.Millisecond)
	for i, c := range h.clients {
		got := 0
		for {
			m, err := c.tryRead()
			if err != nil {
				var ce *websocket.CloseError
				require.ErrorAs(t, err, &ce)
				require.Equal(t, 1001, ce.Code)
				break
			}
			got += len(m.GetFrame().GetDeliveries())
		}
		require.Equal(t, 5*7, got, "player %d", h.ids[i])
	}
}

func unmarshal(b []byte, m *pb.ServerMessage) error { return proto.Unmarshal(b, m) }

func ioReadFull(r *rawConn, b []byte) (int, error) { return io.ReadFull(r.br, b) }

// slowReader reads at most 512 bytes per 5 ms: a client on a slow link. The
// pauses are the condition under test.
type slowReader struct{ nc net.Conn }

func (r slowReader) Read(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	return r.nc.Read(p[:min(len(p), 512)])
}
