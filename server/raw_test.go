package server

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func joinMessage(t *testing.T, roomID string, reqID uint32) []byte {
	return marshal(t, &pb.ClientMessage{RequestId: reqID, Body: &pb.ClientMessage_Join{Join: &pb.Join{
		RoomId: roomID, CreateIfMissing: true,
	}}})
}

func TestRawHandshakeAndFramesDribbledByteByByte(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	stream := append([]byte(upgradeRequest), clientFrame(true, opBinary, joinMessage(t, "dribble", 4), false)...)
	for _, b := range stream {
		r.write([]byte{b})
	}
	r.expectUpgraded()
	m := r.readServerMessage()
	require.Equal(t, "dribble", m.GetJoined().GetRoomId())
	require.Equal(t, uint32(4), m.GetRequestId())
}

func TestRawSeveralFramesInOneWrite(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	var batch []byte
	batch = append(batch, clientFrame(true, opBinary, joinMessage(t, "batch", 1), false)...)
	batch = append(batch, clientFrame(true, opPing, []byte("p1"), false)...)
	for i := 0; i < 3; i++ {
		batch = append(batch, clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{RequestId: uint32(10 + i),
			Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: int64(i)}}}), false)...)
	}
	r.write(batch)
	// Pongs are answered by the event loop at once; Joined comes from the
	// room worker. Each stream keeps its order, but they may interleave.
	var pongs []uint32
	joined, wsPong := false, false
	for !joined || !wsPong || len(pongs) < 3 {
		op, payload := r.readFrame()
		switch op {
		case opPong:
			require.Equal(t, "p1", string(payload))
			wsPong = true
		case opBinary:
			var m pb.ServerMessage
			require.NoError(t, proto.Unmarshal(payload, &m))
			if m.GetJoined() != nil {
				joined = true
				continue
			}
			require.NotNil(t, m.GetPong(), "%v", &m)
			require.EqualValues(t, len(pongs), m.GetPong().GetClientTime())
			pongs = append(pongs, m.GetRequestId())
		default:
			t.Fatalf("unexpected opcode %d", op)
		}
	}
	require.Equal(t, []uint32{10, 11, 12}, pongs)
}

func TestRawFragmentedJoinWithPingBetweenFragments(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	join := joinMessage(t, "fragments", 2)
	half := len(join) / 2
	r.write(clientFrame(false, opBinary, join[:half], false))
	r.write(clientFrame(true, opPing, []byte("mid"), false))
	op, payload := r.readFrame()
	require.Equal(t, byte(opPong), op, "a ping between fragments is answered at once")
	require.Equal(t, "mid", string(payload))
	r.write(clientFrame(true, opCont, join[half:], false))
	require.Equal(t, "fragments", r.readServerMessage().GetJoined().GetRoomId())
}

func TestRawProtocolViolationsClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.MaxMessageBytes = 1024 })
	cases := []struct {
		name    string
		frame   []byte
		code    int
		errCode pb.ErrorCode
	}{
		{"unmasked", clientFrame(true, opBinary, []byte("x"), true), 1002, 0},
		{"reserved opcode", clientFrame(true, 0x3, []byte("x"), false), 1002, 0},
		{"rsv bit", func() []byte { f := clientFrame(true, opBinary, []byte("x"), false); f[0] |= 0x40; return f }(), 1002, 0},
		{"fragmented control", clientFrame(false, opPing, nil, false), 1002, 0},
		{"control too long", clientFrame(true, opPing, make([]byte, 126), false), 1002, 0},
		{"continuation first", clientFrame(true, opCont, []byte("x"), false), 1002, 0},
		{"text frame", clientFrame(true, opText, []byte("hello"), false), 1003, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE},
		{"oversize", clientFrame(true, opBinary, make([]byte, 4096), false), 1009, pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
		{"oversize announced only", clientFrame(true, opBinary, make([]byte, 70000), false)[:14], 1009, pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, srv)
			r.upgrade()
			r.write(tc.frame)
			code, errMsg := r.expectClose()
			require.Equal(t, tc.code, code)
			if tc.errCode != 0 {
				require.NotNil(t, errMsg)
				require.Equal(t, tc.errCode, errMsg.GetCode())
			}
			// The relay fails the connection: its FIN follows the Close.
			r.expectEOF()
		})
	}
}

func TestRawMalformedEnvelopeThenPolicyClose(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.MaxBadMessages = 2 })
	r := dialRaw(t, srv)
	r.upgrade()
	garbage := []byte{0x22, 0x7f, 0x01} // a Send longer than the message
	r.write(clientFrame(true, opBinary, garbage, false))
	m := r.readServerMessage()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, m.GetError().GetCode())
	r.write(clientFrame(true, opBinary, []byte{}, false)) // no body
	code, errMsg := r.expectClose()
	require.Equal(t, 1008, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_POLICY_VIOLATION, errMsg.GetCode())
}

func TestRawClientInitiatedCloseHandshake(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	r.write(clientFrame(true, opClose, append([]byte{0x03, 0xe8}, "bye"...), false))
	op, payload := r.readFrame()
	require.Equal(t, byte(opClose), op)
	require.Equal(t, []byte{0x03, 0xe8}, payload[:2], "the close code is echoed")
	r.expectEOF()

	// An invalid close code is a protocol error.
	r2 := dialRaw(t, srv)
	r2.upgrade()
	r2.write(clientFrame(true, opClose, []byte{0x03, 0xed}, false)) // 1005 must not be sent
	code, _ := r2.expectClose()
	require.Equal(t, 1002, code)
}

func TestRawHalfFrameThenDisconnectLeavesRoom(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.Room.SeatGrace = -1 })
	watcher := dial(t, srv)
	watcher.join("half", 1)
	r := dialRaw(t, srv)
	r.upgrade()
	r.write(clientFrame(true, opBinary, joinMessage(t, "half", 2), false))
	joined := r.readServerMessage().GetJoined()
	require.NotNil(t, joined)
	frame := clientFrame(true, opBinary, make([]byte, 200), false)
	r.write(frame[:50])
	require.NoError(t, r.nc.Close())
	watcher.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, joined.GetPlayerId())
}

func TestRawPlainHTTP(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	get := func(path string) *http.Response {
		r := dialRaw(t, srv)
		r.write([]byte("GET " + path + " HTTP/1.1\r\nHost: relay.test\r\n\r\n"))
		resp, err := http.ReadResponse(r.br, nil)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		r.expectEOF()
		return resp
	}
	require.Equal(t, http.StatusOK, get("/healthz").StatusCode)
	require.Equal(t, http.StatusUpgradeRequired, get("/ws").StatusCode)
	require.Equal(t, http.StatusNotFound, get("/elsewhere").StatusCode)
}

func TestRawHandshakeTimeoutAnswers408(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	r := dialRaw(t, srv)
	r.write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n")) // never finished
	resp, err := http.ReadResponse(r.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	require.True(t, resp.Close, "Connection: close")
	r.expectEOF()
}

// A legal message in many fragments (a library that fragments at a small
// write buffer) is accepted up to max-fragments; past it, 1009.
func TestRawManyFragmentsWithinTheLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.MaxFragments = 300 })
	r := dialRaw(t, srv)
	r.upgrade()
	ping := marshal(t, &pb.ClientMessage{RequestId: 5, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 42}}})
	// 256 fragments: the envelope, then empty continuations.
	var stream []byte
	stream = append(stream, clientFrame(false, opBinary, ping, false)...)
	for range 254 {
		stream = append(stream, clientFrame(false, opCont, nil, false)...)
	}
	stream = append(stream, clientFrame(true, opCont, nil, false)...)
	r.write(stream)
	require.Equal(t, int64(42), r.readServerMessage().GetPong().GetClientTime())

	stream = stream[:0]
	for i := range 301 {
		op := byte(opCont)
		if i == 0 {
			op = opBinary
		}
		stream = append(stream, clientFrame(false, op, []byte{0}, false)...)
	}
	r.write(stream)
	code, _ := r.expectClose()
	require.Equal(t, 1009, code)
}

// Just past the connection limit an upgrade is accepted and closed at once
// with 4002 and Error{SERVER_FULL, retry_after_ms}, which a browser can
// read; a plain HTTP request (a health check) is still answered.
func TestRawServerFullIsVisibleToTheClient(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.MaxConnections = 1 })
	first := dialRaw(t, srv)
	first.upgrade()
	second := dialRaw(t, srv)
	second.upgrade()
	code, errMsg := second.expectClose()
	require.Equal(t, 4002, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_SERVER_FULL, errMsg.GetCode())
	require.Positive(t, errMsg.GetRetryAfterMs())
	second.expectEOF()
	health := dialRaw(t, srv)
	health.write([]byte("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
	resp, err := http.ReadResponse(health.br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestRawIdleConnectionIsPingedThenClosed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.PingInterval = 100 * time.Millisecond
		c.IdleTimeout = 400 * time.Millisecond
	})
	r := dialRaw(t, srv)
	r.upgrade()
	op, _ := r.readFrame()
	require.Equal(t, byte(opPing), op, "a silent connection is pinged")
	code, errMsg := r.expectClose() // and never answering, closed
	require.Equal(t, 4001, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_TIMEOUT, errMsg.GetCode())
}

func TestRawEchoEndpoint(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.EchoPath = "/echo" })
	r := dialRaw(t, srv)
	r.write([]byte(bytes.Replace([]byte(upgradeRequest), []byte("/ws"), []byte("/echo"), 1)))
	r.expectUpgraded()
	r.write(clientFrame(true, opText, []byte("héllo"), false))
	op, payload := r.readFrame()
	require.Equal(t, byte(opText), op)
	require.Equal(t, "héllo", string(payload))
	r.write(clientFrame(true, opBinary, []byte{0xff, 0x00}, false))
	op, payload = r.readFrame()
	require.Equal(t, byte(opBinary), op)
	require.Equal(t, []byte{0xff, 0x00}, payload)
	r.write(clientFrame(true, opText, []byte{0xff, 0xfe}, false))
	code, _ := r.expectClose()
	require.Equal(t, 1007, code)
}

// A flood past the connection limit is refused with 503 — within a small
// window after reading the request, beyond it at once — and the relay keeps
// accepting once the flood is gone (gnet stops accepting for good if
// accept() ever fails with EMFILE, so refusals must give descriptors back).
func TestRawConnectionFloodIsRefusedAndSurvived(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.MaxConnections = 2 })
	held := []*rawConn{dialRaw(t, srv), dialRaw(t, srv)}
	for _, r := range held {
		r.upgrade()
	}
	const flood = rejectWindow + 20
	refused := make([]*rawConn, flood)
	for i := range refused {
		refused[i] = dialRaw(t, srv)
	}
	var upgradedRefusals, httpRefusals int
	for _, r := range refused {
		r.write([]byte(upgradeRequest)) // may already have been answered
		resp, err := http.ReadResponse(r.br, nil)
		require.NoError(t, err)
		switch resp.StatusCode {
		case http.StatusSwitchingProtocols:
			// Within the window: upgraded, then told with a close.
			code, _ := r.expectClose()
			require.Equal(t, 4002, code)
			upgradedRefusals++
		default:
			// Far past the limit: 503 before the request was read.
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			httpRefusals++
		}
		r.expectEOF()
	}
	// How many land in the window depends on how fast the refused ones are
	// closed; both kinds are seen when the flood outruns the window.
	require.Positive(t, upgradedRefusals)
	require.Positive(t, httpRefusals)
	require.Eventually(t, func() bool { return srv.OpenConnections() == len(held) }, testTimeout, 10*time.Millisecond)

	// The held connections still work, and a new one is accepted once
	// there is room again.
	held[0].write(clientFrame(true, opPing, []byte("alive"), false))
	op, payload := held[0].readFrame()
	require.Equal(t, byte(opPong), op)
	require.Equal(t, "alive", string(payload))
	require.NoError(t, held[1].nc.Close())
	require.Eventually(t, func() bool { return srv.OpenConnections() == 1 }, testTimeout, 10*time.Millisecond)
	dialRaw(t, srv).upgrade()
}
