package server

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickrelay/tickrelay/proto/closes"
)

// metrics exposes the server's and the rooms' counters to Prometheus. The
// hot path never touches Prometheus: counters live where they are cheapest
// (per room worker, or on rare server events) and are read at scrape time by
// Collect. Only the tick histograms are observed directly, once per room
// tick, which is per tick rather than per message.
type metrics struct {
	srv          *Server
	tickDuration prometheus.Histogram
	tickLateness prometheus.Histogram
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		srv: s,
		tickDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickrelay_tick_duration_seconds",
			Help:    "Time to build and hand over one room tick's frames.",
			Buckets: []float64{5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3},
		}),
		tickLateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tickrelay_tick_lateness_seconds",
			Help:    "How long after its deadline a room tick ran.",
			Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3},
		}),
	}
}

// ObserveTick implements room.Observer.
func (m *metrics) ObserveTick(lateness, duration time.Duration) {
	m.tickLateness.Observe(lateness.Seconds())
	m.tickDuration.Observe(duration.Seconds())
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descConnsOpen      = desc("tickrelay_connections_open", "Open TCP connections (upgraded or not).")
	descConnsOpened    = desc("tickrelay_connections_opened_total", "TCP connections accepted.")
	descConnsClosed    = desc("tickrelay_connections_closed_total", "TCP connections closed.")
	descUpgrades       = desc("tickrelay_handshakes_total", "Successful WebSocket upgrades.")
	descHandshakeFails = desc("tickrelay_handshake_failures_total", "Connections closed before or at the upgrade, by reason.", "reason")
	descPlainHTTP      = desc("tickrelay_http_requests_total", "Plain HTTP requests answered (health checks, 426, 404, 403...).")
	descCloses         = desc("tickrelay_closes_total", "WebSocket closes by status code and by who started them.", "code", "initiator")
	descSlowConsumers  = desc("tickrelay_slow_consumer_disconnects_total", "Connections closed because they could not keep up.")
	descIdleTimeouts   = desc("tickrelay_idle_timeouts_total", "Connections closed for silence past the idle timeout.")
	descBadMessages    = desc("tickrelay_bad_messages_total", "Undecodable client envelopes.")
	descProtocolErrors = desc("tickrelay_protocol_errors_total", "Connections failed for RFC 6455 violations or size limits.")
	descOutbound       = desc("tickrelay_outbound_bytes_waiting", "Bytes queued for connections and not yet written, summed.")
	descDraining       = desc("tickrelay_draining", "1 while the relay drains (no new joins).")
	descCauses         = desc("tickrelay_server_closes_total", "Connections the relay closed, by cause (proto/closes).", "cause")
	descRateLimited    = desc("tickrelay_rate_limited_messages_total", "Client messages dropped by the per-connection rate limits.")
	descSlowMessages   = desc("tickrelay_message_read_timeouts_total", "Connections closed because a message was not completed within message-read-timeout.")
	descRefusedNoFD    = desc("tickrelay_accept_refused_no_descriptor_total", "Connections refused because the process was out of file descriptors.")
	descAuthOK         = desc("tickrelay_auth_accepted_total", "Auth tokens accepted.")
	descAuthRefused    = desc("tickrelay_auth_refused_total", "Auth tokens refused, by reason (package auth's reasons).", "reason")
	descAddrTracked    = desc("tickrelay_addresses_tracked", "Client addresses the per-address limits track now.")
	descAddrUntracked  = desc("tickrelay_addresses_untracked_total", "New addresses not limited because the table was full (ip-max-tracked).")
	descAddrRefused    = desc("tickrelay_address_refusals_total", "Refusals by the per-address limits, by kind.", "kind")
	descAddrLockouts   = desc("tickrelay_address_lockouts_total", "Addresses locked out of joining for failed joins.")
	descResumes        = desc("tickrelay_resumes_total", "Resume requests by result: recovered, or why not.", "result")
	descReplayed       = desc("tickrelay_replayed_frames_total", "Frames replayed after resumes.")
	descSeatsAway      = desc("tickrelay_seats_away", "Players whose connection dropped and whose seat is kept for a resume.")
	descSeatsExpired   = desc("tickrelay_seats_expired_total", "Seats released because their grace ran out.")
	descReplayBytes    = desc("tickrelay_replay_bytes", "Bytes of frames kept for replay (until acknowledged).")
	descDupInputs      = desc("tickrelay_duplicate_inputs_total", "Sends and Inputs dropped as re-sends (their seq not above the seat's last accepted).")

	descLsSets      = desc("tickrelay_lockstep_input_sets_total", "InputSets closed by lockstep rooms (one per room and tick).")
	descLsDelivered = desc("tickrelay_lockstep_input_sets_delivered_total", "InputSets put into frames (one per member and tick).")
	descLsLate      = desc("tickrelay_lockstep_late_inputs_total", "Lockstep Inputs refused because their tick had closed (INPUT_TOO_LATE).")
	descLsReplaced  = desc("tickrelay_lockstep_replaced_inputs_total", "Inputs lockstep rooms filled in for present players without one (REPEATED or REPLACED_BY_SERVER).")
	descLsDesyncs   = desc("tickrelay_lockstep_desyncs_total", "DESYNC reports: ticks whose checksums disagreed.")
	descLsSnapshots = desc("tickrelay_lockstep_snapshots_total", "Snapshots lockstep rooms took from members for late joiners.")

	descRooms        = desc("tickrelay_rooms", "Open rooms.")
	descPlayers      = desc("tickrelay_players", "Players in rooms.")
	descMessagesIn   = desc("tickrelay_messages_in_total", "Relayed messages accepted from clients.")
	descDropped      = desc("tickrelay_messages_dropped_total", "Messages accepted but delivered to nobody, by reason: inbox_full, over_inbox_share, over_tick_budget, superseded (latest-only, before their tick); once per message.", "reason")
	descDeliveries   = desc("tickrelay_deliveries_total", "Message copies put into frames (one per recipient).")
	descFrames       = desc("tickrelay_frames_total", "Frames (and answers) handed to connections.")
	descFrameBytes   = desc("tickrelay_frame_bytes_total", "Bytes of those frames, without WebSocket headers.")
	descTicks        = desc("tickrelay_ticks_total", "Room ticks run.")
	descTickOverruns = desc("tickrelay_tick_overruns_total", "Room ticks that ran more than one period late (tick numbers skipped).")
	descOverBudget   = desc("tickrelay_over_tick_budget_messages_total", "Messages dropped for passing their sender's budget of the tick.")
	descOverShare    = desc("tickrelay_over_inbox_share_messages_total", "Messages refused because their connection had inbox-per-connection messages queued.")
	descSuperseded   = desc("tickrelay_backlog_superseded_total", "Latest-only copies dropped from congested players' backlogs by a newer update (per recipient).")
)

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descConnsOpen, descConnsOpened, descConnsClosed, descUpgrades, descHandshakeFails, descPlainHTTP,
		descCloses, descSlowConsumers, descIdleTimeouts, descBadMessages, descProtocolErrors, descOutbound,
		descDraining, descRooms, descPlayers, descMessagesIn, descDropped, descDeliveries, descFrames,
		descFrameBytes, descTicks, descTickOverruns, descCauses, descRateLimited, descSlowMessages,
		descRefusedNoFD, descOverBudget, descOverShare, descSuperseded, descAuthOK, descAuthRefused,
		descAddrTracked, descAddrUntracked, descAddrRefused, descAddrLockouts, descResumes, descReplayed,
		descSeatsAway, descSeatsExpired, descReplayBytes, descDupInputs,
		descLsSets, descLsDelivered, descLsLate, descLsReplaced, descLsDesyncs, descLsSnapshots,
	} {
		ch <- d
	}
	describeCluster(ch)
	m.tickDuration.Describe(ch)
	m.tickLateness.Describe(ch)
}

// Collect implements prometheus.Collector: it reads every counter now.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.srv
	st := s.stats
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descConnsOpen, float64(s.openConns.Load()))
	counter(descConnsOpened, st.connsOpened.Load())
	counter(descConnsClosed, st.connsClosed.Load())
	counter(descUpgrades, st.upgrades.Load())
	counter(descPlainHTTP, st.plainHTTP.Load())
	counter(descSlowConsumers, st.slowConsumers.Load())
	counter(descIdleTimeouts, st.idleTimeouts.Load())
	counter(descBadMessages, st.badMessages.Load())
	counter(descProtocolErrors, st.protocolErrors.Load())
	counter(descRateLimited, st.rateLimited.Load())
	counter(descSlowMessages, st.slowMessages.Load())
	if s.acceptor != nil {
		counter(descRefusedNoFD, s.acceptor.refusedNoFD.Load())
	}
	acc := s.access
	acc.mu.Lock()
	counter(descAuthOK, acc.granted)
	for reason, n := range acc.refused {
		counter(descAuthRefused, n, string(reason))
	}
	acc.mu.Unlock()
	ls := acc.limits.Stats()
	gauge(descAddrTracked, float64(ls.Tracked))
	counter(descAddrUntracked, ls.Untracked)
	counter(descAddrRefused, ls.RefusedConns, "connections")
	counter(descAddrRefused, ls.RefusedHandshakes, "handshakes")
	counter(descAddrRefused, ls.RefusedJoins, "joins")
	counter(descAddrRefused, ls.RefusedLockedOut, "locked_out")
	counter(descAddrLockouts, ls.Lockouts)
	for _, cause := range closes.All() {
		if n := st.closesByCause[cause].Load(); n > 0 {
			counter(descCauses, n, cause.String())
		}
	}

	st.mu.Lock()
	for reason, n := range st.handshakeFails {
		counter(descHandshakeFails, n, reason)
	}
	for k, n := range st.closesByCode {
		initiator := "server"
		if k.ByClient {
			initiator = "client"
		}
		counter(descCloses, n, strconv.Itoa(int(k.Code)), initiator)
	}
	st.mu.Unlock()

	var waiting int64
	s.conns.each(func(c *conn) { waiting += c.out.total() })
	gauge(descOutbound, float64(waiting))
	draining := 0.0
	if s.Draining() {
		draining = 1
	}
	gauge(descDraining, draining)

	if s.rooms != nil {
		rs := s.rooms.Stats()
		gauge(descRooms, float64(rs.Rooms))
		gauge(descPlayers, float64(rs.Players))
		counter(descMessagesIn, rs.MessagesIn)
		counter(descDropped, rs.InboxFull, "inbox_full")
		counter(descDropped, rs.OverInboxShare, "over_inbox_share")
		counter(descDropped, rs.OverBudget, "over_tick_budget")
		counter(descDropped, rs.Superseded, "superseded")
		counter(descDeliveries, rs.Deliveries)
		counter(descFrames, rs.Frames)
		counter(descFrameBytes, rs.FrameBytes)
		counter(descTicks, rs.Ticks)
		counter(descTickOverruns, rs.TickOverruns)
		counter(descOverBudget, rs.OverBudget)
		counter(descOverShare, rs.OverInboxShare)
		counter(descSuperseded, rs.BacklogSuperseded)
		for result, n := range rs.Resumes {
			counter(descResumes, n, result)
		}
		counter(descReplayed, rs.ReplayedFrames)
		gauge(descSeatsAway, float64(rs.SeatsAway))
		counter(descSeatsExpired, rs.SeatsExpired)
		gauge(descReplayBytes, float64(rs.ReplayBytes))
		counter(descDupInputs, rs.DuplicateInputs)
		counter(descLsSets, rs.LockstepInputSets)
		counter(descLsDelivered, rs.LockstepInputSetsDelivered)
		counter(descLsLate, rs.LockstepLateInputs)
		counter(descLsReplaced, rs.LockstepReplacedInputs)
		counter(descLsDesyncs, rs.LockstepDesyncs)
		counter(descLsSnapshots, rs.LockstepSnapshots)
	}
	m.collectCluster(ch)
	m.tickDuration.Collect(ch)
	m.tickLateness.Collect(ch)
}
