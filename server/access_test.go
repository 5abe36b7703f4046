package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

const testSecret = "a test secret of at least thirty-two bytes"

// mint signs claims (sub, aud tickrelay and an exp an hour away unless
// given) with the test secret.
func mint(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"aud": "tickrelay", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	require.NoError(t, err)
	return token
}

func authServer(t *testing.T, mutate func(*Config)) *Server {
	return startServer(t, func(c *Config) {
		c.Auth = AuthConfig{Mode: AuthJWT, Secrets: []string{testSecret}}
		if mutate != nil {
			mutate(c)
		}
	})
}

func (c *wsClient) joinWith(roomID string, reqID uint32, create bool, token string, md map[string]string) *pb.ServerMessage {
	c.t.Helper()
	c.send(&pb.ClientMessage{RequestId: reqID, Body: &pb.ClientMessage_Join{Join: &pb.Join{
		RoomId: roomID, CreateIfMissing: create, AuthToken: token, PlayerMetadata: md,
	}}})
	return c.answer(reqID)
}

func TestAuthJoinRefusalsByReason(t *testing.T) {
	t.Parallel()
	srv := authServer(t, func(c *Config) { c.Auth.MaxFailures = 100 })
	c := dial(t, srv)
	other, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "aud": "tickrelay", "exp": time.Now().Add(time.Hour).Unix()}).
		SignedString([]byte("another secret of at least thirty-two bytes!!"))
	require.NoError(t, err)
	cases := []struct {
		name, room string
		create     bool
		token      string
		reason     string
	}{
		{"no token", "r1", true, "", "missing"},
		{"garbage", "r1", true, "not.a.jwt", "malformed"},
		{"bad signature", "r1", true, other, "bad_signature"},
		{"expired", "r1", true, mint(t, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(-time.Hour).Unix()}), "expired"},
		{"wrong audience", "r1", true, mint(t, jwt.MapClaims{"sub": "u", "aud": "someone-else"}), "wrong_audience"},
		{"room not allowed", "lobby", true, mint(t, jwt.MapClaims{"sub": "u", "room": "match-*", "create": true}), "room_not_allowed"},
		{"create not allowed", "match-1", true, mint(t, jwt.MapClaims{"sub": "u", "room": "match-*"}), "create_not_allowed"},
		{"server-made code needs no room claim", "", true, mint(t, jwt.MapClaims{"sub": "u", "room": "match-*", "create": true}), "room_not_allowed"},
	}
	for i, tc := range cases {
		m := c.joinWith(tc.room, uint32(i+1), tc.create, tc.token, nil)
		e := m.GetError()
		require.Equal(t, pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, e.GetCode(), "%s: %v", tc.name, m)
		require.Equal(t, tc.reason, e.GetReason(), tc.name)
	}
	admin := newAdminClient(t, srv, "")
	_, body := admin.do("GET", "/metrics", "")
	require.Contains(t, string(body), `tickrelay_auth_refused_total{reason="bad_signature"} 1`)
	require.Contains(t, string(body), `tickrelay_auth_refused_total{reason="missing"} 1`)

	// A good token: the user id is the room's to see, the backend's
	// metadata wins over the client's.
	ok := mint(t, jwt.MapClaims{"sub": "user-42", "room": "match-*", "create": true, "meta": map[string]string{"rank": "gold"}})
	j := c.joinWith("match-1", 50, true, ok, map[string]string{"rank": "forged", "skin": "red"}).GetJoined()
	require.NotNil(t, j)
	require.Equal(t, "user-42", j.GetMembers()[0].GetUserId())
	require.Equal(t, map[string]string{"rank": "gold", "skin": "red"}, j.GetMembers()[0].GetMetadata())
}

func TestAuthRepeatedFailuresClose(t *testing.T) {
	t.Parallel()
	srv := authServer(t, nil) // 3 failures close
	r := dialRaw(t, srv)
	r.upgrade()
	for i := range 2 {
		r.write(clientFrame(true, opBinary, joinMessage(t, "x", uint32(i+1)), false))
		require.Equal(t, pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, r.readServerMessage().GetError().GetCode())
	}
	r.write(clientFrame(true, opBinary, joinMessage(t, "x", 3), false))
	code, errMsg := r.expectClose()
	require.Equal(t, 4501, code)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_UNAUTHORIZED, errMsg.GetCode())
	r.expectEOF()
}

// A token once per connection: with Authenticate, or offered as a
// subprotocol (what a browser can do); a bad handshake token ends the
// connection at once.
func TestAuthPerConnection(t *testing.T) {
	t.Parallel()
	srv := authServer(t, nil)
	token := mint(t, jwt.MapClaims{"sub": "user-7", "create": true})

	a := dial(t, srv)
	a.send(&pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Authenticate{Authenticate: &pb.Authenticate{Token: token}}})
	authed := a.answer(1).GetAuthenticated()
	require.Equal(t, "user-7", authed.GetUserId())
	require.Positive(t, authed.GetExpiresAtMs())
	require.NotNil(t, a.joinWith("conn-auth", 2, true, "", nil).GetJoined())

	d := websocket.Dialer{HandshakeTimeout: testTimeout, Subprotocols: []string{Subprotocol, authSubprotocolPrefix + token}}
	conn, resp, err := d.Dial("ws://"+srv.Addr()+"/ws", nil)
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, Subprotocol, resp.Header.Get("Sec-WebSocket-Protocol"), "the token is never selected")
	b := &wsClient{t: t, conn: conn}
	j := b.joinWith("conn-auth", 3, false, "", nil).GetJoined()
	require.NotNil(t, j)
	require.Equal(t, "user-7", j.GetMembers()[1].GetUserId())
	require.Equal(t, "user-7", a.awaitEvent(pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, j.GetPlayerId()).GetUserId())

	d.Subprotocols = []string{Subprotocol, authSubprotocolPrefix + "bad.token.here"}
	conn2, _, err := d.Dial("ws://"+srv.Addr()+"/ws", nil)
	require.NoError(t, err)
	defer conn2.Close()
	c2 := &wsClient{t: t, conn: conn2}
	require.Equal(t, 4501, c2.expectClose())
}

// Keys rotate while players are connected: after a JWKS reload, tokens of
// the removed key are refused, the new key's are accepted, and the players
// already in rooms go on.
func TestAuthKeyRotationWhilePlayersAreConnected(t *testing.T) {
	t.Parallel()
	pubA, privA, _ := ed25519.GenerateKey(rand.Reader)
	pubB, privB, _ := ed25519.GenerateKey(rand.Reader)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS := func(kid string, pub ed25519.PublicKey) {
		doc, err := json.Marshal(map[string]any{"keys": []any{map[string]string{
			"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": base64.RawURLEncoding.EncodeToString(pub),
		}}})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(jwks, doc, 0o600))
	}
	sign := func(kid string, key ed25519.PrivateKey, sub string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": sub, "aud": "tickrelay", "create": true, "exp": time.Now().Add(time.Hour).Unix()})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		require.NoError(t, err)
		return s
	}
	writeJWKS("a", pubA)
	srv := startServer(t, func(c *Config) { c.Auth = AuthConfig{Mode: AuthJWT, JWKSFile: jwks} })
	p1, p2 := dial(t, srv), dial(t, srv)
	require.NotNil(t, p1.joinWith("rot", 1, true, sign("a", privA, "p1"), nil).GetJoined())
	require.NotNil(t, p2.joinWith("rot", 1, true, sign("a", privA, "p2"), nil).GetJoined())

	writeJWKS("b", pubB)
	require.NoError(t, srv.Reload(srv.cfg))
	late := dial(t, srv)
	e := late.joinWith("rot", 1, false, sign("a", privA, "late"), nil).GetError()
	require.Equal(t, "unknown_key", e.GetReason())
	require.NotNil(t, late.joinWith("rot", 2, false, sign("b", privB, "late"), nil).GetJoined())

	p1.sendPayload([]byte("still here"), nil, false)
	require.Equal(t, "still here", string(p2.frameWithDeliveries().GetDeliveries()[0].GetPayload()))

	// A bad file on reload is refused and the keys stay.
	require.NoError(t, os.WriteFile(jwks, []byte("{not json"), 0o600))
	require.Error(t, srv.Reload(srv.cfg))
	again := dial(t, srv)
	require.NotNil(t, again.joinWith("rot", 1, false, sign("b", privB, "again"), nil).GetJoined())
}

// The client's address: X-Forwarded-For counts only from a trusted proxy.
func TestClientAddressBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	memberAddr := func(srv *Server, room string) string {
		d, err := srv.Rooms().Room(t.Context(), room)
		require.NoError(t, err)
		return d.Members[0].Address.String()
	}
	join := func(srv *Server, room, xff string) {
		h := http.Header{}
		h.Set("X-Forwarded-For", xff)
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr()+"/ws", h)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		c := &wsClient{t: t, conn: conn}
		require.NotNil(t, c.join(room, 1))
	}
	untrusted := startServer(t, nil)
	join(untrusted, "forged", "203.0.113.5")
	require.Equal(t, "127.0.0.1", memberAddr(untrusted, "forged"), "a forged header from an untrusted peer is ignored")

	trusted := startServer(t, func(c *Config) { c.TrustedProxies = []string{"127.0.0.1/32"} })
	join(trusted, "proxied", "198.51.100.1, 203.0.113.5")
	require.Equal(t, "203.0.113.5", memberAddr(trusted, "proxied"), "the rightmost hop that is not a trusted proxy")
	status, body := newAdminClient(t, trusted, "").do("GET", "/v1/rooms/proxied", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), `"203.0.113.5"`)
}

// Per-address limits, on the address behind a trusted proxy: each address
// has its own, a shared one is held to them, failed joins lock it out.
func TestAddressLimits(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.TrustedProxies = []string{"127.0.0.1/32"}
		c.AddressExempt = []string{"none"}
		c.AddressLimits.MaxConnsPerIP = 2
		c.AddressLimits.FailedJoinsPerMinute = 3
		c.AddressLimits.Lockout = time.Minute
	})
	from := func(addr string) *wsClient {
		h := http.Header{}
		h.Set("X-Forwarded-For", addr)
		conn, _, err := websocket.DefaultDialer.Dial("ws://"+srv.Addr()+"/ws", h)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return &wsClient{t: t, conn: conn}
	}
	a1, a2 := from("203.0.113.1"), from("203.0.113.1")
	require.Equal(t, 4005, from("203.0.113.1").expectClose(), "a third connection from one address")
	b := from("203.0.113.2") // another address: its own limit
	require.NotNil(t, b.join("mine", 1))

	// Guessing room codes: the failure past the budget of 3 a minute
	// locks the address out.
	for i := range 4 {
		e := a1.joinWith("GUESS"+string(rune('A'+i)), uint32(i+1), false, "", nil).GetError()
		require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, e.GetCode())
	}
	e := a2.joinWith("mine", 9, false, "", nil).GetError()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, e.GetCode(), "locked out, even for an existing room")
	require.Equal(t, "locked_out", e.GetReason())
	require.Positive(t, e.GetRetryAfterMs())
	require.NotNil(t, from("203.0.113.3").join("mine", 1), "other addresses are not")
}

func TestConcealRoomsOverTheWire(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.Room.ConcealRooms = true })
	a := dial(t, srv)
	a.send(&pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "full", CreateIfMissing: true, Options: &pb.RoomOptions{MaxPlayers: 1}}}})
	require.NotNil(t, a.answer(1).GetJoined())
	b := dial(t, srv)
	full := b.joinWith("full", 2, false, "", nil).GetError()
	missing := b.joinWith("none", 3, false, "", nil).GetError()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND, full.GetCode())
	require.Equal(t, missing.GetCode(), full.GetCode())
	require.Equal(t, strings.Replace(full.GetMessage(), "full", "none", 1), missing.GetMessage(), "no difference to tell them apart")
}

func TestAdminTokenFileAndPprofBehindIt(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(file, []byte("s3cret-token\n"), 0o600))
	srv := startServer(t, func(c *Config) { c.AdminTokenFile = file })
	status, _ := newAdminClient(t, srv, "").do("GET", "/debug/pprof/", "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = newAdminClient(t, srv, "s3cret-token").do("GET", "/debug/pprof/", "")
	require.Equal(t, http.StatusOK, status)
}
