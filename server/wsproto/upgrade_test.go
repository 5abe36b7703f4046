package wsproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// recWriter records every Write call separately, to check "one answer, one
// write".
type recWriter struct{ writes [][]byte }

func (w *recWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (w *recWriter) all() []byte { return bytes.Join(w.writes, nil) }

func testConfig() *HandshakeConfig {
	return &HandshakeConfig{
		Path:           "/ws",
		EchoPath:       "/echo",
		AllowedOrigins: []string{"https://game.example", "http://localhost:8080"},
		Subprotocol:    "tickrelay.v1",
		HealthPath:     "/healthz",
	}
}

const sampleKey = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 section 1.3
const sampleAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

func wsRequest(target string, extra ...string) []byte {
	var b strings.Builder
	b.WriteString("GET " + target + " HTTP/1.1\r\n")
	b.WriteString("Host: game.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	b.WriteString("Sec-WebSocket-Key: " + sampleKey + "\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// browserRequest is what Chrome sends, headers and all.
var browserRequest = []byte("GET /ws HTTP/1.1\r\n" +
	"Host: game.example\r\n" +
	"Connection: Upgrade\r\n" +
	"Pragma: no-cache\r\n" +
	"Cache-Control: no-cache\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n" +
	"Upgrade: websocket\r\n" +
	"Origin: https://game.example\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Accept-Language: en-US,en;q=0.9\r\n" +
	"Sec-WebSocket-Key: " + sampleKey + "\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
	"Sec-WebSocket-Protocol: tickrelay.v1\r\n" +
	"\r\n")

func parseAnswer(t *testing.T, raw []byte, method string) (*http.Response, string) {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	require.NoError(t, err, "answer: %q", raw)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Zero(t, br.Buffered(), "exactly one answer, nothing after it: %q", raw)
	return resp, string(body)
}

func TestHandshakeUpgrade(t *testing.T) {
	t.Parallel()
	extra := []byte{0x82, 0x80, 1, 2, 3, 4} // a first frame right behind the request
	in := append(append([]byte(nil), browserRequest...), extra...)
	var w recWriter
	res, err := Handshake(in, &w, testConfig())
	require.NoError(t, err)
	require.Equal(t, HandshakeResult{
		Consumed:    len(browserRequest),
		Upgraded:    true,
		Subprotocol: "tickrelay.v1",
		Status:      101,
	}, res)
	require.Len(t, w.writes, 1, "one write")
	resp, _ := parseAnswer(t, w.all(), http.MethodGet)
	require.Equal(t, 101, resp.StatusCode)
	require.Equal(t, sampleAccept, resp.Header.Get("Sec-WebSocket-Accept"))
	require.Equal(t, "tickrelay.v1", resp.Header.Get("Sec-WebSocket-Protocol"))
	require.True(t, strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"))
	require.Empty(t, resp.Header.Get("Sec-WebSocket-Extensions"), "no extension is negotiated, so RSV bits stay 0")
}

func TestHandshakeDribbled(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	for i := 0; i < len(browserRequest); i++ {
		var w recWriter
		res, err := Handshake(browserRequest[:i], &w, cfg)
		require.NoError(t, err)
		require.Equal(t, HandshakeResult{NeedMore: true}, res, "prefix of %d bytes", i)
		require.Empty(t, w.writes, "nothing written before the request is complete")
	}
	var w recWriter
	res, err := Handshake(browserRequest, &w, cfg)
	require.NoError(t, err)
	require.True(t, res.Upgraded)
	require.Len(t, w.writes, 1)
}

func TestHandshakeSubprotocol(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfgProt string
		offered []string
		want    string
	}{
		{name: "offered alone", cfgProt: "tickrelay.v1", offered: []string{"Sec-WebSocket-Protocol: tickrelay.v1"}, want: "tickrelay.v1"},
		{name: "offered among others", cfgProt: "tickrelay.v1", offered: []string{"Sec-WebSocket-Protocol: chat, tickrelay.v1"}, want: "tickrelay.v1"},
		{name: "second header", cfgProt: "tickrelay.v1", offered: []string{"Sec-WebSocket-Protocol: chat", "Sec-WebSocket-Protocol: tickrelay.v1"}, want: "tickrelay.v1"},
		{name: "not offered", cfgProt: "tickrelay.v1", offered: nil, want: ""},
		{name: "others only", cfgProt: "tickrelay.v1", offered: []string{"Sec-WebSocket-Protocol: chat"}, want: ""},
		{name: "prefix is not a match", cfgProt: "tickrelay.v1", offered: []string{"Sec-WebSocket-Protocol: tickrelay.v10"}, want: ""},
		{name: "none configured", cfgProt: "", offered: []string{"Sec-WebSocket-Protocol: tickrelay.v1"}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.Subprotocol = tc.cfgProt
			var w recWriter
			res, err := Handshake(wsRequest("/ws", tc.offered...), &w, cfg)
			require.NoError(t, err)
			require.True(t, res.Upgraded, "subprotocols are not required: %+v", res)
			require.Equal(t, tc.want, res.Subprotocol)
			resp, _ := parseAnswer(t, w.all(), http.MethodGet)
			require.Equal(t, tc.want, resp.Header.Get("Sec-WebSocket-Protocol"))
		})
	}
}

func TestHandshakeOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		allowed []string
		origin  []string
		ok      bool
	}{
		{name: "allowed", allowed: []string{"https://game.example"}, origin: []string{"Origin: https://game.example"}, ok: true},
		{name: "allowed with port", allowed: []string{"https://a.example", "http://localhost:8080"}, origin: []string{"Origin: http://localhost:8080"}, ok: true},
		{name: "case of scheme and host", allowed: []string{"https://Game.Example"}, origin: []string{"Origin: https://game.example"}, ok: true},
		{name: "no Origin: not a browser", allowed: []string{"https://game.example"}, origin: nil, ok: true},
		{name: "empty list allows any", allowed: nil, origin: []string{"Origin: https://evil.example"}, ok: true},
		{name: "star allows any", allowed: []string{"https://game.example", "*"}, origin: []string{"Origin: https://evil.example"}, ok: true},
		{name: "other site", allowed: []string{"https://game.example"}, origin: []string{"Origin: https://evil.example"}, ok: false},
		{name: "other port", allowed: []string{"http://localhost:8080"}, origin: []string{"Origin: http://localhost:8081"}, ok: false},
		{name: "other scheme", allowed: []string{"https://game.example"}, origin: []string{"Origin: http://game.example"}, ok: false},
		{name: "suffix trick", allowed: []string{"https://game.example"}, origin: []string{"Origin: https://game.example.evil.example"}, ok: false},
		{name: "header name in lower case", allowed: []string{"https://game.example"}, origin: []string{"origin: https://evil.example"}, ok: false},
		{name: "null origin", allowed: []string{"https://game.example"}, origin: []string{"Origin: null"}, ok: false},
		{name: "second Origin header is checked too", allowed: []string{"https://game.example"}, origin: []string{"Origin: https://game.example", "Origin: https://evil.example"}, ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.AllowedOrigins = tc.allowed
			var w recWriter
			res, err := Handshake(wsRequest("/ws", tc.origin...), &w, cfg)
			require.NoError(t, err)
			require.Len(t, w.writes, 1)
			if tc.ok {
				require.True(t, res.Upgraded, "%+v", res)
				return
			}
			require.False(t, res.Upgraded)
			require.True(t, res.CloseAfterWrite)
			require.Equal(t, 403, res.Status)
			resp, body := parseAnswer(t, w.all(), http.MethodGet)
			require.Equal(t, 403, resp.StatusCode)
			require.True(t, resp.Close, "Connection: close")
			require.Equal(t, "origin not allowed\n", body)
		})
	}
}

func TestHandshakeHTTPAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		req    string
		method string
		status int
		body   string
		header map[string]string
	}{
		{
			name:   "plain GET on the WebSocket path",
			req:    "GET /ws HTTP/1.1\r\nHost: game.example\r\n\r\n",
			status: 426,
			body:   "websocket upgrade required\n",
			header: map[string]string{"Upgrade": "websocket", "Sec-WebSocket-Version": "13"},
		},
		{
			name:   "plain GET on the echo path",
			req:    "GET /echo HTTP/1.1\r\nHost: game.example\r\n\r\n",
			status: 426,
			body:   "websocket upgrade required\n",
		},
		{
			name:   "Upgrade to something else is plain HTTP",
			req:    "GET /ws HTTP/1.1\r\nHost: game.example\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
			status: 426,
			body:   "websocket upgrade required\n",
		},
		{
			name:   "health",
			req:    "GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n",
			status: 200,
			body:   "ok\n",
		},
		{
			name:   "health over HTTP/1.0 with a query",
			req:    "GET /healthz?probe=1 HTTP/1.0\r\n\r\n",
			status: 200,
			body:   "ok\n",
		},
		{
			name:   "health HEAD has no body",
			req:    "HEAD /healthz HTTP/1.1\r\nHost: lb\r\n\r\n",
			method: http.MethodHead,
			status: 200,
			body:   "",
		},
		{
			name:   "health POST",
			req:    "POST /healthz HTTP/1.1\r\nHost: lb\r\nContent-Length: 0\r\n\r\n",
			status: 405,
			body:   "method not allowed\n",
			header: map[string]string{"Allow": "GET, HEAD"},
		},
		{
			name:   "unknown path",
			req:    "GET /favicon.ico HTTP/1.1\r\nHost: game.example\r\n\r\n",
			status: 404,
			body:   "not found\n",
		},
		{
			name:   "unknown path with upgrade",
			req:    string(wsRequest("/other")),
			status: 404,
			body:   "not found\n",
		},
		{
			name:   "path is matched exactly",
			req:    string(wsRequest("/ws/")),
			status: 404,
			body:   "not found\n",
		},
		{
			name:   "WebSocket over HTTP/1.0",
			req:    strings.Replace(string(wsRequest("/ws")), "HTTP/1.1", "HTTP/1.0", 1),
			status: 505,
		},
		{
			name:   "HTTP/2 request line",
			req:    "GET /ws HTTP/2.0\r\nHost: x\r\n\r\n",
			status: 505,
		},
		{
			name:   "POST upgrade",
			req:    strings.Replace(string(wsRequest("/ws")), "GET", "POST", 1),
			status: 405,
			header: map[string]string{"Allow": "GET"},
		},
		{
			name:   "missing key",
			req:    strings.Replace(string(wsRequest("/ws")), "Sec-WebSocket-Key: "+sampleKey+"\r\n", "", 1),
			status: 400,
		},
		{
			name:   "short key",
			req:    strings.Replace(string(wsRequest("/ws")), sampleKey, "abc", 1),
			status: 400,
		},
		{
			name:   "missing Connection",
			req:    strings.Replace(string(wsRequest("/ws")), "Connection: Upgrade\r\n", "", 1),
			status: 400,
		},
		{
			name:   "missing Host",
			req:    strings.Replace(string(wsRequest("/ws")), "Host: game.example\r\n", "", 1),
			status: 400,
		},
		{
			name:   "other WebSocket version",
			req:    strings.Replace(string(wsRequest("/ws")), "Version: 13", "Version: 8", 1),
			status: 426,
			header: map[string]string{"Sec-WebSocket-Version": "13"},
		},
		{
			name:   "malformed request line",
			req:    "hello world\r\n\r\n",
			status: 400,
			body:   "malformed request line\n",
		},
		{
			name:   "header without colon",
			req:    "GET /ws HTTP/1.1\r\nHost game.example\r\n\r\n",
			status: 400,
		},
		{
			name:   "space before colon",
			req:    "GET /ws HTTP/1.1\r\nHost : game.example\r\n\r\n",
			status: 400,
		},
		{
			name:   "obsolete line folding",
			req:    "GET /ws HTTP/1.1\r\nHost: game.example\r\n continued\r\n\r\n",
			status: 400,
		},
		{
			name:   "bare LF inside a header",
			req:    "GET /ws HTTP/1.1\r\nHost: a\nUpgrade: websocket\r\n\r\n",
			status: 400,
		},
		{
			name:   "control character in target",
			req:    "GET /w\x01s HTTP/1.1\r\n\r\n",
			status: 400,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			var w recWriter
			res, err := Handshake([]byte(tc.req), &w, testConfig())
			require.NoError(t, err)
			require.Len(t, w.writes, 1, "one answer in one write")
			require.True(t, res.CloseAfterWrite)
			require.False(t, res.Upgraded)
			require.False(t, res.NeedMore)
			require.Equal(t, tc.status, res.Status, res.Reason)
			require.Equal(t, len(tc.req), res.Consumed)
			resp, body := parseAnswer(t, w.all(), method)
			require.Equal(t, tc.status, resp.StatusCode)
			require.True(t, resp.Close, "every answer but 101 closes")
			if tc.body != "" || tc.status == 200 {
				require.Equal(t, tc.body, body)
			}
			for k, v := range tc.header {
				require.Equal(t, v, resp.Header.Get(k), k)
			}
		})
	}
}

func TestHandshakeRoutes(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	for _, tc := range []struct {
		target string
		echo   bool
	}{
		{target: "/ws"},
		{target: "/ws?room=abc&token=x"},
		{target: "http://game.example/ws"},
		{target: "/echo", echo: true},
		{target: "/echo#frag", echo: true},
	} {
		var w recWriter
		res, err := Handshake(wsRequest(tc.target), &w, cfg)
		require.NoError(t, err)
		require.True(t, res.Upgraded, "%s: %+v", tc.target, res)
		require.Equal(t, tc.echo, res.Echo, tc.target)
	}

	// Defaults: Path "/ws", no echo, no health.
	var w recWriter
	res, err := Handshake(wsRequest("/ws"), &w, &HandshakeConfig{})
	require.NoError(t, err)
	require.True(t, res.Upgraded)
	res, err = Handshake([]byte("GET /healthz HTTP/1.1\r\n\r\n"), &w, nil)
	require.NoError(t, err)
	require.Equal(t, 404, res.Status, "health is off unless configured")
}

func TestHandshakeHeaderLimit(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxHeaderBytes = 1024

	// Pad a request to exactly n bytes with a Cookie header.
	sized := func(n int) []byte {
		base := wsRequest("/ws", "Cookie: ")
		pad := n - len(base)
		return wsRequest("/ws", "Cookie: "+strings.Repeat("c", pad))
	}
	exact := sized(1024)
	require.Len(t, exact, 1024)
	var w recWriter
	res, err := Handshake(exact, &w, cfg)
	require.NoError(t, err)
	require.True(t, res.Upgraded, "a head of exactly MaxHeaderBytes fits: %+v", res)

	// One more byte and it cannot fit; 431 as soon as the cap is reached,
	// without waiting for the rest.
	over := sized(1025)
	for i := 0; i < 1024; i++ {
		res, err := Handshake(over[:i], &w, cfg)
		require.NoError(t, err)
		require.True(t, res.NeedMore, "prefix %d", i)
	}
	w = recWriter{}
	res, err = Handshake(over[:1024], &w, cfg)
	require.NoError(t, err)
	require.Equal(t, 431, res.Status)
	require.True(t, res.CloseAfterWrite)
	require.Len(t, w.writes, 1)
	resp, _ := parseAnswer(t, w.all(), http.MethodGet)
	require.Equal(t, 431, resp.StatusCode)
	require.True(t, resp.Close)

	// The default cap is 8 KiB.
	w = recWriter{}
	res, err = Handshake(bytes.Repeat([]byte("A"), DefaultMaxHeaderBytes-1), &w, &HandshakeConfig{})
	require.NoError(t, err)
	require.Equal(t, 400, res.Status, "a run of letters is no method: rejected as garbage below the cap")
	big := append([]byte("GET /ws HTTP/1.1\r\nCookie: "), bytes.Repeat([]byte("c"), DefaultMaxHeaderBytes)...)
	res, err = Handshake(big, &w, &HandshakeConfig{})
	require.NoError(t, err)
	require.Equal(t, 431, res.Status)
}

func TestHandshakeGarbageFailsFast(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{name: "TLS ClientHello on the plain port", in: []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}},
		{name: "binary", in: []byte{0x00, 0xff, 0x10}},
		{name: "leading space", in: []byte(" GET /ws HTTP/1.1\r\n")},
		{name: "method too long", in: bytes.Repeat([]byte("G"), maxMethodLen+1)},
		{name: "bare LF request line", in: []byte("GET /ws HTTP/1.1\nHost: x\n")},
		{name: "bad version", in: []byte("GET /ws HTTP/x\r\nHost: x")},
		{name: "empty first line", in: []byte("\r\nGET /ws HTTP/1.1\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var w recWriter
			res, err := Handshake(tc.in, &w, testConfig())
			require.NoError(t, err)
			require.False(t, res.NeedMore, "no need to wait for the rest")
			require.Equal(t, 400, res.Status)
			require.Len(t, w.writes, 1)
			resp, _ := parseAnswer(t, w.all(), http.MethodGet)
			require.Equal(t, 400, resp.StatusCode)
		})
	}
}

func TestWriteHTTPError(t *testing.T) {
	t.Parallel()
	var w recWriter
	require.NoError(t, WriteHTTPError(&w, 503, "server full"))
	require.Len(t, w.writes, 1)
	resp, body := parseAnswer(t, w.all(), http.MethodGet)
	require.Equal(t, 503, resp.StatusCode)
	require.True(t, resp.Close)
	require.Equal(t, "server full", body)
	require.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))

	w = recWriter{}
	require.NoError(t, WriteHTTPError(&w, 599, ""))
	resp, _ = parseAnswer(t, w.all(), http.MethodGet)
	require.Equal(t, 599, resp.StatusCode)
}

type failWriter struct{}

var errBroken = errors.New("broken pipe")

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }

func TestHandshakeWriteError(t *testing.T) {
	t.Parallel()
	res, err := Handshake(browserRequest, failWriter{}, testConfig())
	require.ErrorIs(t, err, errBroken)
	require.True(t, res.Upgraded, "the result still says what was attempted")

	res, err = Handshake([]byte("GET /nope HTTP/1.1\r\n\r\n"), failWriter{}, testConfig())
	require.ErrorIs(t, err, errBroken)
	require.True(t, res.CloseAfterWrite)
	require.ErrorIs(t, WriteHTTPError(failWriter{}, 503, "x"), errBroken)
}

func TestHandshakeConcurrent(t *testing.T) {
	t.Parallel()
	// One config shared by all event loops; pooled scratch must not leak
	// state between them (run with -race).
	cfg := testConfig()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				var w recWriter
				req := browserRequest
				want := true
				if i%3 == 0 {
					req = wsRequest("/ws", "Origin: https://evil.example")
					want = false
				}
				res, err := Handshake(req, &w, cfg)
				if err != nil || res.Upgraded != want || len(w.writes) != 1 {
					t.Errorf("goroutine %d iteration %d: %+v %v", g, i, res, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestHandshakeForwardedHeadersAndTokens(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Forwarded = true
	cfg.AuthSubprotocolPrefix = "tickrelay.auth."
	var w recWriter
	res, err := Handshake(wsRequest("/ws?room=a",
		"X-Forwarded-For: 203.0.113.7, 10.0.0.1",
		"x-forwarded-for: 10.0.0.2",
		"X-Real-IP:  198.51.100.9 ",
		"Sec-WebSocket-Protocol: tickrelay.v1, tickrelay.auth.eyJhbGciOi.eyJzdWIi.c2ln",
	), &w, cfg)
	require.NoError(t, err)
	require.True(t, res.Upgraded)
	require.Equal(t, []string{"203.0.113.7, 10.0.0.1", "10.0.0.2"}, res.XForwardedFor)
	require.Equal(t, "198.51.100.9", res.XRealIP)
	require.Equal(t, "eyJhbGciOi.eyJzdWIi.c2ln", res.AuthToken, "the token may come after the protocol the relay selects")
	resp, _ := parseAnswer(t, w.all(), http.MethodGet)
	require.Equal(t, "tickrelay.v1", resp.Header.Get("Sec-WebSocket-Protocol"), "the token subprotocol is never selected")

	// The token alone: upgraded without a subprotocol.
	w = recWriter{}
	res, err = Handshake(wsRequest("/ws", "Sec-WebSocket-Protocol: tickrelay.auth.abc"), &w, cfg)
	require.NoError(t, err)
	require.True(t, res.Upgraded)
	require.Equal(t, "abc", res.AuthToken)
	require.Empty(t, res.Subprotocol)

	// Off by default: nothing captured.
	w = recWriter{}
	res, err = Handshake(wsRequest("/ws?token=x", "X-Forwarded-For: 203.0.113.7", "Sec-WebSocket-Protocol: tickrelay.auth.abc"), &w, testConfig())
	require.NoError(t, err)
	require.True(t, res.Upgraded)
	require.Empty(t, res.XForwardedFor)
	require.Empty(t, res.AuthToken)

	// A URL token only when asked for.
	cfg = testConfig()
	cfg.URLTokenParam = "access_token"
	w = recWriter{}
	res, err = Handshake(wsRequest("/ws?x=1&access_token=a%2Eb.c#frag"), &w, cfg)
	require.NoError(t, err)
	require.True(t, res.Upgraded)
	require.Equal(t, "a.b.c", res.AuthToken)
}
