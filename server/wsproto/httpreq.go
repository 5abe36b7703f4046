package wsproto

import (
	"bytes"
	"net/http"
)

// The request head is parsed here just enough to route it and to answer
// plain HTTP. gobwas's Upgrader cannot do this part: it rejects HTTP/1.0 and
// non-GET requests before any callback (load balancer health checks use
// both), answers a missing Upgrade header with 400 where a plain request to
// the WebSocket path deserves 426, and splits lines on a bare LF where this
// parser rejects them, so both must agree on where lines end.

// request is what routing needs from a request head. path points into the
// caller's input.
type request struct {
	path      []byte
	query     []byte // after "?", without the fragment; points into the input
	get, head bool
	// Forwarding headers, pointing into the input (every X-Forwarded-For
	// line, in order), recorded only with forwarded.
	xff     [][]byte
	xRealIP []byte
	// authToken: an offered subprotocol with the auth prefix, recorded
	// only when a prefix is given; points into the input.
	authToken []byte
	// wsUpgrade: an Upgrade header lists "websocket". Without one the
	// request is plain HTTP; with one it goes to the Upgrader, which checks
	// the rest of the handshake.
	wsUpgrade bool
}

// maxMethodLen bounds a method while the request line is incomplete, so that
// a line of letters is rejected without waiting for the header limit.
const maxMethodLen = 32

// parseRequest parses a request head b, which ends with "\r\n\r\n". status
// is 0 when b is well formed, else the HTTP status to answer with.
func parseRequest(b []byte, forwarded bool, authPrefix string) (req request, status int, reason string) {
	lineEnd := bytes.Index(b, crlf)
	method, target, status, reason := parseRequestLine(b[:lineEnd])
	if status != 0 {
		return req, status, reason
	}
	req.get = string(method) == http.MethodGet
	req.head = string(method) == http.MethodHead
	req.path = requestPath(target)
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		req.query = target[q+1:]
		if h := bytes.IndexByte(req.query, '#'); h >= 0 {
			req.query = req.query[:h]
		}
	}

	// Header lines, each with its CRLF; the final blank line is left out.
	hdrs := b[lineEnd+2 : len(b)-2]
	for len(hdrs) > 0 {
		i := bytes.Index(hdrs, crlf)
		line := hdrs[:i]
		hdrs = hdrs[i+2:]
		if len(line) == 0 {
			return req, http.StatusBadRequest, "malformed header line"
		}
		if line[0] == ' ' || line[0] == '\t' {
			// RFC 7230 3.2.4: a server must reject obsolete line folding
			// or unfold it; rejecting keeps both parsers in step.
			return req, http.StatusBadRequest, "obsolete header line folding"
		}
		if bytes.IndexByte(line, '\n') >= 0 || bytes.IndexByte(line, '\r') >= 0 || bytes.IndexByte(line, 0) >= 0 {
			return req, http.StatusBadRequest, "control character in header"
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			return req, http.StatusBadRequest, "malformed header line"
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case asciiEqualFold("Upgrade", name) && hasToken(value, "websocket"):
			req.wsUpgrade = true
		case forwarded && asciiEqualFold("X-Forwarded-For", name):
			req.xff = append(req.xff, value)
		case forwarded && asciiEqualFold("X-Real-IP", name):
			req.xRealIP = value
		case authPrefix != "" && asciiEqualFold("Sec-WebSocket-Protocol", name):
			for _, item := range bytes.Split(value, []byte(",")) {
				item = bytes.Trim(item, " \t")
				if len(item) > len(authPrefix) && string(item[:len(authPrefix)]) == authPrefix {
					req.authToken = item[len(authPrefix):]
				}
			}
		}
	}
	return req, 0, ""
}

// parseRequestLine parses "METHOD SP request-target SP HTTP/1.x".
func parseRequestLine(line []byte) (method, target []byte, status int, reason string) {
	const bad = "malformed request line"
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || sp > maxMethodLen || !isToken(line[:sp]) {
		return nil, nil, http.StatusBadRequest, bad
	}
	method, line = line[:sp], line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return nil, nil, http.StatusBadRequest, bad
	}
	target, version := line[:sp], line[sp+1:]
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, nil, http.StatusBadRequest, bad
		}
	}
	if len(version) != 8 || string(version[:5]) != "HTTP/" || !isDigit(version[5]) ||
		version[6] != '.' || !isDigit(version[7]) {
		return nil, nil, http.StatusBadRequest, bad
	}
	if version[5] != '1' {
		return nil, nil, http.StatusHTTPVersionNotSupported, "HTTP version not supported"
	}
	return method, target, 0, ""
}

// checkRequestPrefix looks at an incomplete request head and returns the
// status to answer with when it can already tell that no valid request will
// come of it: a method that is not a token, a malformed request line, or a
// bare LF. It checks in the order the bytes arrive and gives the status
// parseRequest would give the completed head, so that the answer does not
// depend on how the request was split into reads. A prefix of a valid
// request is never rejected. status 0: keep waiting.
func checkRequestPrefix(in []byte) (status int, reason string) {
	const bad = "malformed request line"
	for i, c := range in {
		if c == ' ' {
			if i == 0 {
				return http.StatusBadRequest, bad
			}
			break
		}
		if !tchar[c] || i >= maxMethodLen {
			return http.StatusBadRequest, bad
		}
	}
	lf := bytes.IndexByte(in, '\n')
	if lf < 0 {
		return 0, ""
	}
	if lf == 0 || in[lf-1] != '\r' {
		return http.StatusBadRequest, bad
	}
	if _, _, status, reason := parseRequestLine(in[:lf-1]); status != 0 {
		return status, reason
	}
	for i, c := range in[lf+1:] {
		if c == '\n' && (i == 0 || in[lf+i] != '\r') {
			return http.StatusBadRequest, "bare LF in header"
		}
	}
	return 0, ""
}

var slash = []byte("/")

// requestPath returns the path of a request target, without query or
// fragment. The absolute form (http://host/path, RFC 7230 5.3.2) is what a
// client sends to a proxy; accepting it costs little.
func requestPath(target []byte) []byte {
	if target[0] != '/' {
		i := bytes.Index(target, []byte("://"))
		if i < 0 {
			return target // "*" or garbage: matches no route, so 404
		}
		rest := target[i+3:]
		j := bytes.IndexByte(rest, '/')
		if j < 0 {
			return slash
		}
		target = rest[j:]
	}
	if q := bytes.IndexAny(target, "?#"); q >= 0 {
		target = target[:q]
	}
	return target
}

// originAllowed reports whether Origin value v may upgrade.
func originAllowed(allowed []string, v []byte) bool {
	if len(allowed) == 0 {
		return true
	}
	for _, a := range allowed {
		// Browsers send the origin in lower case, but scheme and host are
		// case-insensitive, so a configured "https://Game.example" must
		// still match.
		if a == "*" || asciiEqualFold(a, v) {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated list v contains token tok,
// ignoring ASCII case and optional whitespace.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if asciiEqualFold(tok, bytes.Trim(item, " \t")) {
			return true
		}
	}
	return false
}

func asciiEqualFold(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := range len(s) {
		if lower(s[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// tchar marks the token characters of RFC 7230 3.2.6.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
