package refrelay

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/client"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func start(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{Listen: "127.0.0.1:0", EventLoops: 2})
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	})
	return s
}

// rawClient speaks WebSocket by hand, so that the test decides how the
// bytes are cut: writeSplit sends them in pieces with pauses, which makes
// the server see them in separate reads.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (c *rawClient) writeSplit(b []byte) {
	c.t.Helper()
	for len(b) > 0 {
		n := min(len(b), 1+rand.IntN(5))
		if _, err := c.nc.Write(b[:n]); err != nil {
			// The relay may close as soon as it has read enough of a bad
			// frame to refuse it; what it answered is what the test checks.
			return
		}
		b = b[n:]
		time.Sleep(2 * time.Millisecond) // separate TCP reads: the condition under test
	}
}

func maskedFrame(op ws.OpCode, payload []byte) []byte {
	f := ws.MaskFrameInPlace(ws.NewFrame(op, true, append([]byte(nil), payload...)))
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

func clientMessage(t *testing.T, m *pb.ClientMessage) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return maskedFrame(ws.OpBinary, b)
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	require.NoError(t, nc.SetDeadline(time.Now().Add(20*time.Second)))
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.writeSplit([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tickrelay.v1\r\n\r\n"))
	resp, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Equal(t, "tickrelay.v1", resp.Header.Get("Sec-WebSocket-Protocol"))
	return c
}

// read returns the next server frame.
func (c *rawClient) read() (ws.OpCode, []byte) {
	c.t.Helper()
	h, err := ws.ReadHeader(c.br)
	require.NoError(c.t, err)
	require.False(c.t, h.Masked)
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.br, p)
	require.NoError(c.t, err)
	return h.OpCode, p
}

func (c *rawClient) readMessage() *pb.ServerMessage {
	c.t.Helper()
	op, p := c.read()
	require.Equal(c.t, ws.OpBinary, op)
	var m pb.ServerMessage
	require.NoError(c.t, proto.Unmarshal(p, &m))
	return &m
}

func (c *rawClient) join(id uint32, room string) *pb.Joined {
	c.t.Helper()
	c.writeSplit(clientMessage(c.t, &pb.ClientMessage{RequestId: id, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: room, CreateIfMissing: true}}}))
	m := c.readMessage()
	require.Equal(c.t, id, m.GetRequestId())
	require.NotNil(c.t, m.GetJoined(), "got %v", m)
	return m.GetJoined()
}

func send(t *testing.T, payload string) []byte {
	return clientMessage(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte(payload), Kind: 3}}})
}

func TestRelaysFramesSplitAcrossReads(t *testing.T) {
	t.Parallel()
	s := start(t)
	a, b := dialRaw(t, s.Addr()), dialRaw(t, s.Addr())
	ja := a.join(1, "room-1")
	jb := b.join(2, "room-1")
	require.Equal(t, uint32(1), ja.GetPlayerId())
	require.Equal(t, uint32(2), jb.GetPlayerId())
	require.Equal(t, uint32(30), jb.GetTickRate())
	require.Len(t, jb.GetMembers(), 2)

	// Two messages in one write, a third split byte by byte: b gets all
	// three, in order, in one or more frames; a, the sender, gets none.
	two := append(send(t, "m1"), send(t, "m2")...)
	_, err := a.nc.Write(two)
	require.NoError(t, err)
	a.writeSplit(send(t, "m3"))
	var got []string
	lastTick := uint64(0)
	for len(got) < 3 {
		m := b.readMessage()
		f := m.GetFrame()
		require.NotNil(t, f, "want a frame, got %v", m)
		require.Greater(t, f.GetTick(), lastTick)
		lastTick = f.GetTick()
		for _, d := range f.GetDeliveries() {
			require.Equal(t, uint32(1), d.GetSender())
			require.Equal(t, uint32(3), d.GetKind())
			got = append(got, string(d.GetPayload()))
		}
	}
	require.Equal(t, []string{"m1", "m2", "m3"}, got)

	// Ping answers at once; the sender's next message is its Pong, not a
	// frame of its own sends.
	a.writeSplit(clientMessage(t, &pb.ClientMessage{RequestId: 9, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 77}}}))
	m := a.readMessage()
	require.Equal(t, uint32(9), m.GetRequestId())
	require.Equal(t, int64(77), m.GetPong().GetClientTime())

	// A WebSocket ping gets its pong with the same payload.
	a.writeSplit(maskedFrame(ws.OpPing, []byte("hi")))
	op, p := a.read()
	require.Equal(t, ws.OpPong, op)
	require.Equal(t, "hi", string(p))

	// Leave, then Send: NOT_IN_ROOM.
	a.writeSplit(clientMessage(t, &pb.ClientMessage{RequestId: 10, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}}))
	m = a.readMessage()
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, m.GetLeft().GetReason())
	a.writeSplit(send(t, "late"))
	require.Equal(t, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, a.readMessage().GetError().GetCode())

	// The client's Close is echoed.
	a.writeSplit(maskedFrame(ws.OpClose, ws.NewCloseFrameBody(1000, "")))
	op, p = a.read()
	require.Equal(t, ws.OpClose, op)
	require.Equal(t, []byte{0x03, 0xe8}, p)
}

func TestBadInputGetsAClearAnswer(t *testing.T) {
	t.Parallel()
	s := start(t)
	closeCode := func(c *rawClient) int {
		t.Helper()
		for {
			op, p := c.read()
			if op == ws.OpClose {
				require.GreaterOrEqual(t, len(p), 2)
				return int(binary.BigEndian.Uint16(p))
			}
		}
	}
	c := dialRaw(t, s.Addr())
	c.writeSplit(maskedFrame(ws.OpText, []byte("hello")))
	require.Equal(t, closeUnsupported, closeCode(c))

	c = dialRaw(t, s.Addr())
	unmasked, err := ws.CompileFrame(ws.NewBinaryFrame([]byte{1, 2}))
	require.NoError(t, err)
	c.writeSplit(unmasked)
	require.Equal(t, closeProtocol, closeCode(c))

	c = dialRaw(t, s.Addr())
	c.writeSplit(maskedFrame(ws.OpBinary, []byte{0xff, 0xff}))
	require.Equal(t, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, c.readMessage().GetError().GetCode())
	for _, j := range []*pb.Join{
		{RoomId: "", CreateIfMissing: true},
		{RoomId: "r", CreateIfMissing: true, Options: &pb.RoomOptions{Immediate: true}},
		{RoomId: "r", CreateIfMissing: true, Options: &pb.RoomOptions{TickRate: 60}},
	} {
		c.writeSplit(clientMessage(t, &pb.ClientMessage{RequestId: 5, Body: &pb.ClientMessage_Join{Join: j}}))
		require.Equal(t, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, c.readMessage().GetError().GetCode(), "join %v", j)
	}
	c.writeSplit(clientMessage(t, &pb.ClientMessage{RequestId: 6, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "nope"}}}))
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, c.readMessage().GetError().GetCode())

	// Plain HTTP: health check and unknown paths.
	resp, err := http.Get("http://" + s.Addr() + "/healthz")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()
	nc, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Write([]byte("GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	require.NoError(t, err)
	r, err := http.ReadResponse(bufio.NewReader(nc), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, r.StatusCode)
}

// splitProxy forwards TCP both ways, cutting every write into random
// pieces with pauses: loopback hides the partial reads a real network
// makes.
func splitProxy(t *testing.T, upstream string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		defer dst.Close()
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			for b := buf[:n]; len(b) > 0; {
				k := min(len(b), 1+rand.IntN(40))
				if _, werr := dst.Write(b[:k]); werr != nil {
					return
				}
				b = b[k:]
				time.Sleep(50 * time.Microsecond)
			}
			if err != nil {
				return
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = down.Close()
				continue
			}
			wg.Add(2)
			go pipe(up, down)
			go pipe(down, up)
		}
	}()
	return ln.Addr().String()
}

// The SDK end to end through the splitting proxy: every message of every
// sender reaches every other member once, in order.
func TestSDKThroughSplittingProxy(t *testing.T) {
	t.Parallel()
	s := start(t)
	url := "ws://" + splitProxy(t, s.Addr()) + "/ws"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const members, perSender = 4, 40
	type got struct {
		mu   sync.Mutex
		seqs map[uint32][]uint64
	}
	recv := make([]*got, members)
	clients := make([]*client.Client, members)
	for i := range members {
		g := &got{seqs: map[uint32][]uint64{}}
		recv[i] = g
		c, err := client.Dial(ctx, url, client.Options{OnFrame: func(f *client.FrameView) {
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, d := range f.Deliveries {
				g.seqs[d.Sender] = append(g.seqs[d.Sender], binary.LittleEndian.Uint64(d.Payload))
			}
		}})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Join(ctx, client.JoinOptions{RoomID: "proxied", CreateIfMissing: true, Room: client.RoomOptions{MaxPlayers: members}})
		require.NoError(t, err)
		clients[i] = c
	}
	payload := make([]byte, 64)
	for n := range uint64(perSender) {
		for _, c := range clients {
			binary.LittleEndian.PutUint64(payload, n+1)
			require.NoError(t, c.Send(payload, client.SendOptions{}))
		}
	}
	require.Eventually(t, func() bool {
		for _, g := range recv {
			g.mu.Lock()
			total := 0
			for _, s := range g.seqs {
				total += len(s)
			}
			g.mu.Unlock()
			if total < (members-1)*perSender {
				return false
			}
		}
		return true
	}, 25*time.Second, 20*time.Millisecond)
	for i, g := range recv {
		g.mu.Lock()
		require.Len(t, g.seqs, members-1, "client %d hears every other member and not itself", i)
		for sender, seqs := range g.seqs {
			require.Len(t, seqs, perSender)
			for k, v := range seqs {
				require.Equal(t, uint64(k+1), v, "client %d, sender %d: in order, once", i, sender)
			}
		}
		g.mu.Unlock()
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	_, err := New(Config{TickRate: -1})
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{DefaultMaxPlayers: 50, MaxPlayersPerRoom: 10})
	require.ErrorIs(t, err, ErrConfig)
	s, err := New(Config{})
	require.NoError(t, err)
	require.Equal(t, 30, s.cfg.TickRate)
	require.Equal(t, time.Second/30, s.period)
}
