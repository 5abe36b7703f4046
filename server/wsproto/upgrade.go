package wsproto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/gobwas/ws"
)

// Handshake defaults for zero HandshakeConfig fields.
const (
	DefaultPath           = "/ws"
	DefaultMaxHeaderBytes = 8 << 10
)

// HandshakeConfig configures Handshake. It is read, never written, so one
// value can serve every connection and every event loop at once; do not
// change it while connections are being accepted.
type HandshakeConfig struct {
	// Path is the WebSocket endpoint. Empty means "/ws".
	Path string
	// EchoPath is a diagnostic echo endpoint (for Autobahn|Testsuite and
	// debugging). Empty means off.
	EchoPath string
	// AllowedOrigins lists the Origin values (scheme://host[:port]) that may
	// upgrade, compared exactly except for ASCII case. Empty, or an entry
	// "*", allows any. A request without Origin is not from a browser and is
	// allowed: Origin protects browser users from other sites' pages, it is
	// not authentication.
	AllowedOrigins []string
	// Subprotocol ("tickrelay.v1") is selected when the client offers it.
	// Clients that offer none are accepted too. Empty means none is ever
	// selected.
	Subprotocol string
	// MaxHeaderBytes bounds the request line plus headers, the final blank
	// line included. A request not complete within it gets 431. Zero means
	// 8 KiB.
	MaxHeaderBytes int
	// HealthPath answers a plain GET (or HEAD) with 200 "ok\n", for load
	// balancers. Empty means off.
	HealthPath string
	// Forwarded: report the X-Forwarded-For and X-Real-IP headers of an
	// upgraded request (HandshakeResult.XForwardedFor, XRealIP), for a
	// caller that trusts the proxy in front of it.
	Forwarded bool
	// AuthSubprotocolPrefix, if set: an offered subprotocol starting with it
	// carries an auth token (browsers cannot set headers on a WebSocket, but
	// can offer subprotocols): the rest is HandshakeResult.AuthToken, and it
	// is never selected.
	AuthSubprotocolPrefix string
	// URLTokenParam, if set: a query parameter of that name carries an auth
	// token (HandshakeResult.AuthToken). Off by default: URLs end up in
	// proxy logs.
	URLTokenParam string
	// OriginRefusalAfterUpgrade: a request whose Origin is not allowed is
	// upgraded anyway and reported as HandshakeResult.OriginRefused, so the
	// caller can close it with a code and reason the page can read (a
	// browser shows a refused upgrade as close 1006 with nothing more).
	// Otherwise it is answered 403.
	OriginRefusalAfterUpgrade bool
}

// HandshakeResult says what Handshake did. Exactly one of NeedMore,
// Upgraded and CloseAfterWrite is set.
type HandshakeResult struct {
	// Consumed is the length of the request (through its blank line), 0
	// when more bytes are needed or the request is rejected before it is
	// complete. After an upgrade, the bytes after Consumed already belong to
	// the WebSocket stream: feed them to the Decoder in the same OnTraffic
	// (gnet will not call again for bytes it has already delivered).
	Consumed int
	// NeedMore: the request is not complete yet and nothing was written.
	// Keep the bytes and call again with more.
	NeedMore bool
	// Upgraded: 101 was written; the connection now speaks WebSocket.
	Upgraded bool
	// Echo: upgraded on EchoPath.
	Echo bool
	// Subprotocol is the negotiated subprotocol, "" when none.
	Subprotocol string
	// XForwardedFor (every line, in order) and XRealIP, with
	// HandshakeConfig.Forwarded; copies.
	XForwardedFor []string
	XRealIP       string
	// AuthToken is a token offered with the handshake
	// (AuthSubprotocolPrefix, URLTokenParam); a copy, "" when none.
	AuthToken string
	// OriginRefused: upgraded although the Origin is not allowed
	// (HandshakeConfig.OriginRefusalAfterUpgrade); close the connection at
	// once, reading nothing from it.
	OriginRefused bool
	// CloseAfterWrite: an HTTP answer other than 101 was written (200 for
	// HealthPath, or an error); close the connection once it is flushed.
	CloseAfterWrite bool
	// Status is the HTTP status written (101 on upgrade), 0 with NeedMore.
	Status int
	// Reason says why, for logs: a fixed string (no allocation), "" when
	// Status is 101 or 200.
	Reason string
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")

	// errOriginForbidden is returned from ws.Upgrader.OnHeader; the Upgrader
	// then stops and reports it, and Handshake answers 403.
	errOriginForbidden = ws.RejectConnectionError(
		ws.RejectionStatus(http.StatusForbidden),
		ws.RejectionReason("origin not allowed"),
	)

	zeroConfig HandshakeConfig
)

// Handshake handles the HTTP request at the front of in: it upgrades
// WebSocket requests and answers plain HTTP ones. It never reads a socket,
// never blocks and writes at most one answer to w, in one Write call.
//
// It waits (NeedMore) until in holds the whole request head ("\r\n\r\n"
// within MaxHeaderBytes); a request that cannot fit gets 431. Bytes that
// cannot start an HTTP request (a TLS ClientHello, a bad method or request
// line, a bare LF) are answered at once, with the status the complete head
// would get, so the answer never depends on how the bytes were split into
// reads. A complete head is answered:
//
//   - HealthPath, GET or HEAD: 200 "ok\n" (405 for other methods).
//   - Path or EchoPath with "Upgrade: websocket": gobwas ws.Upgrader runs on
//     exactly the request bytes and checks the rest of RFC 6455 section 4.2.1
//     (GET, HTTP/1.1, Host, Connection, key, version 13); this function
//     checks Origin (403) and selects Subprotocol. Success writes 101.
//   - Path or EchoPath without it: 426 with "Upgrade: websocket".
//   - Any other path: 404. Malformed requests: 400.
//
// Every answer but 101 carries "Connection: close" and sets CloseAfterWrite.
// The Upgrader's own error answers are not used (they lack
// "Connection: close", and some failures write none); Handshake writes its
// own with the Upgrader's status. The caller enforces the handshake timeout.
//
// in is only read, and nothing in the result refers to it. A non-nil error
// means the write to w failed: close the connection whatever the result
// says. Handshake is safe for concurrent use.
func Handshake(in []byte, w io.Writer, cfg *HandshakeConfig) (HandshakeResult, error) {
	if cfg == nil {
		cfg = &zeroConfig
	}
	maxHdr := cfg.MaxHeaderBytes
	if maxHdr <= 0 {
		maxHdr = DefaultMaxHeaderBytes
	}
	end := bytes.Index(in[:min(len(in), maxHdr)], crlfcrlf)
	if end < 0 {
		if len(in) >= maxHdr {
			return answer(w, 0, false, http.StatusRequestHeaderFieldsTooLarge, "request header too large", "")
		}
		// Fail fast on what cannot become a request (a TLS ClientHello on
		// the plain port, random bytes) instead of waiting for the timeout.
		if status, reason := checkRequestPrefix(in); status != 0 {
			return answer(w, 0, false, status, reason, "")
		}
		return HandshakeResult{NeedMore: true}, nil
	}
	n := end + len(crlfcrlf)
	req, status, reason := parseRequest(in[:n], cfg.Forwarded, cfg.AuthSubprotocolPrefix)
	if status != 0 {
		return answer(w, n, req.head, status, reason, "")
	}

	wsPath := cfg.Path
	if wsPath == "" {
		wsPath = DefaultPath
	}
	path := string(req.path) // compared only: no allocation
	echo := cfg.EchoPath != "" && path == cfg.EchoPath
	switch {
	case cfg.HealthPath != "" && path == cfg.HealthPath:
		if !req.get && !req.head {
			return answer(w, n, false, http.StatusMethodNotAllowed, "method not allowed", "Allow: GET, HEAD\r\n")
		}
		return answer(w, n, req.head, http.StatusOK, "", "")
	case path != wsPath && !echo:
		return answer(w, n, req.head, http.StatusNotFound, "not found", "")
	case !req.wsUpgrade:
		return answer(w, n, req.head, http.StatusUpgradeRequired, "websocket upgrade required", headers426)
	}
	res, err := upgrade(in[:n], w, cfg, echo, req.head)
	if res.Upgraded {
		if cfg.Forwarded {
			for _, v := range req.xff {
				res.XForwardedFor = append(res.XForwardedFor, string(v))
			}
			res.XRealIP = string(req.xRealIP)
		}
		res.AuthToken = string(req.authToken)
		if cfg.URLTokenParam != "" && res.AuthToken == "" {
			res.AuthToken = queryParam(req.query, cfg.URLTokenParam)
		}
	}
	return res, err
}

// queryParam is the (unescaped) value of parameter name in a query string,
// "" when absent or malformed.
func queryParam(query []byte, name string) string {
	values, err := url.ParseQuery(string(query))
	if err != nil {
		return ""
	}
	return values.Get(name)
}

// headers426 tells a plain HTTP client what it must use (RFC 7231 6.5.15,
// RFC 6455 4.2.2).
const headers426 = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"

// upgradeScratch is what one ws.Upgrader run needs: a reader over the
// request, a buffer for its answer, and callbacks bound once to the scratch
// (bound method values allocate; pooling them keeps a handshake cheap).
type upgradeScratch struct {
	u         ws.Upgrader
	r         bytes.Reader
	out       []byte
	cfg       *HandshakeConfig
	badOrigin bool // the request's Origin is not allowed (OriginRefusalAfterUpgrade)
}

var scratchPool = sync.Pool{
	New: func() any {
		s := &upgradeScratch{out: make([]byte, 0, 256)}
		s.u.Protocol = s.selectProtocol
		s.u.OnHeader = s.onHeader
		return s
	},
}

// Read and Write make the scratch the io.ReadWriter the Upgrader wants.
func (s *upgradeScratch) Read(p []byte) (int, error) { return s.r.Read(p) }

func (s *upgradeScratch) Write(p []byte) (int, error) {
	s.out = append(s.out, p...)
	return len(p), nil
}

// selectProtocol is called with each token of Sec-WebSocket-Protocol. The
// Upgrader copies the selected one, so p need not be kept.
func (s *upgradeScratch) selectProtocol(p []byte) bool {
	// A token offered as a subprotocol (AuthSubprotocolPrefix) is never
	// selected: parseRequest takes it from the header.
	return string(p) == s.cfg.Subprotocol
}

// onHeader sees the headers the Upgrader does not handle itself; k is in
// canonical form. k and v are only valid during the call.
func (s *upgradeScratch) onHeader(k, v []byte) error {
	if string(k) == "Origin" && !originAllowed(s.cfg.AllowedOrigins, v) {
		if s.cfg.OriginRefusalAfterUpgrade {
			s.badOrigin = true
			return nil
		}
		return errOriginForbidden
	}
	return nil
}

func upgrade(req []byte, w io.Writer, cfg *HandshakeConfig, echo, head bool) (HandshakeResult, error) {
	s := scratchPool.Get().(*upgradeScratch)
	defer func() {
		s.cfg = nil
		s.badOrigin = false
		s.r.Reset(nil)
		s.out = s.out[:0]
		scratchPool.Put(s)
	}()
	s.cfg = cfg
	s.badOrigin = false
	s.r.Reset(req)
	s.out = s.out[:0]

	u := s.u // a copy: per-call settings must not leak into the pooled one
	// One bufio buffer big enough for the whole request, so that no header
	// line is split and copied (its pool has classes up to 64 KiB).
	u.ReadBufferSize = max(len(req), 256)
	if cfg.Subprotocol == "" && cfg.AuthSubprotocolPrefix == "" {
		u.Protocol = nil
	}
	hs, err := u.Upgrade(s)
	if err != nil {
		status, reason := http.StatusBadRequest, "malformed request"
		var rej *ws.ConnectionRejectedError
		if errors.As(err, &rej) && rej.StatusCode() != 0 {
			status, reason = rej.StatusCode(), rej.Error()
		}
		extra := ""
		switch status {
		case http.StatusUpgradeRequired:
			extra = headers426
		case http.StatusMethodNotAllowed:
			extra = "Allow: GET\r\n"
		}
		return answer(w, len(req), head, status, reason, extra)
	}
	res := HandshakeResult{
		Consumed:      len(req),
		Upgraded:      true,
		Echo:          echo,
		Subprotocol:   hs.Protocol,
		Status:        http.StatusSwitchingProtocols,
		OriginRefused: s.badOrigin,
	}
	if _, err := w.Write(s.out); err != nil {
		return res, fmt.Errorf("wsproto: write 101 answer: %w", err)
	}
	return res, nil
}

// answer writes a non-101 answer and builds the matching result.
func answer(w io.Writer, consumed int, head bool, status int, reason, extraHeaders string) (HandshakeResult, error) {
	res := HandshakeResult{
		Consumed:        consumed,
		CloseAfterWrite: true,
		Status:          status,
		Reason:          reason,
	}
	body := reason
	if status == http.StatusOK {
		body = "ok"
	}
	if err := writeHTTP(w, status, extraHeaders, body, true, head); err != nil {
		return res, fmt.Errorf("wsproto: write %d answer: %w", status, err)
	}
	return res, nil
}

// WriteHTTPError writes a complete HTTP/1.1 answer with status and a
// text/plain body, and "Connection: close", in one Write. The caller uses it
// before parsing anything, e.g. 503 "server full" when over its connection
// limit, and closes the connection after it.
func WriteHTTPError(w io.Writer, status int, body string) error {
	return writeHTTP(w, status, "", body, false, false)
}

// writeHTTP builds the answer in one buffer, so that it is one write (one
// syscall on a gnet conn). With newline, "\n" ends the body, for curl.
// With head (a HEAD request), Content-Length is sent but the body is not.
func writeHTTP(w io.Writer, status int, extraHeaders, body string, newline, head bool) error {
	text := http.StatusText(status)
	if text == "" {
		text = "Status " + strconv.Itoa(status)
	}
	bodyLen := len(body)
	if newline {
		bodyLen++
	}
	b := make([]byte, 0, 160+len(extraHeaders)+bodyLen)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nConnection: close\r\n"...)
	b = append(b, extraHeaders...)
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(bodyLen), 10)
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, body...)
		if newline {
			b = append(b, '\n')
		}
	}
	_, err := w.Write(b)
	return err
}
