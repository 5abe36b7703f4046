package wsproto

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// Seeds for both fuzz targets are real gorilla/websocket traffic, captured
// by TestWriteCaptures into testdata/captures and checked in:
// handshake-*.http hold request heads, frames-*.bin the client frames that
// followed them. TestInteropCapturedFrames keeps them valid.
var writeCaptures = flag.Bool("write-captures", false, "rewrite testdata/captures from live gorilla sessions")

const capturesDir = "testdata/captures"

func loadCaptures(t testing.TB) (handshakes, frames map[string][]byte) {
	handshakes, frames = map[string][]byte{}, map[string][]byte{}
	entries, err := os.ReadDir(capturesDir)
	if err != nil {
		t.Fatalf("read captures: %v", err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(capturesDir, e.Name()))
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
		switch {
		case strings.HasPrefix(e.Name(), "handshake-"):
			handshakes[e.Name()] = b
		case strings.HasPrefix(e.Name(), "frames-"):
			frames[e.Name()] = b
		}
	}
	return handshakes, frames
}

func sortedValues(m map[string][]byte) [][]byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

func TestWriteCaptures(t *testing.T) {
	if !*writeCaptures {
		t.Skip("run with -write-captures to refresh testdata/captures")
	}
	s := startEchoServer(t, testConfig(), Limits{})
	sessions := []struct {
		name   string
		dialer *websocket.Dialer
		path   string
		header http.Header
		run    func(c *websocket.Conn)
	}{
		{
			name:   "subprotocol-origin",
			dialer: &websocket.Dialer{Subprotocols: []string{"tickrelay.v1"}},
			path:   "/ws",
			header: http.Header{"Origin": {"https://game.example"}},
			run: func(c *websocket.Conn) {
				_ = c.WriteMessage(websocket.BinaryMessage, []byte{0x0a, 0x03, 'a', 'b', 'c'})
				_ = c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{0x5a}, 200))
				_ = c.WriteControl(websocket.PingMessage, []byte("ping"), time.Now().Add(time.Second))
				_ = c.WriteMessage(websocket.BinaryMessage, nil)
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
			},
		},
		{
			name:   "fragmented",
			dialer: &websocket.Dialer{WriteBufferSize: 256},
			path:   "/echo?x=1",
			run: func(c *websocket.Conn) {
				_ = c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte("fragment"), 100))
				_ = c.WriteMessage(websocket.TextMessage, []byte("héllo wörld"))
				_ = c.WriteControl(websocket.PongMessage, nil, time.Now().Add(time.Second))
				_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4000, ""))
			},
		},
	}
	for _, ss := range sessions {
		c, _, err := ss.dialer.Dial(s.url(ss.path), ss.header)
		require.NoError(t, err)
		ss.run(c)
		// Wait for the server's Close, so that it has read everything.
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
		_ = c.Close()
		require.Eventually(t, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.captures) == 1
		}, 5*time.Second, 10*time.Millisecond)
		s.mu.Lock()
		raw := s.captures[0]
		s.captures = nil
		s.mu.Unlock()
		end := bytes.Index(raw, crlfcrlf) + 4
		require.Greater(t, end, 4)
		require.NoError(t, os.MkdirAll(capturesDir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(capturesDir, "handshake-"+ss.name+".http"), raw[:end], 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(capturesDir, "frames-"+ss.name+".bin"), raw[end:], 0o644))
	}
}

// fuzzLimits are small, so that fuzzing reaches the caps, and the defaults.
var fuzzLimits = [2]Limits{
	{MaxMessageBytes: 300, MaxFragments: 4},
	{},
}

func FuzzDecoder(f *testing.F) {
	_, frames := loadCaptures(f)
	for _, in := range sortedValues(frames) {
		f.Add(in, uint64(0))
		f.Add(in, uint64(1))
	}
	for _, in := range [][]byte{
		cat(frame(ws.OpBinary, []byte("ab")).more().bytes(), frame(ws.OpPing, []byte("p")).bytes(),
			frame(ws.OpContinuation, []byte("cd")).bytes()),
		frame(ws.OpClose, closePayload(1000, "bye")).bytes(),
		frame(ws.OpClose, []byte{3}).bytes(),
		frame(ws.OpBinary, nil).declare(10 << 20).bytes(),
		frame(ws.OpBinary, []byte("x")).noMask().bytes(),
		frame(ws.OpText, bytes.Repeat([]byte("é"), 100)).form64().bytes(),
		cat(frame(ws.OpBinary, nil).more().bytes(), frame(ws.OpContinuation, nil).more().bytes(),
			frame(ws.OpContinuation, nil).more().bytes(), frame(ws.OpContinuation, nil).more().bytes(),
			frame(ws.OpContinuation, nil).bytes()),
	} {
		f.Add(in, uint64(0))
	}

	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		l := fuzzLimits[seed%2]
		lim := l.withDefaults()
		check := func(d *Decoder, m Message, ok bool) {
			if d.asm != nil {
				if len(*d.asm) > lim.MaxMessageBytes {
					t.Fatalf("assembly holds %d bytes, cap %d", len(*d.asm), lim.MaxMessageBytes)
				}
				// Grown here: at most the limit; from the pool: at most the
				// pool's biggest.
				if cap(*d.asm) > max(lim.MaxMessageBytes, assemblyPoolMaxCap) {
					t.Fatalf("assembly capacity %d", cap(*d.asm))
				}
			}
			if int(d.fragments) > lim.MaxFragments {
				t.Fatalf("%d fragments, cap %d", d.fragments, lim.MaxFragments)
			}
			if !ok {
				return
			}
			switch m.Kind {
			case Binary, Text:
				if len(m.Payload) > lim.MaxMessageBytes {
					t.Fatalf("message of %d bytes", len(m.Payload))
				}
			case Ping, Pong:
				if len(m.Payload) > 125 {
					t.Fatalf("control payload of %d bytes", len(m.Payload))
				}
			case Close:
				if m.CloseCode != ws.StatusNoStatusRcvd && !validCloseCode(m.CloseCode) {
					t.Fatalf("close code %d let through", m.CloseCode)
				}
			default:
				t.Fatalf("kind %d", m.Kind)
			}
		}
		run := func(sizes []int) outcome {
			fd := newFeeder(l)
			fd.check = check
			in := append([]byte(nil), data...) // decoding unmasks in place
			for _, s := range sizes {
				s = min(s, len(in))
				fd.feed(in[:s])
				in = in[s:]
			}
			fd.feed(in)
			return fd.result()
		}

		whole := run(nil)
		same := func(how string, got outcome) {
			if !reflect.DeepEqual(got, whole) {
				t.Fatalf("%s differs from whole input:\n got %+v\nwant %+v", how, got, whole)
			}
		}
		// Two halves at every boundary (as nats-server's parser fuzzer does),
		// or at 32 random ones for longer inputs: every boundary costs
		// O(len²) per input, which would slow fuzzing (and minimizing) to a
		// crawl. Byte-by-byte feeding below still cuts at every boundary at
		// once, in O(len).
		r := rand.New(rand.NewPCG(seed, uint64(len(data))))
		if len(data) <= 128 {
			for i := 0; i <= len(data); i++ {
				same(fmt.Sprintf("split at %d", i), run([]int{i}))
			}
		} else {
			for range 32 {
				i := r.IntN(len(data) + 1)
				same(fmt.Sprintf("split at %d", i), run([]int{i}))
			}
		}
		if len(data) <= 16<<10 {
			ones := make([]int, len(data))
			for i := range ones {
				ones[i] = 1
			}
			same("byte by byte", run(ones))
		}
		sizes := randomSizes(r, len(data))
		same(fmt.Sprintf("chunks %v", sizes), run(sizes))
	})
}

func fuzzHandshakeConfig() *HandshakeConfig {
	cfg := testConfig()
	cfg.MaxHeaderBytes = 1024
	return cfg
}

func FuzzHandshake(f *testing.F) {
	hs, _ := loadCaptures(f)
	for _, in := range sortedValues(hs) {
		f.Add(in)
	}
	for _, in := range []string{
		string(browserRequest),
		string(wsRequest("/ws", "Cookie: "+strings.Repeat("c", 1000))),
		string(wsRequest("/ws", "Origin: https://evil.example")),
		string(wsRequest("/echo", "Sec-WebSocket-Protocol: a, tickrelay.v1")),
		"GET /healthz HTTP/1.0\r\n\r\n",
		"HEAD /healthz HTTP/1.1\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /nope HTTP/1.1\r\n\r\nGET /ws HTTP/1.1\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"\x16\x03\x01\x02\x00",
		"GET /ws HTTP/1.1\r\nCookie: " + strings.Repeat("c", 1100),
	} {
		f.Add([]byte(in))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := fuzzHandshakeConfig()
		res, w := fuzzOneHandshake(t, data, cfg)

		// A prefix, as it would have arrived earlier, is either still
		// incomplete or answered the same way (431 aside: a prefix cannot
		// know the head will not fit).
		r := rand.New(rand.NewPCG(uint64(len(data)), 7))
		for range min(len(data), 16) {
			k := r.IntN(len(data))
			pres, _ := fuzzOneHandshake(t, data[:k], cfg)
			if pres.NeedMore || res.Status == 431 {
				continue
			}
			if pres.Status != res.Status {
				t.Fatalf("prefix of %d answered %d, whole input %d", k, pres.Status, res.Status)
			}
		}
		_ = w
	})
}

// fuzzOneHandshake runs Handshake once and checks its invariants.
func fuzzOneHandshake(t *testing.T, data []byte, cfg *HandshakeConfig) (HandshakeResult, *recWriter) {
	in := append([]byte(nil), data...)
	var w recWriter
	res, err := Handshake(in, &w, cfg)
	if err != nil {
		t.Fatalf("error with a working writer: %v", err)
	}
	if !bytes.Equal(in, data) {
		t.Fatal("Handshake modified its input")
	}
	states := 0
	for _, b := range []bool{res.NeedMore, res.Upgraded, res.CloseAfterWrite} {
		if b {
			states++
		}
	}
	if states != 1 {
		t.Fatalf("want exactly one of NeedMore, Upgraded, CloseAfterWrite: %+v", res)
	}
	term := bytes.Index(data[:min(len(data), cfg.MaxHeaderBytes)], crlfcrlf)
	if res.NeedMore {
		if len(w.writes) != 0 {
			t.Fatalf("wrote %q while needing more", w.all())
		}
		if term >= 0 || len(data) >= cfg.MaxHeaderBytes {
			t.Fatalf("NeedMore although the head is complete or over the cap: %+v", res)
		}
		return res, &w
	}
	if len(w.writes) != 1 {
		t.Fatalf("%d writes, want one answer in one write", len(w.writes))
	}
	if res.Consumed != 0 && (term < 0 || res.Consumed != term+4) {
		t.Fatalf("consumed %d, head ends at %d", res.Consumed, term+4)
	}
	br := bufio.NewReader(bytes.NewReader(w.all()))
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("answer does not parse: %v\n%q", err, w.all())
	}
	if resp.StatusCode != res.Status {
		t.Fatalf("answered %d, result says %d", resp.StatusCode, res.Status)
	}
	if res.Upgraded {
		if res.Status != 101 || res.Consumed == 0 {
			t.Fatalf("upgrade result %+v", res)
		}
		if res.Subprotocol != "" && res.Subprotocol != cfg.Subprotocol {
			t.Fatalf("subprotocol %q", res.Subprotocol)
		}
	} else {
		if !resp.Close {
			t.Fatalf("answer %d without Connection: close", res.Status)
		}
		// A HEAD answer declares a body it does not carry; skip the check.
		if !bytes.HasPrefix(data, []byte("HEAD ")) {
			if _, err := bufio.NewReader(resp.Body).Discard(int(resp.ContentLength)); err != nil {
				t.Fatalf("body shorter than Content-Length: %v", err)
			}
			if br.Buffered() != 0 {
				t.Fatalf("bytes after the answer: %q", w.all())
			}
		}
	}
	return res, &w
}
