package wsproto

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// echoServer is a blocking, test-only stand-in for the gnet integration:
// each connection's read loop appends to a buffer and drives Handshake and
// Decoder exactly as OnTraffic would, then discards what was consumed. It
// echoes data messages (checking UTF-8 of Text, as the echo endpoint must),
// answers Pings, echoes Close, and obeys two commands sent as Binary:
// "srv-ping" (send a Ping "hb" first) and "srv-close" (close with
// CauseSlowConsumer).
type echoServer struct {
	ln     net.Listener
	cfg    *HandshakeConfig
	limits Limits

	received chan decoded // what the server decoded, in order
	mu       sync.Mutex
	captures [][]byte // raw bytes received per finished connection
	wg       sync.WaitGroup
}

func startEchoServer(t *testing.T, cfg *HandshakeConfig, l Limits) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &echoServer{ln: ln, cfg: cfg, limits: l, received: make(chan decoded, 1024)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) url(path string) string { return "ws://" + s.ln.Addr().String() + path }

func (s *echoServer) serve(conn net.Conn) {
	var raw []byte
	defer func() {
		s.mu.Lock()
		s.captures = append(s.captures, raw)
		s.mu.Unlock()
	}()
	defer conn.Close()
	var (
		buf      []byte
		upgraded bool
		echo     bool
		d        = NewDecoder(s.limits)
		out      []byte
		chunk    = make([]byte, 4096)
	)
	defer d.Reset()
	for {
		n, err := conn.Read(chunk)
		if err != nil {
			return
		}
		raw = append(raw, chunk[:n]...)
		buf = append(buf, chunk[:n]...)
		off := 0
		if !upgraded {
			res, err := Handshake(buf, conn, s.cfg)
			if err != nil || res.CloseAfterWrite {
				return
			}
			if res.NeedMore {
				continue
			}
			upgraded, echo, off = true, res.Echo, res.Consumed
		}
		out = out[:0]
		for {
			m, k, ok, err := d.Next(buf[off:])
			off += k
			if err != nil {
				var ce *CloseError
				errors.As(err, &ce)
				s.closeWith(conn, append(out, AppendClose(nil, ce.Code, ce.Reason)...))
				return
			}
			if !ok {
				break
			}
			s.received <- decoded{m.Kind, string(m.Payload), m.CloseCode, m.CloseReason}
			switch m.Kind {
			case Ping:
				out = AppendFrame(out, ws.OpPong, m.Payload)
			case Pong:
			case Close:
				// Echo the client's code (1005 becomes an empty payload).
				s.closeWith(conn, AppendClose(out, m.CloseCode, m.CloseReason))
				return
			case Text:
				if !echo {
					// Relay mode speaks binary only.
					s.closeWith(conn, AppendClose(out, ws.StatusUnsupportedData, "text frames not supported"))
					return
				}
				if !ValidUTF8(m.Payload) {
					s.closeWith(conn, AppendClose(out, ws.StatusInvalidFramePayloadData, "invalid message data"))
					return
				}
				out = AppendFrame(out, ws.OpText, m.Payload)
			case Binary:
				switch string(m.Payload) {
				case "srv-ping":
					out = AppendFrame(out, ws.OpPing, []byte("hb"))
				case "srv-close":
					s.closeWith(conn, AppendClose(out, 4000, "slow consumer"))
					return
				}
				out = AppendFrame(out, ws.OpBinary, m.Payload)
			}
		}
		// All replies of this read in one write, as the real server batches.
		if len(out) > 0 {
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
		buf = append(buf[:0], buf[off:]...)
	}
}

// closeWith writes the last bytes (ending in a Close), half-closes, and
// drains until the client closes or a timeout: closing with unread input
// would make the kernel send RST and the client could lose our Close.
func (s *echoServer) closeWith(conn net.Conn, last []byte) {
	_, _ = conn.Write(last)
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.Copy(io.Discard, conn)
}

func (s *echoServer) next(t *testing.T) decoded {
	t.Helper()
	select {
	case m := <-s.received:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("server decoded nothing")
		return decoded{}
	}
}

func dial(t *testing.T, d *websocket.Dialer, url string, h http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := d.Dial(url, h)
	require.NoError(t, err)
	require.Equal(t, 101, resp.StatusCode)
	// A bug on our side must fail the test, not hang it.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestInteropGorillaHandshake(t *testing.T) {
	t.Parallel()
	s := startEchoServer(t, testConfig(), Limits{})

	d := &websocket.Dialer{Subprotocols: []string{"chat", "tickrelay.v1"}, HandshakeTimeout: 5 * time.Second}
	c := dial(t, d, s.url("/ws"), http.Header{"Origin": {"https://game.example"}})
	require.Equal(t, "tickrelay.v1", c.Subprotocol(), "gorilla accepted the negotiated subprotocol")

	c = dial(t, &websocket.Dialer{}, s.url("/ws?room=1"), nil)
	require.Empty(t, c.Subprotocol())

	c = dial(t, &websocket.Dialer{}, s.url("/echo"), nil)
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte("héllo")))
	mt, p, err := c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.TextMessage, mt)
	require.Equal(t, "héllo", string(p))

	_, resp, err := (&websocket.Dialer{}).Dial(s.url("/ws"), http.Header{"Origin": {"https://evil.example"}})
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	require.Equal(t, 403, resp.StatusCode)

	_, resp, err = (&websocket.Dialer{}).Dial(s.url("/nope"), nil)
	require.ErrorIs(t, err, websocket.ErrBadHandshake)
	require.Equal(t, 404, resp.StatusCode)

	// net/http as a plain HTTP client.
	hc := &http.Client{Timeout: 5 * time.Second}
	base := "http://" + s.ln.Addr().String()
	r, err := hc.Get(base + "/healthz")
	require.NoError(t, err)
	body, _ := io.ReadAll(r.Body)
	_ = r.Body.Close()
	require.Equal(t, 200, r.StatusCode)
	require.Equal(t, "ok\n", string(body))

	r, err = hc.Get(base + "/ws")
	require.NoError(t, err)
	_ = r.Body.Close()
	require.Equal(t, 426, r.StatusCode)
	require.Equal(t, "websocket", r.Header.Get("Upgrade"))
}

func TestInteropGorillaFrames(t *testing.T) {
	t.Parallel()
	s := startEchoServer(t, testConfig(), Limits{MaxMessageBytes: 1 << 20})
	c := dial(t, &websocket.Dialer{WriteBufferSize: 1 << 20}, s.url("/ws"), nil)

	// Every length form, both directions: gorilla's masked frames through
	// our decoder, our unmasked frames through gorilla's reader.
	for _, n := range []int{0, 1, 64, 125, 126, 1000, 65535, 65536, 300000} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		require.NoError(t, c.WriteMessage(websocket.BinaryMessage, p))
		require.Equal(t, decoded{Kind: Binary, Payload: string(p)}, s.next(t), "server view, %d bytes", n)
		mt, got, err := c.ReadMessage()
		require.NoError(t, err)
		require.Equal(t, websocket.BinaryMessage, mt)
		require.Equal(t, p, got, "echo of %d bytes", n)
	}
}

func TestInteropGorillaFragmentsAndControl(t *testing.T) {
	t.Parallel()
	s := startEchoServer(t, testConfig(), Limits{})
	// A small write buffer makes gorilla split a message into frames.
	c := dial(t, &websocket.Dialer{WriteBufferSize: 256}, s.url("/ws"), nil)

	pongs := make(chan string, 4)
	c.SetPongHandler(func(p string) error { pongs <- p; return nil })

	big := bytes.Repeat([]byte("0123456789"), 300) // 3000 bytes, ~12 frames
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, big))
	require.Equal(t, decoded{Kind: Binary, Payload: string(big)}, s.next(t))
	_, got, err := c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, big, got)

	// Ping from the client: our Pong reaches gorilla's handler (control
	// frames are processed while it reads the next message).
	require.NoError(t, c.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)))
	require.Equal(t, decoded{Kind: Ping, Payload: "are you there"}, s.next(t))
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, []byte("after ping")))
	require.Equal(t, decoded{Kind: Binary, Payload: "after ping"}, s.next(t))
	_, got, err = c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, "after ping", string(got))
	require.Equal(t, "are you there", <-pongs)

	// Ping from the server: gorilla's default handler answers with a Pong
	// our decoder reads.
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, []byte("srv-ping")))
	require.Equal(t, decoded{Kind: Binary, Payload: "srv-ping"}, s.next(t))
	_, _, err = c.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, decoded{Kind: Pong, Payload: "hb"}, s.next(t))

	// Client-initiated close: our echo of its Close reaches gorilla.
	require.NoError(t, c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye")))
	require.Equal(t, Close, s.next(t).Kind)
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 1000, ce.Code)
	require.Equal(t, "bye", ce.Text)
}

func TestInteropGorillaServerCloses(t *testing.T) {
	t.Parallel()
	s := startEchoServer(t, testConfig(), Limits{MaxMessageBytes: 1000})
	readClose := func(c *websocket.Conn) *websocket.CloseError {
		t.Helper()
		for {
			_, _, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				require.ErrorAs(t, err, &ce)
				return ce
			}
		}
	}

	c := dial(t, &websocket.Dialer{}, s.url("/ws"), nil)
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, []byte("srv-close")))
	ce := readClose(c)
	require.Equal(t, 4000, ce.Code)
	require.Equal(t, "slow consumer", ce.Text)

	c = dial(t, &websocket.Dialer{}, s.url("/ws"), nil)
	require.NoError(t, c.WriteMessage(websocket.BinaryMessage, make([]byte, 1001)))
	ce = readClose(c)
	require.Equal(t, websocket.CloseMessageTooBig, ce.Code)

	// Gorilla does not check outgoing Text, so it can send invalid UTF-8.
	c = dial(t, &websocket.Dialer{}, s.url("/echo"), nil)
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte{'o', 'k', 0xff}))
	ce = readClose(c)
	require.Equal(t, websocket.CloseInvalidFramePayloadData, ce.Code)

	c = dial(t, &websocket.Dialer{}, s.url("/ws"), nil)
	require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte("text")))
	ce = readClose(c)
	require.Equal(t, websocket.CloseUnsupportedData, ce.Code)

	// A close code gorilla may send but RFC 6455 forbids on the wire.
	c = dial(t, &websocket.Dialer{}, s.url("/ws"), nil)
	require.NoError(t, c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1004, "")))
	ce = readClose(c)
	require.Equal(t, websocket.CloseProtocolError, ce.Code)
}

// TestInteropCapturedFrames checks the gorilla traffic captured in testdata
// (the fuzz seeds) still decodes cleanly, so the seeds stay meaningful.
func TestInteropCapturedFrames(t *testing.T) {
	t.Parallel()
	hs, frames := loadCaptures(t)
	require.NotEmpty(t, hs)
	require.NotEmpty(t, frames)
	for name, req := range hs {
		var w recWriter
		res, err := Handshake(req, &w, fuzzHandshakeConfig())
		require.NoError(t, err)
		require.True(t, res.Upgraded, "%s: %+v", name, res)
		require.Equal(t, len(req), res.Consumed, name)
	}
	for name, in := range frames {
		out := decodeWhole(Limits{}, in)
		require.Zero(t, out.ErrCode, "%s: %s", name, out.ErrText)
		require.NotEmpty(t, out.Msgs, name)
		require.Zero(t, out.Pending, name)
		if strings.Contains(name, "fragmented") {
			require.Greater(t, countFrames(in), len(out.Msgs), "%s holds fragments", name)
		}
	}
}

func countFrames(in []byte) int {
	n := 0
	for len(in) > 0 {
		h, hl, err := parseHeader(in)
		if err != nil || hl == 0 {
			return n
		}
		in = in[hl+int(h.Length):]
		n++
	}
	return n
}
