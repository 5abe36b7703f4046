package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tickrelay/tickrelay/cluster"
	"github.com/tickrelay/tickrelay/room"
)

// admin is the operators' HTTP API, on its own listener so that it can stay
// private (loopback by default) while the relay port faces the internet.
type admin struct {
	srv      *Server
	http     *http.Server
	listener net.Listener
	registry *prometheus.Registry
}

// adminRequestTimeout bounds how long a request may wait for room workers.
const adminRequestTimeout = 5 * time.Second

func startAdmin(s *Server) (*admin, error) {
	ln, err := net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", s.cfg.AdminListen, err)
	}
	a := &admin{srv: s, listener: ln, registry: prometheus.NewRegistry()}
	a.registry.MustRegister(s.metrics, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.health)
	mux.HandleFunc("GET /readyz", a.ready)
	private := http.NewServeMux()
	private.HandleFunc("GET /v1/rooms", a.listRooms)
	private.HandleFunc("GET /v1/rooms/{id}", a.getRoom)
	private.HandleFunc("PATCH /v1/rooms/{id}", a.patchRoom)
	private.HandleFunc("DELETE /v1/rooms/{id}", a.deleteRoom)
	private.HandleFunc("POST /v1/rooms/{id}/players/{player}/kick", a.kick)
	private.HandleFunc("POST /v1/drain", a.drain)
	private.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	private.HandleFunc("/debug/pprof/", pprof.Index)
	private.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	private.HandleFunc("/debug/pprof/profile", pprof.Profile)
	private.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	private.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", a.authorize(private))

	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin server", "err", err)
		}
	}()
	return a, nil
}

func (a *admin) addr() string { return a.listener.Addr().String() }

func (a *admin) close(ctx context.Context) {
	_ = a.http.Shutdown(ctx)
}

// authorize requires the bearer token when one is configured.
func (a *admin) authorize(next http.Handler) http.Handler {
	token := a.srv.cfg.AdminToken
	if token == "" {
		return next
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tickrelay"`)
			writeJSONError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// health answers 200 while the relay can serve; 503 once a fatal error (its
// acceptor failed) stopped it, so a supervisor restarts the process.
func (a *admin) health(w http.ResponseWriter, _ *http.Request) {
	if err := a.srv.Err(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("failed: " + err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (a *admin) ready(w http.ResponseWriter, _ *http.Request) {
	if a.srv.Draining() || !a.srv.Healthy() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSONError(w http.ResponseWriter, status int, code, message string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, message
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// roomError answers an error from the room manager.
func roomError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, room.ErrRoomNotFound):
		writeJSONError(w, http.StatusNotFound, "room_not_found", err.Error())
	case errors.Is(err, room.ErrPlayerNotFound):
		writeJSONError(w, http.StatusNotFound, "player_not_found", err.Error())
	case errors.Is(err, room.ErrInvalidArgument):
		writeJSONError(w, http.StatusBadRequest, "invalid_argument", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		writeJSONError(w, http.StatusServiceUnavailable, "timeout", "room workers did not answer in time")
	default:
		writeJSONError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

// roomJSON is the admin API's view of a room.
type roomJSON struct {
	ID             string            `json:"id"`
	Players        int               `json:"players"`
	MaxPlayers     int               `json:"max_players"`
	TickRate       int               `json:"tick_rate"`
	Immediate      bool              `json:"immediate"`
	Lockstep       bool              `json:"lockstep,omitempty"`
	Tick           uint64            `json:"tick"`
	CreatedAt      time.Time         `json:"created_at"`
	MessagesIn     uint64            `json:"messages_in"`
	Deliveries     uint64            `json:"deliveries"`
	MessagesPerSec float64           `json:"messages_per_sec"`
	LastLatenessMs float64           `json:"last_tick_lateness_ms"`
	MaxLatenessMs  float64           `json:"max_tick_lateness_ms"`
	TickOverruns   uint64            `json:"tick_overruns"`
	Metadata       map[string]string `json:"metadata,omitempty"`
	Host           uint32            `json:"host,omitempty"`
	Node           string            `json:"node,omitempty"` // the owner, in a cluster
	Members        []memberJSON      `json:"members,omitempty"`
}

type memberJSON struct {
	PlayerID     uint32            `json:"player_id"`
	UserID       string            `json:"user_id,omitempty"`
	Address      string            `json:"address,omitempty"`
	JoinedAt     time.Time         `json:"joined_at"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	BacklogBytes int               `json:"backlog_bytes"`
}

func toRoomJSON(info room.RoomInfo, now time.Time) roomJSON {
	r := roomJSON{
		ID: info.ID, Players: info.Players, MaxPlayers: info.MaxPlayers, TickRate: info.TickRate,
		Immediate: info.Immediate, Lockstep: info.Lockstep, Tick: info.Tick, CreatedAt: info.CreatedAt,
		MessagesIn: info.MessagesIn, Deliveries: info.Deliveries,
		LastLatenessMs: float64(info.LastLateness) / 1e6, MaxLatenessMs: float64(info.MaxLateness) / 1e6,
		TickOverruns: info.Overruns, Metadata: info.Metadata,
	}
	// Averaged over the room's life: cheap, and what an operator scanning a
	// list needs to spot a hot room; Prometheus has the rates.
	if age := now.Sub(info.CreatedAt).Seconds(); age > 0 {
		r.MessagesPerSec = float64(info.MessagesIn) / age
	}
	return r
}

func (a *admin) listRooms(w http.ResponseWriter, r *http.Request) {
	offset, err1 := queryInt(r, "offset", 0)
	limit, err2 := queryInt(r, "limit", 100)
	if err := errors.Join(err1, err2); err != nil || limit < 1 || limit > 1000 || offset < 0 {
		writeJSONError(w, http.StatusBadRequest, "invalid_argument", "offset must be >= 0 and limit in [1, 1000]")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
	defer cancel()
	rooms, err := a.listing(ctx)
	if err != nil {
		roomError(w, err)
		return
	}
	now := time.Now()
	page := struct {
		Total      int        `json:"total"`
		Offset     int        `json:"offset"`
		NextOffset *int       `json:"next_offset,omitempty"`
		Rooms      []roomJSON `json:"rooms"`
	}{Total: len(rooms), Offset: offset, Rooms: []roomJSON{}}
	for i := offset; i < len(rooms) && i < offset+limit; i++ {
		rj := toRoomJSON(rooms[i].RoomInfo, now)
		rj.Node = rooms[i].Node
		page.Rooms = append(page.Rooms, rj)
	}
	if next := offset + limit; next < len(rooms) {
		page.NextOffset = &next
	}
	writeJSON(w, http.StatusOK, page)
}

func queryInt(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return n, nil
}

func (a *admin) getRoom(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
	defer cancel()
	d, err := a.rooms().Room(ctx, r.PathValue("id"))
	if err != nil {
		roomError(w, err)
		return
	}
	out := toRoomJSON(d.RoomInfo, time.Now())
	out.Host = d.Host
	if a.srv.cluster != nil {
		out.Node = a.srv.cluster.Owner(d.ID)
	}
	for _, m := range d.Members {
		mj := memberJSON{PlayerID: m.PlayerID, UserID: m.UserID, JoinedAt: m.JoinedAt, Metadata: m.Metadata, BacklogBytes: m.Backlog}
		if m.Address.IsValid() {
			mj.Address = m.Address.String()
		}
		out.Members = append(out.Members, mj)
	}
	writeJSON(w, http.StatusOK, out)
}

// decodeBody reads a small JSON body, refusing unknown fields so that a typo
// is an error rather than a silent no-op.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.ContentLength == 0 {
		return true
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSONError(w, http.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func (a *admin) patchRoom(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TickRate   *int `json:"tick_rate"`
		MaxPlayers *int `json:"max_players"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.TickRate == nil && body.MaxPlayers == nil {
		writeJSONError(w, http.StatusBadRequest, "invalid_argument", "nothing to change: give tick_rate and/or max_players")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
	defer cancel()
	id := r.PathValue("id")
	if err := a.rooms().UpdateRoom(ctx, id, room.RoomUpdate{TickRate: body.TickRate, MaxPlayers: body.MaxPlayers}); err != nil {
		roomError(w, err)
		return
	}
	a.getRoom(w, r)
}

type reasonBody struct {
	Reason string `json:"reason"`
}

func (a *admin) deleteRoom(w http.ResponseWriter, r *http.Request) {
	var body reasonBody
	if !decodeBody(w, r, &body) {
		return
	}
	if body.Reason == "" {
		body.Reason = r.URL.Query().Get("reason")
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
	defer cancel()
	if err := a.rooms().CloseRoom(ctx, r.PathValue("id"), body.Reason); err != nil {
		roomError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *admin) kick(w http.ResponseWriter, r *http.Request) {
	player, err := strconv.ParseUint(r.PathValue("player"), 10, 32)
	if err != nil || player == 0 {
		writeJSONError(w, http.StatusBadRequest, "invalid_argument", "player must be a player id (a positive integer)")
		return
	}
	var body reasonBody
	if !decodeBody(w, r, &body) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminRequestTimeout)
	defer cancel()
	if err := a.rooms().Kick(ctx, r.PathValue("id"), uint32(player), body.Reason); err != nil {
		roomError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *admin) drain(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Timeout string `json:"timeout"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	timeout := time.Duration(a.srv.drainTimeout.Load())
	if body.Timeout != "" {
		d, err := time.ParseDuration(strings.TrimSpace(body.Timeout))
		if err != nil || d <= 0 {
			writeJSONError(w, http.StatusBadRequest, "invalid_argument", "timeout must be a positive duration such as 30s")
			return
		}
		timeout = d
	}
	a.srv.Drain(timeout)
	writeJSON(w, http.StatusAccepted, map[string]any{"draining": true, "timeout": timeout.String()})
}

// roomOps are the admin operations on one room: the room.Manager's on a
// single node, the cluster's (which run on the room's owner) in a cluster.
type roomOps interface {
	Room(ctx context.Context, id string) (room.RoomDetail, error)
	UpdateRoom(ctx context.Context, id string, u room.RoomUpdate) error
	CloseRoom(ctx context.Context, id, reason string) error
	Kick(ctx context.Context, id string, player uint32, reason string) error
}

func (a *admin) rooms() roomOps {
	if a.srv.cluster != nil {
		return a.srv.cluster
	}
	return a.srv.rooms
}

// listing lists the rooms: this node's, or the whole cluster's.
func (a *admin) listing(ctx context.Context) ([]cluster.RoomOwner, error) {
	if a.srv.cluster != nil {
		return a.srv.cluster.Rooms(ctx)
	}
	rooms, err := a.srv.rooms.Rooms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]cluster.RoomOwner, len(rooms))
	for i, r := range rooms {
		out[i] = cluster.RoomOwner{RoomInfo: r}
	}
	return out, nil
}
