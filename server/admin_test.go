package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

type adminClient struct {
	t     *testing.T
	base  string
	token string
}

func newAdminClient(t *testing.T, srv *Server, token string) *adminClient {
	return &adminClient{t: t, base: "http://" + srv.AdminAddr(), token: token}
}

func (a *adminClient) do(method, path, body string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	require.NoError(a.t, err)
	if body != "" {
		req.ContentLength = int64(len(body))
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	client := http.Client{Timeout: testTimeout}
	resp, err := client.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	return resp.StatusCode, b
}

func (a *adminClient) errorCode(body []byte) string {
	a.t.Helper()
	var e apiError
	require.NoError(a.t, json.Unmarshal(body, &e), "body: %s", body)
	return e.Error.Code
}

func TestAdminTokenAndHealth(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.AdminToken = "s3cret" })
	anon := newAdminClient(t, srv, "")
	status, _ := anon.do("GET", "/healthz", "")
	require.Equal(t, http.StatusOK, status)
	status, _ = anon.do("GET", "/readyz", "")
	require.Equal(t, http.StatusOK, status)
	for _, path := range []string{"/v1/rooms", "/metrics", "/debug/pprof/"} {
		status, body := anon.do("GET", path, "")
		require.Equal(t, http.StatusUnauthorized, status, path)
		require.Equal(t, "unauthorized", anon.errorCode(body))
	}
	wrong := newAdminClient(t, srv, "nope")
	status, _ = wrong.do("GET", "/v1/rooms", "")
	require.Equal(t, http.StatusUnauthorized, status)
	ok := newAdminClient(t, srv, "s3cret")
	for _, path := range []string{"/v1/rooms", "/metrics", "/debug/pprof/"} {
		status, _ := ok.do("GET", path, "")
		require.Equal(t, http.StatusOK, status, path)
	}
}

func TestAdminRoomsListDetailAndErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	admin := newAdminClient(t, srv, "")
	for _, id := range []string{"alpha", "bravo", "charlie"} {
		c := dial(t, srv)
		c.join(id, 1)
	}
	second := dial(t, srv)
	second.join("alpha", 1)

	status, body := admin.do("GET", "/v1/rooms?limit=2", "")
	require.Equal(t, http.StatusOK, status)
	var page struct {
		Total      int        `json:"total"`
		NextOffset *int       `json:"next_offset"`
		Rooms      []roomJSON `json:"rooms"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Equal(t, 3, page.Total)
	require.Len(t, page.Rooms, 2)
	require.Equal(t, "alpha", page.Rooms[0].ID)
	require.Equal(t, 2, page.Rooms[0].Players)
	require.Equal(t, 50, page.Rooms[0].TickRate)
	require.NotNil(t, page.NextOffset)
	status, body = admin.do("GET", fmt.Sprintf("/v1/rooms?offset=%d&limit=2", *page.NextOffset), "")
	require.Equal(t, http.StatusOK, status)
	page.NextOffset = nil
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Rooms, 1)
	require.Equal(t, "charlie", page.Rooms[0].ID)
	require.Nil(t, page.NextOffset)

	status, body = admin.do("GET", "/v1/rooms/alpha", "")
	require.Equal(t, http.StatusOK, status)
	var detail roomJSON
	require.NoError(t, json.Unmarshal(body, &detail))
	require.Len(t, detail.Members, 2)
	require.Equal(t, detail.Members[0].PlayerID, detail.Host)

	status, body = admin.do("GET", "/v1/rooms/nope", "")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "room_not_found", admin.errorCode(body))
	status, body = admin.do("GET", "/v1/rooms?limit=0", "")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_argument", admin.errorCode(body))
	status, body = admin.do("PATCH", "/v1/rooms/alpha", `{"tick_rat": 5}`)
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "bad_request", admin.errorCode(body))
	status, body = admin.do("PATCH", "/v1/rooms/alpha", `{"tick_rate": 100000}`)
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_argument", admin.errorCode(body))
	status, body = admin.do("POST", "/v1/rooms/alpha/players/x/kick", "")
	require.Equal(t, http.StatusBadRequest, status)
	require.Equal(t, "invalid_argument", admin.errorCode(body))
	status, body = admin.do("POST", "/v1/rooms/alpha/players/99/kick", "")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "player_not_found", admin.errorCode(body))
}

// frameSpacing measures the mean time between frames while sender keeps the
// room busy, so that every tick carries a frame.
func frameSpacing(t *testing.T, sender, receiver *wsClient, frames int) time.Duration {
	t.Helper()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				sender.sendPayload([]byte("x"), nil, false)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	receiver.frameWithDeliveries() // the first frame starts the clock
	start := time.Now()
	for i := 0; i < frames; i++ {
		receiver.frameWithDeliveries()
	}
	return time.Since(start) / time.Duration(frames)
}

func TestAdminPatchTickRateChangesFrameSpacing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.Room.DefaultTickRate = 10 })
	admin := newAdminClient(t, srv, "")
	a, b := dial(t, srv), dial(t, srv)
	a.join("tempo", 1)
	b.join("tempo", 1)
	slow := frameSpacing(t, a, b, 5)

	status, body := admin.do("PATCH", "/v1/rooms/tempo", `{"tick_rate": 60}`)
	require.Equal(t, http.StatusOK, status, string(body))
	var detail roomJSON
	require.NoError(t, json.Unmarshal(body, &detail))
	require.Equal(t, 60, detail.TickRate)
	b.readUntil(func(m *pb.ServerMessage) bool {
		for _, e := range m.GetFrame().GetEvents() {
			if e.GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_TICK_RATE_CHANGED {
				require.EqualValues(t, 60, e.GetTickRate())
				return true
			}
		}
		return false
	})
	fast := frameSpacing(t, a, b, 20)
	// 10 Hz to 60 Hz is a 6x change; a 2x margin keeps this robust on a
	// loaded machine while still failing if the change did not apply.
	require.Less(t, fast*2, slow, "frame spacing: %s at 10 Hz, %s at 60 Hz", slow, fast)
}

func TestAdminCloseRoomAndKick(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	admin := newAdminClient(t, srv, "")
	a, b := dial(t, srv), dial(t, srv)
	a.join("doomed", 1)
	idB := b.join("doomed", 1).GetPlayerId()

	status, _ := admin.do("POST", fmt.Sprintf("/v1/rooms/doomed/players/%d/kick", idB), `{"reason": "cheating"}`)
	require.Equal(t, http.StatusNoContent, status)
	left := b.readUntil(func(m *pb.ServerMessage) bool { return m.GetLeft() != nil }).GetLeft()
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_KICKED, left.GetReason())
	require.Equal(t, 4500, b.expectClose())

	status, _ = admin.do("DELETE", "/v1/rooms/doomed", `{"reason": "maintenance"}`)
	require.Equal(t, http.StatusNoContent, status)
	left = a.readUntil(func(m *pb.ServerMessage) bool { return m.GetLeft() != nil }).GetLeft()
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_ROOM_CLOSED, left.GetReason())
	require.Equal(t, "maintenance", left.GetMessage())
	// The connection stays usable: join again.
	a.join("after", 2)
	status, _ = admin.do("DELETE", "/v1/rooms/doomed", "")
	require.Equal(t, http.StatusNotFound, status)
}

func TestAdminMetricsParseAndMove(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	admin := newAdminClient(t, srv, "")
	value := func(name string) float64 {
		status, body := admin.do("GET", "/metrics", "")
		require.Equal(t, http.StatusOK, status)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
		require.NoError(t, err)
		mf, ok := families[name]
		require.True(t, ok, "metric %s missing", name)
		total := 0.0
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				total += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				total += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
		return total
	}
	a, b := dial(t, srv), dial(t, srv)
	a.join("metered", 1)
	b.join("metered", 1)
	for i := 0; i < 5; i++ {
		a.sendPayload([]byte("m"), nil, false)
	}
	got := 0
	for got < 5 {
		got += len(b.frameWithDeliveries().GetDeliveries())
	}
	// The worker publishes its counters at the end of its round, just
	// after handing the tick's frames over.
	require.Eventually(t, func() bool {
		return value("tickrelay_messages_in_total") == 5 && value("tickrelay_deliveries_total") == 5
	}, testTimeout, time.Millisecond)
	require.Equal(t, 1.0, value("tickrelay_rooms"))
	require.Equal(t, 2.0, value("tickrelay_players"))
	require.Equal(t, 2.0, value("tickrelay_connections_open"))
	require.Greater(t, value("tickrelay_ticks_total"), 0.0)
	require.Greater(t, value("tickrelay_tick_duration_seconds"), 0.0)
	require.Greater(t, value("tickrelay_frames_total"), 0.0)
	require.NoError(t, a.conn.Close())
	require.Eventually(t, func() bool { return value("tickrelay_connections_closed_total") >= 1 }, testTimeout, 20*time.Millisecond)
}

func TestAdminDrain(t *testing.T) {
	t.Parallel()
	cfg := Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", EventLoops: 2, Logger: quietLogger()}
	srv, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	admin := newAdminClient(t, srv, "")
	a, b := dial(t, srv), dial(t, srv)
	a.join("stay", 1)
	b.join("stay", 1)

	status, _ := admin.do("POST", "/v1/drain", `{"timeout": "20s"}`)
	require.Equal(t, http.StatusAccepted, status)
	status, _ = admin.do("GET", "/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, status)

	late := dial(t, srv)
	late.send(&pb.ClientMessage{RequestId: 3, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "stay"}}})
	require.Equal(t, pb.ErrorCode_ERROR_CODE_DRAINING, late.read().GetError().GetCode())

	// Rooms run on while draining.
	a.sendPayload([]byte("still here"), nil, false)
	require.Equal(t, "still here", string(b.frameWithDeliveries().GetDeliveries()[0].GetPayload()))

	// When the last player leaves, the relay closes what is left with 1001.
	require.NoError(t, a.conn.Close())
	require.NoError(t, b.conn.Close())
	require.Equal(t, 1001, late.expectClose())
	select {
	case <-srv.Done():
	case <-time.After(testTimeout):
		t.Fatal("the drained server did not stop")
	}
}

func TestOriginAllowListAndHandshakeFailureMetric(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) { c.AllowedOrigins = []string{"https://game.example"} })
	upgradeFrom := func(origin string) *rawConn {
		r := dialRaw(t, srv)
		r.write([]byte(strings.Replace(upgradeRequest, "\r\n\r\n", "\r\nOrigin: "+origin+"\r\n\r\n", 1)))
		r.expectUpgraded()
		return r
	}
	ok := upgradeFrom("https://GAME.example") // ASCII case does not matter
	ok.write(clientFrame(true, opPing, []byte("in"), false))
	op, _ := ok.readFrame()
	require.Equal(t, byte(opPong), op)

	// Another origin is upgraded and closed at once with 4503 and a reason
	// the page can read (a refused upgrade is only close 1006 to it).
	evil := upgradeFrom("https://evil.example")
	evil.write(clientFrame(true, opBinary, joinMessage(t, "stolen", 1), false)) // not read
	op, payload := evil.readFrame()
	require.Equal(t, byte(opClose), op)
	require.Equal(t, []byte{0x11, 0x97}, payload[:2], "close 4503")
	require.Equal(t, "origin not allowed", string(payload[2:]))
	evil.expectEOF()
	require.Zero(t, srv.Rooms().Stats().Rooms, "nothing from a refused origin is processed")

	admin := newAdminClient(t, srv, "")
	require.Eventually(t, func() bool {
		_, body := admin.do("GET", "/metrics", "")
		return strings.Contains(string(body), `tickrelay_handshake_failures_total{reason="origin_refused"} 1`)
	}, testTimeout, 20*time.Millisecond)
}
