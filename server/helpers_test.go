package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startServer runs a relay on a free loopback port for the test's lifetime.
func startServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Listen:       "127.0.0.1:0",
		AdminListen:  "127.0.0.1:0",
		EventLoops:   2,
		Logger:       quietLogger(),
		CloseTimeout: time.Second,
	}
	cfg.Room.DefaultTickRate = 50
	cfg.Room.AllowImmediate = true
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
	})
	return srv
}

// wsClient is a gorilla/websocket client speaking the tickrelay protocol.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	// events holds room events read but not yet asked for: one frame may
	// carry several.
	events []*pb.RoomEvent
}

// awaitEvent returns the first event of this type about this player, from
// events already read or from the frames that follow.
func (c *wsClient) awaitEvent(typ pb.RoomEventType, player uint32) *pb.RoomEvent {
	c.t.Helper()
	for {
		for i, e := range c.events {
			if e.GetType() == typ && e.GetPlayerId() == player {
				c.events = append(c.events[:i], c.events[i+1:]...)
				return e
			}
		}
		if f := c.read().GetFrame(); f != nil {
			c.events = append(c.events, f.GetEvents()...)
		}
	}
}

func dial(t *testing.T, srv *Server) *wsClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: testTimeout, Subprotocols: []string{Subprotocol}}
	conn, resp, err := d.Dial("ws://"+clientAddr(srv)+"/ws", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Equal(t, Subprotocol, conn.Subprotocol())
	t.Cleanup(func() { _ = conn.Close() })
	return &wsClient{t: t, conn: conn}
}

func (c *wsClient) send(m *pb.ClientMessage) {
	c.t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(c.t, err)
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(testTimeout)))
	require.NoError(c.t, c.conn.WriteMessage(websocket.BinaryMessage, b))
}

func (c *wsClient) read() *pb.ServerMessage {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(testTimeout)))
	typ, b, err := c.conn.ReadMessage()
	require.NoError(c.t, err)
	require.Equal(c.t, websocket.BinaryMessage, typ)
	var m pb.ServerMessage
	require.NoError(c.t, proto.Unmarshal(b, &m))
	return &m
}

// readUntil reads messages until pred accepts one, returning it.
func (c *wsClient) readUntil(pred func(*pb.ServerMessage) bool) *pb.ServerMessage {
	c.t.Helper()
	for {
		if m := c.read(); pred(m) {
			return m
		}
	}
}

func (c *wsClient) join(roomID string, reqID uint32) *pb.Joined {
	c.t.Helper()
	c.send(&pb.ClientMessage{RequestId: reqID, Body: &pb.ClientMessage_Join{Join: &pb.Join{
		RoomId: roomID, CreateIfMissing: true,
	}}})
	m := c.readUntil(func(m *pb.ServerMessage) bool { return m.GetJoined() != nil || m.GetError() != nil })
	require.Nil(c.t, m.GetError(), "join error: %v", m.GetError())
	require.Equal(c.t, reqID, m.GetRequestId())
	return m.GetJoined()
}

func (c *wsClient) sendPayload(payload []byte, targets []uint32, echo bool) {
	c.t.Helper()
	c.send(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{
		Payload: payload, Kind: 1, Targets: targets, Echo: echo,
	}}})
}

// expectClose reads until the server's Close frame and returns its code.
func (c *wsClient) expectClose() int {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetReadDeadline(time.Now().Add(testTimeout)))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(c.t, err, &ce)
		return ce.Code
	}
}

// rawConn is a plain TCP connection for edge cases no WebSocket library
// will produce.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, srv *Server) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", clientAddr(srv), testTimeout)
	require.NoError(t, err)
	require.NoError(t, nc.SetDeadline(time.Now().Add(testTimeout)))
	t.Cleanup(func() { _ = nc.Close() })
	return &rawConn{t: t, nc: nc, br: newReader(nc)}
}

func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

const upgradeRequest = "GET /ws HTTP/1.1\r\nHost: relay.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_, err := r.nc.Write(b)
	require.NoError(r.t, err)
}

// upgrade performs the handshake and checks the 101 answer.
func (r *rawConn) upgrade() {
	r.t.Helper()
	r.write([]byte(upgradeRequest))
	r.expectUpgraded()
}

func (r *rawConn) expectUpgraded() {
	r.t.Helper()
	resp, err := http.ReadResponse(r.br, nil)
	require.NoError(r.t, err)
	require.Equal(r.t, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Equal(r.t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", resp.Header.Get("Sec-WebSocket-Accept"))
}

// clientFrame builds one client frame: masked unless unmasked is set.
func clientFrame(fin bool, op byte, payload []byte, unmasked bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	maskBit := byte(0x80)
	if unmasked {
		maskBit = 0
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, maskBit|byte(n))
	case n <= 0xffff:
		out = append(out, maskBit|126, byte(n>>8), byte(n))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if unmasked {
		return append(out, payload...)
	}
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

func marshal(t *testing.T, m *pb.ClientMessage) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

// readFrame reads one server frame (never masked, never fragmented here).
func (r *rawConn) readFrame() (op byte, payload []byte) {
	r.t.Helper()
	var hdr [2]byte
	_, err := io.ReadFull(r.br, hdr[:])
	require.NoError(r.t, err)
	require.Zero(r.t, hdr[1]&0x80, "server frames must not be masked")
	require.NotZero(r.t, hdr[0]&0x80, "server frames are not fragmented")
	n := int(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		_, err = io.ReadFull(r.br, ext[:])
		require.NoError(r.t, err)
		n = int(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		_, err = io.ReadFull(r.br, ext[:])
		require.NoError(r.t, err)
		n = int(binary.BigEndian.Uint64(ext[:]))
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r.br, payload)
	require.NoError(r.t, err)
	return hdr[0] & 0x0f, payload
}

// readServerMessage reads frames until a binary one and decodes it,
// answering nothing (pings from the server are skipped).
func (r *rawConn) readServerMessage() *pb.ServerMessage {
	r.t.Helper()
	for {
		op, payload := r.readFrame()
		if op == opPing || op == opPong {
			continue
		}
		require.Equal(r.t, byte(opBinary), op, "unexpected opcode %d payload %q", op, payload)
		var m pb.ServerMessage
		require.NoError(r.t, proto.Unmarshal(payload, &m))
		return &m
	}
}

// expectClose reads frames until a Close and returns its status code,
// skipping any Error message in front of it (returned too, if any).
func (r *rawConn) expectClose() (code int, errMsg *pb.Error) {
	r.t.Helper()
	for {
		op, payload := r.readFrame()
		switch op {
		case opClose:
			if len(payload) < 2 {
				return 1005, errMsg
			}
			return int(binary.BigEndian.Uint16(payload)), errMsg
		case opBinary:
			var m pb.ServerMessage
			require.NoError(r.t, proto.Unmarshal(payload, &m))
			if m.GetError() != nil {
				errMsg = m.GetError()
			}
		}
	}
}

// expectEOF checks that the server closes the TCP connection.
func (r *rawConn) expectEOF() {
	r.t.Helper()
	_, err := io.ReadAll(r.br)
	require.NoError(r.t, err) // ReadAll treats EOF as success; a timeout fails
}

// startFunc starts a relay for a test (startServer, or through a proxy).
type startFunc func(t *testing.T, mutate func(*Config)) *Server

// proxied maps a relay started through a splitting proxy to the proxy's
// address, which dial uses instead of the relay's.
var proxied sync.Map // *Server -> string

// forEachPath runs body twice, in parallel subtests: against a relay reached
// directly, and through a proxy that cuts every write, both ways, into
// random pieces with pauses (internal/splitproxy), as real networks do.
func forEachPath(t *testing.T, body func(t *testing.T, startServer startFunc)) {
	t.Parallel()
	t.Run("direct", func(t *testing.T) {
		t.Parallel()
		body(t, startServer)
	})
	t.Run("split", func(t *testing.T) {
		t.Parallel()
		body(t, startSplitServer)
	})
}

// startSplitServer starts a relay whose clients (dial, dialRaw) reach it
// through a splitting proxy.
func startSplitServer(t *testing.T, mutate func(*Config)) *Server {
	t.Helper()
	srv := startServer(t, mutate)
	p := splitproxy.ForTest(t, srv.Addr(), nil)
	proxied.Store(srv, p.Addr())
	t.Cleanup(func() { proxied.Delete(srv) })
	return srv
}

// inputHeld reports whether srv holds back the input of any connection
// (its output over the soft limit, or a request parked).
func inputHeld(srv *Server) bool {
	held := false
	srv.conns.each(func(c *conn) { held = held || c.held().Load() })
	return held
}

// clientAddr is the address a test client dials to reach srv.
func clientAddr(srv *Server) string {
	if a, ok := proxied.Load(srv); ok {
		return a.(string)
	}
	return srv.Addr()
}
