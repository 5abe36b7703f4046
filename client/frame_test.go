package client

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Framing edge cases, against a raw gobwas/ws server script.

// readClientFrame reads one frame from the client, checks it is masked and
// returns it unmasked.
func readClientFrame(conn net.Conn) (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(conn)
	if err != nil {
		return h, nil, err
	}
	if !h.Masked {
		return h, nil, io.ErrUnexpectedEOF
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(conn, p); err != nil {
		return h, nil, err
	}
	ws.Cipher(p, h.Mask, 0)
	return h, p, nil
}

// discardUntilClose reads and drops the client's frames, answering its Close
// frame as a well-behaved server does.
func discardUntilClose(conn net.Conn) {
	for {
		h, p, err := readClientFrame(conn)
		if err != nil {
			return
		}
		if h.OpCode == ws.OpClose {
			_ = ws.WriteFrame(conn, ws.NewCloseFrame(p))
			return
		}
	}
}

func encodeServer(t *testing.T, m *pb.ServerMessage) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func testFrame(t *testing.T, tick uint64, payloads ...string) []byte {
	f := &pb.Frame{Tick: tick}
	for i, p := range payloads {
		f.Deliveries = append(f.Deliveries, &pb.Delivery{Sender: uint32(i + 1), Kind: 2, Payload: []byte(p)})
	}
	return encodeServer(t, &pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: f}})
}

func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	return "ws://" + ln.Addr().String() + "/ws"
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestFragmentedMessageAndPingBetweenFragments(t *testing.T) {
	t.Parallel()
	msg := testFrame(t, 5, "alpha", "beta")
	pongs := make(chan string, 1)
	url := rawServer(t, func(conn net.Conn) {
		third := len(msg) / 3
		_ = ws.WriteFrame(conn, ws.NewFrame(ws.OpBinary, false, msg[:third]))
		_ = ws.WriteFrame(conn, ws.NewPingFrame([]byte("are you there")))
		_ = ws.WriteFrame(conn, ws.NewFrame(ws.OpContinuation, false, msg[third:2*third]))
		_ = ws.WriteFrame(conn, ws.NewFrame(ws.OpContinuation, true, msg[2*third:]))
		h, p, err := readClientFrame(conn)
		if err == nil && h.OpCode == ws.OpPong {
			pongs <- string(p)
		}
		discardUntilClose(conn)
	})
	a := connect(t, url)
	require.Equal(t, gotDelivery{Sender: 1, Kind: 2, Payload: "alpha"}, a.nextDelivery(t))
	require.Equal(t, gotDelivery{Sender: 2, Kind: 2, Payload: "beta"}, a.nextDelivery(t))
	select {
	case p := <-pongs:
		require.Equal(t, "are you there", p)
	case <-time.After(waitTimeout):
		require.FailNow(t, "no pong")
	}
}

func TestServerCloseIsReportedAndEchoed(t *testing.T) {
	t.Parallel()
	echoed := make(chan []byte, 1)
	url := rawServer(t, func(conn net.Conn) {
		// The protocol's rule: an Error goes out before a close for a limit.
		_ = ws.WriteFrame(conn, ws.NewBinaryFrame(encodeServer(t, &pb.ServerMessage{Body: &pb.ServerMessage_Error{
			Error: &pb.Error{Code: pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER, Message: "queue full"},
		}})))
		_ = ws.WriteFrame(conn, ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "slow consumer")))
		h, p, err := readClientFrame(conn)
		if err == nil && h.OpCode == ws.OpClose {
			echoed <- p
		}
	})
	a := connect(t, url)
	select {
	case e := <-a.errs:
		require.ErrorIs(t, e, ErrSlowConsumer)
		require.Equal(t, "queue full", e.Message)
	case <-time.After(waitTimeout):
		require.FailNow(t, "no error")
	}
	require.Equal(t, closeInfo{code: 4000, reason: "slow consumer"}, a.nextClose(t))
	var ce *CloseError
	require.ErrorAs(t, a.Err(), &ce)
	require.Equal(t, 4000, ce.Code)
	select {
	case p := <-echoed:
		require.Equal(t, uint16(4000), binary.BigEndian.Uint16(p), "the client echoes the code")
	case <-time.After(waitTimeout):
		require.FailNow(t, "close not echoed")
	}
}

func TestProtocolViolationsCloseTheConnection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		send ws.Frame
		max  int
		code int
	}{
		{"text message", ws.NewTextFrame([]byte("hi")), 0, 1003},
		{"too big", ws.NewBinaryFrame(make([]byte, 2000)), 1000, 1009},
		{"continuation first", ws.NewFrame(ws.OpContinuation, true, []byte{1}), 0, 1002},
		{"masked", ws.MaskFrame(ws.NewBinaryFrame([]byte{1})), 0, 1002},
		{"undecodable", ws.NewBinaryFrame([]byte{0xff, 0xff}), 0, 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan uint16, 1)
			url := rawServer(t, func(conn net.Conn) {
				_ = ws.WriteFrame(conn, tc.send)
				h, p, err := readClientFrame(conn)
				if err == nil && h.OpCode == ws.OpClose && len(p) >= 2 {
					got <- binary.BigEndian.Uint16(p)
				}
			})
			a := connectWith(t, url, Options{MaxMessageSize: tc.max})
			require.Equal(t, tc.code, a.nextClose(t).code)
			select {
			case code := <-got:
				require.Equal(t, uint16(tc.code), code)
			case <-time.After(waitTimeout):
				require.FailNow(t, "no close frame from the client")
			}
		})
	}
}

func TestKeepAlive(t *testing.T) {
	t.Parallel()
	t.Run("answered", func(t *testing.T) {
		t.Parallel()
		pings := make(chan struct{}, 100)
		url := rawServer(t, func(conn net.Conn) {
			for {
				h, p, err := readClientFrame(conn)
				if err != nil {
					return
				}
				if h.OpCode == ws.OpPing {
					_ = ws.WriteFrame(conn, ws.NewPongFrame(p))
					pings <- struct{}{}
				}
			}
		})
		// The client gives up when nothing arrived one interval after its
		// ping: the interval must be long against this machine's worst
		// scheduling delay, or a pong that was on its way counts as lost
		// (10 ms failed in a CI run under -race).
		a := connectWith(t, url, Options{PingInterval: 200 * time.Millisecond})
		for range 5 {
			select {
			case <-pings:
			case <-time.After(waitTimeout):
				require.FailNow(t, "no keep-alive ping")
			}
		}
		require.NoError(t, a.Err(), "the connection stays up while pongs come back")
	})
	t.Run("unanswered", func(t *testing.T) {
		t.Parallel()
		url := rawServer(t, func(conn net.Conn) { _, _ = io.Copy(io.Discard, conn) })
		a := connectWith(t, url, Options{PingInterval: 10 * time.Millisecond})
		require.Equal(t, closeInfo{code: 1006, reason: "keepalive timeout"}, a.nextClose(t))
	})
}

func TestSendEncodesLikeTheGeneratedCode(t *testing.T) {
	t.Parallel()
	got := make(chan []byte, 1)
	url := rawServer(t, func(conn net.Conn) {
		_, p, err := readClientFrame(conn)
		if err == nil {
			got <- p
		}
		discardUntilClose(conn)
	})
	a := connect(t, url)
	payload := make([]byte, 300) // a 16-bit length header
	for i := range payload {
		payload[i] = byte(i)
	}
	require.NoError(t, a.Send(payload, SendOptions{Kind: 4, Targets: []uint32{2, 300}, Echo: true, LatestOnly: true}))
	select {
	case b := <-got:
		var m pb.ClientMessage
		require.NoError(t, proto.Unmarshal(b, &m))
		s := m.GetSend()
		require.Equal(t, payload, s.GetPayload())
		require.Equal(t, uint32(4), s.GetKind())
		require.Equal(t, []uint32{2, 300}, s.GetTargets())
		require.True(t, s.GetEcho())
		require.True(t, s.GetLatestOnly())
	case <-time.After(waitTimeout):
		require.FailNow(t, "nothing received")
	}
	// The caller's payload is not masked in place.
	require.Equal(t, byte(7), payload[7])
}

func TestSendAndReceiveDoNotAllocate(t *testing.T) {
	url := rawServer(t, discardUntilClose)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, url, Options{})
	require.NoError(t, err)
	defer c.Close()
	payload := make([]byte, 64)
	opts := SendOptions{Kind: 1, Targets: []uint32{3}}
	allocs := testing.AllocsPerRun(200, func() {
		if err := c.Send(payload, opts); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs, "Send")

	// The receive path: decode a frame of deliveries and hand it over.
	var n int
	rc := &Client{opts: Options{OnFrame: func(f *FrameView) { n += len(f.Deliveries) }}}
	var frame []byte
	frame = wire.AppendDelivery(frame, 1, 2, payload)
	frame = wire.AppendDelivery(frame, 3, 2, payload)
	msg := wire.AppendFrameStart(nil, 42, 0, len(frame))
	msg = append(msg, frame...)
	allocs = testing.AllocsPerRun(200, func() {
		if err := rc.dispatch(msg); err != nil {
			panic(err)
		}
	})
	require.Zero(t, allocs, "dispatch of a frame")
	require.Equal(t, 2*201, n)
}

func TestDialHTTPStatus(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "full", http.StatusServiceUnavailable)
	}))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/ws", Options{})
	var se *HTTPStatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, http.StatusServiceUnavailable, se.Status)
}

func TestSubprotocolOffered(t *testing.T) {
	t.Parallel()
	offered := make(chan string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		u := ws.Upgrader{Protocol: func(p []byte) bool {
			offered <- string(p)
			return string(p) == Subprotocol
		}}
		if _, err := u.Upgrade(conn); err == nil {
			discardUntilClose(conn)
		}
	}()
	c := connect(t, "ws://"+ln.Addr().String()+"/ws")
	select {
	case p := <-offered:
		require.Equal(t, "tickrelay.v1", p)
	case <-time.After(waitTimeout):
		require.FailNow(t, "no subprotocol offered")
	}
	require.NoError(t, c.Close())
}

func TestCloseErrorMayReconnect(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]bool{
		1000: false, 1001: true, 1002: false, 1005: true, 1006: true, 1008: false, 1009: false,
		1011: true, 4000: true, 4001: true, 4499: true, 4500: false, 4999: false,
	} {
		require.Equal(t, want, (&CloseError{Code: code}).MayReconnect(), "code %d", code)
	}
}

func TestSendIsBoundedByWriteTimeout(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	url := rawServer(t, func(net.Conn) { <-stop }) // never reads
	defer close(stop)
	a := connectWith(t, url, Options{WriteTimeout: 100 * time.Millisecond})
	big := make([]byte, 60<<10)
	start := time.Now()
	var err error
	for range 10000 { // the socket buffers fill after a few MB
		if err = a.Send(big, SendOptions{}); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.Less(t, time.Since(start), waitTimeout)
	require.Equal(t, 1006, a.nextClose(t).code, "a failed write ends the connection")
	require.ErrorIs(t, a.Send([]byte("x"), SendOptions{}), os.ErrDeadlineExceeded, "the failure is sticky")
}
