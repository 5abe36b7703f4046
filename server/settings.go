package server

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/tickrelay/tickrelay/room"
)

// A setting is one operator-facing configuration knob: its flag, its
// environment variable, its config file key, how it lands in Config, what a
// reload does with it, and its documentation. This one table serves flags,
// environment, file, reload and docs/OPERATIONS.md (whose settings table is
// rendered from it and checked by a test), so they cannot drift apart.
type setting struct {
	Name string // flag name and file key; the environment variable is TICKRELAY_ + upper snake case
	Help string // one sentence, for -h and the docs
	// Reload is what SIGHUP does with a changed value.
	Reload reloadKind
	// DefaultText documents a default that depends on the machine or means
	// "off"; empty means the default is get of the defaults (shown as is).
	DefaultText string
	set         func(c *Config, v string) error
	get         func(c *Config) string
	isBool      bool // a flag that may be given without a value (-allow-immediate)
}

// reloadKind says when a changed setting takes effect.
type reloadKind uint8

const (
	reloadRestart  reloadKind = iota // only after a restart; a reload logs it as ignored
	reloadLive                       // at once, for everything
	reloadNewRooms                   // for rooms created from now on (and existing ones with reload-existing-rooms)
)

func (k reloadKind) String() string {
	switch k {
	case reloadLive:
		return "live"
	case reloadNewRooms:
		return "new rooms"
	default:
		return "restart"
	}
}

// EnvName is the environment variable of a flag name.
func EnvName(flagName string) string {
	return "TICKRELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func intSetting(name, help string, reload reloadKind, field func(*Config) *int, lo, hi int) setting {
	return setting{Name: name, Help: help, Reload: reload,
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%s: %q is not an integer", name, v)
			}
			if n < lo || n > hi {
				return fmt.Errorf("%s: %d is out of range [%d, %d]", name, n, lo, hi)
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) },
	}
}

func floatSetting(name, help string, reload reloadKind, field func(*Config) *float64, hi float64) setting {
	return setting{Name: name, Help: help, Reload: reload,
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", name, v)
			}
			if f < 0 || f > hi {
				return fmt.Errorf("%s: %g is out of range [0, %g]", name, f, hi)
			}
			*field(c) = f
			return nil
		},
		get: func(c *Config) string { return strconv.FormatFloat(*field(c), 'g', -1, 64) },
	}
}

func durationSetting(name, help string, reload reloadKind, field func(*Config) *time.Duration) setting {
	return setting{Name: name, Help: help, Reload: reload,
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < 0 {
				return fmt.Errorf("%s: %q is not a non-negative duration (e.g. 15s)", name, v)
			}
			*field(c) = d
			return nil
		},
		get: func(c *Config) string { return field(c).String() },
	}
}

func stringSetting(name, help string, reload reloadKind, field func(*Config) *string) setting {
	return setting{Name: name, Help: help, Reload: reload,
		set: func(c *Config, v string) error { *field(c) = v; return nil },
		get: func(c *Config) string { return *field(c) },
	}
}

func listSetting(name, help string, reload reloadKind, field func(*Config) *[]string) setting {
	return setting{Name: name, Help: help, Reload: reload,
		set: func(c *Config, v string) error { *field(c) = splitList(v); return nil },
		get: func(c *Config) string { return strings.Join(*field(c), ",") },
	}
}

func boolSetting(name, help string, reload reloadKind, field func(*Config) *bool) setting {
	return setting{Name: name, Help: help, Reload: reload, isBool: true,
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return fmt.Errorf("%s: %q is not a boolean", name, v)
			}
			*field(c) = b
			return nil
		},
		get: func(c *Config) string { return strconv.FormatBool(*field(c)) },
	}
}

// withDefault sets the documented default of a setting whose default
// depends on the machine or means "off".
func (s setting) withDefault(text string) setting {
	s.DefaultText = text
	return s
}

const maxInt = int(^uint(0) >> 1)

var settings = []setting{
	stringSetting("listen", "WebSocket listener address", reloadRestart, func(c *Config) *string { return &c.Listen }),
	stringSetting("path", "WebSocket endpoint path", reloadRestart, func(c *Config) *string { return &c.Path }),
	stringSetting("health-path", "plain `GET` answered `200 ok` on the relay port, for load balancers", reloadRestart, func(c *Config) *string { return &c.HealthPath }),
	stringSetting("echo-path", "diagnostic echo endpoint (for conformance suites): the same frame code, text checked as UTF-8", reloadRestart, func(c *Config) *string { return &c.EchoPath }).withDefault("off"),
	listSetting("allowed-origins", "Origin allow-list for browsers: `scheme://host[:port]` compared without regard to ASCII case, `*` allows any; requests without Origin (not from a browser) always pass", reloadRestart, func(c *Config) *[]string { return &c.AllowedOrigins }).withDefault("any"),
	intSetting("event-loops", "gnet event loops", reloadRestart, func(c *Config) *int { return &c.EventLoops }, 0, 1024).withDefault("one per CPU"),
	intSetting("max-connections", "open connections; just past it an upgrade is closed at once with `SERVER_FULL` and close 4002, far past it (a flood) the request gets HTTP 503 before it is read; a value the open-file limit cannot hold is lowered", reloadRestart, func(c *Config) *int { return &c.MaxConnections }, 0, maxInt).withDefault("open-file limit − 128"),
	intSetting("max-message-bytes", "largest client message (after reassembly); larger: `Error{MESSAGE_TOO_LARGE}` and close 1009", reloadRestart, func(c *Config) *int { return &c.MaxMessageBytes }, 0, 16<<20),
	intSetting("max-bad-messages", "undecodable envelopes after which a connection is closed with 1008 (each one before gets `BAD_MESSAGE`)", reloadRestart, func(c *Config) *int { return &c.MaxBadMessages }, 0, 1<<20),
	intSetting("max-fragments", "frames one fragmented message may have; more: close 1009", reloadRestart, func(c *Config) *int { return &c.MaxFragments }, 0, 1<<20),
	durationSetting("handshake-timeout", "a connection that has not completed the upgrade in time gets HTTP 408 and is closed", reloadRestart, func(c *Config) *time.Duration { return &c.HandshakeTimeout }),
	durationSetting("message-read-timeout", "a message whose first bytes arrived must be complete within this long (timed from its first byte; paused while the relay holds the input back), else close 4004", reloadRestart, func(c *Config) *time.Duration { return &c.MessageReadTimeout }),
	durationSetting("ping-interval", "a connection silent this long is pinged", reloadRestart, func(c *Config) *time.Duration { return &c.PingInterval }),
	durationSetting("idle-timeout", "a connection silent this long gets `Error{TIMEOUT}` and close 4001", reloadRestart, func(c *Config) *time.Duration { return &c.IdleTimeout }),
	durationSetting("close-timeout", "after a clean close (drain, kick) the relay waits this long for the client's Close", reloadRestart, func(c *Config) *time.Duration { return &c.CloseTimeout }),
	durationSetting("fail-linger", "after failing a connection (protocol error, limit) or answering an HTTP error before the upgrade, the relay drops it when the client answers, this long after its Close or answer is flushed, or when the client read nothing for this long", reloadRestart, func(c *Config) *time.Duration { return &c.FailLinger }),
	intSetting("outbound-soft-bytes", "unwritten bytes above which a connection is congested: its frames are held back, latest-only updates superseded, its input not read", reloadRestart, func(c *Config) *int { return &c.OutboundSoftBytes }, 0, maxInt),
	intSetting("outbound-hard-bytes", "unwritten bytes (frames, pongs, errors) above which a connection is closed as a slow consumer (4000)", reloadRestart, func(c *Config) *int { return &c.OutboundHardBytes }, 0, maxInt),
	intSetting("socket-send-buffer", "SO_SNDBUF per connection in bytes; smaller buffers cost less kernel memory and let the relay see slow clients sooner", reloadRestart, func(c *Config) *int { return &c.SocketSendBuffer }, 0, 64<<20).withDefault("kernel default"),
	intSetting("socket-recv-buffer", "SO_RCVBUF per connection in bytes", reloadRestart, func(c *Config) *int { return &c.SocketRecvBuffer }, 0, 64<<20).withDefault("kernel default"),
	floatSetting("rate-messages", "messages per second one connection may send (a token bucket; WebSocket pings count)", reloadLive, func(c *Config) *float64 { return &c.RateLimits.MessagesPerSecond }, 1e9),
	intSetting("rate-message-burst", "burst of that bucket", reloadLive, func(c *Config) *int { return &c.RateLimits.MessageBurst }, 0, maxInt),
	intSetting("rate-bytes", "payload bytes per second one connection may send", reloadLive, func(c *Config) *int { return &c.RateLimits.BytesPerSecond }, 0, maxInt),
	intSetting("rate-byte-burst", "burst of that bucket (at least max-message-bytes)", reloadLive, func(c *Config) *int { return &c.RateLimits.ByteBurst }, 0, maxInt),
	durationSetting("rate-limit-grace", "a connection over its rate limits this long (its excess dropped, `RATE_LIMITED` once a second) is closed with 4003", reloadLive, func(c *Config) *time.Duration { return &c.RateLimits.Grace }),
	intSetting("tick-budget-messages", "messages one sender may add to one tick of its room (input the relay held back unread may borrow the next tick's); more are dropped with `RATE_LIMITED`", reloadLive, func(c *Config) *int { return &c.Room.SenderTickMessages }, 0, 1<<20),
	intSetting("tick-budget-bytes", "payload bytes one sender may add to one tick of its room, held-back input as for messages (at least max-message-bytes)", reloadLive, func(c *Config) *int { return &c.Room.SenderTickBytes }, 0, 64<<20),
	intSetting("inbox-per-connection", "messages one connection may have queued for its room worker; more get `OVERLOADED`", reloadRestart, func(c *Config) *int { return &c.Room.InboxPerSeat }, 0, 1<<24),
	{Name: "seat-grace", Help: "how long a player whose connection dropped without a Leave keeps its seat for a Resume (a room may ask for less or more, up to max-seat-grace); `off`: players leave at once",
		Reload: reloadNewRooms, set: setSeatGrace, get: getSeatGrace},
	durationSetting("max-seat-grace", "the longest seat grace a room may ask for", reloadNewRooms, func(c *Config) *time.Duration { return &c.Room.MaxSeatGrace }),
	intSetting("replay-bytes-per-seat", "frames kept for replay after a resume, per seat (until acknowledged); past it the oldest are dropped and such a Resume is TOO_OLD", reloadRestart, func(c *Config) *int { return &c.Room.ReplayBytesPerSeat }, 0, 1<<30),
	intSetting("replay-bytes-per-room", "the same bound for a whole room", reloadRestart, func(c *Config) *int { return &c.Room.ReplayBytesPerRoom }, 0, 1<<30),
	intSetting("tick-rate", "default room tick rate, Hz", reloadNewRooms, func(c *Config) *int { return &c.Room.DefaultTickRate }, 0, 1000),
	intSetting("min-tick-rate", "lowest tick rate a room may ask for, Hz", reloadNewRooms, func(c *Config) *int { return &c.Room.MinTickRate }, 0, 1000),
	intSetting("max-tick-rate", "highest tick rate a room may ask for, Hz", reloadNewRooms, func(c *Config) *int { return &c.Room.MaxTickRate }, 0, 1000),
	boolSetting("allow-immediate", "let rooms opt out of tick batching", reloadNewRooms, func(c *Config) *bool { return &c.Room.AllowImmediate }),
	{Name: "tick-presets", Help: "tick rates by room metadata for rooms created without a rate: `mode=ranked:60,mode=casual:20` (or a YAML list); the first match wins, an explicit `RoomOptions.tick_rate` wins over all",
		Reload: reloadNewRooms, DefaultText: "none", set: setTickPresets, get: getTickPresets},
	durationSetting("lockstep-tolerance", "how long after a tick's deadline a LOCKSTEP room waits for inputs before closing the tick, when the room asks for no other value (`LockstepOptions.tolerance_ms`)", reloadNewRooms, func(c *Config) *time.Duration { return &c.Room.LockstepTolerance }),
	durationSetting("lockstep-max-tolerance", "the longest tolerance a LOCKSTEP room may ask for; more is refused with `INVALID_ARGUMENT`", reloadNewRooms, func(c *Config) *time.Duration { return &c.Room.LockstepMaxTolerance }),
	intSetting("lockstep-max-lead-ticks", "how many ticks after the last closed one a LOCKSTEP Input may target; further gets `INPUT_TOO_LATE{too_early}`", reloadNewRooms, func(c *Config) *int { return &c.Room.LockstepMaxLeadTicks }, 0, 4096),
	intSetting("lockstep-max-input-bytes", "largest LOCKSTEP Input payload; larger gets `MESSAGE_TOO_LARGE`", reloadNewRooms, func(c *Config) *int { return &c.Room.LockstepMaxInputBytes }, 0, 64<<10),
	intSetting("lockstep-log-bytes", "InputSets a LOCKSTEP room keeps for late joiners (from tick 1, or after its last snapshot); at half of it the room asks a member for a snapshot. Sent to a joiner at once, so lowered to half of outbound-hard-bytes if above", reloadNewRooms, func(c *Config) *int { return &c.Room.LockstepLogBytes }, 0, 1<<30),
	intSetting("lockstep-max-snapshot-bytes", "largest snapshot a member may upload (it goes to joiners inside Joined: keep it below the clients' largest message); a client message is also bounded by max-message-bytes", reloadNewRooms, func(c *Config) *int { return &c.Room.LockstepMaxSnapshotBytes }, 0, 64<<20),
	intSetting("max-frame-bytes", "a tick's frame larger than this is split into several frames of the same tick", reloadRestart, func(c *Config) *int { return &c.Room.MaxFrameBytes }, 0, 64<<20),
	intSetting("max-backlog-bytes", "messages held back for one congested player; past it the player is closed as a slow consumer", reloadRestart, func(c *Config) *int { return &c.Room.MaxBacklogBytes }, 0, 1<<30),
	intSetting("max-rooms", "room limit; past it creating a room gets `ROOM_LIMIT_REACHED`", reloadLive, func(c *Config) *int { return &c.Room.MaxRooms }, 0, maxInt),
	intSetting("max-players", "largest capacity a room may ask for", reloadNewRooms, func(c *Config) *int { return &c.Room.MaxPlayersPerRoom }, 0, 1<<20),
	intSetting("default-max-players", "capacity of a room whose creator gives none", reloadNewRooms, func(c *Config) *int { return &c.Room.DefaultMaxPlayers }, 0, 1<<20),
	durationSetting("keepalive-interval", "an empty frame to members of a room quiet this long (a clock for idle rooms); rooms asleep when it is turned on get it from their next message", reloadLive, func(c *Config) *time.Duration { return &c.Room.KeepAliveInterval }).withDefault("off"),
	stringSetting("auth", "`jwt`: players need a token minted by the game's backend; `off`: anyone who reaches the port may create and join rooms (a config file must say which)", reloadRestart, func(c *Config) *string { return &c.Auth.Mode }).withDefault("off, with a warning"),
	listSetting("auth-secrets", "HS256 shared secrets (any one verifies, so a secret can be rotated); prefer auth-secret-file or the environment", reloadRestart, func(c *Config) *[]string { return &c.Auth.Secrets }).withDefault("none"),
	stringSetting("auth-secret-file", "file with one HS256 secret per line", reloadRestart, func(c *Config) *string { return &c.Auth.SecretFile }).withDefault("none"),
	stringSetting("auth-jwks-file", "JSON Web Key Set file of public keys (EdDSA, ES256, RS256); re-read on SIGHUP", reloadLive, func(c *Config) *string { return &c.Auth.JWKSFile }).withDefault("none"),
	stringSetting("auth-jwks-url", "JWKS URL (an identity provider's jwks_uri), fetched in the background with caching", reloadRestart, func(c *Config) *string { return &c.Auth.JWKSURL }).withDefault("none"),
	durationSetting("auth-jwks-refresh", "how often the JWKS URL is fetched again", reloadRestart, func(c *Config) *time.Duration { return &c.Auth.JWKSRefresh }).withDefault("5m"),
	stringSetting("auth-audience", "the `aud` a token must carry", reloadRestart, func(c *Config) *string { return &c.Auth.Audience }),
	stringSetting("auth-issuer", "the `iss` a token must carry", reloadRestart, func(c *Config) *string { return &c.Auth.Issuer }).withDefault("any"),
	durationSetting("auth-leeway", "clock skew tolerated on `exp` and `nbf`", reloadRestart, func(c *Config) *time.Duration { return &c.Auth.Leeway }).withDefault("30s"),
	listSetting("auth-algorithms", "accepted algorithms, from HS256, EdDSA, ES256, RS256", reloadRestart, func(c *Config) *[]string { return &c.Auth.Algorithms }).withDefault("all four"),
	intSetting("auth-max-failures", "refused tokens after which a connection is closed with 4501", reloadRestart, func(c *Config) *int { return &c.Auth.MaxFailures }, 0, 1<<20),
	stringSetting("auth-url-token", "query parameter that may carry the token (`ws://host/ws?NAME=TOKEN`); off because URLs end up in proxy logs", reloadRestart, func(c *Config) *string { return &c.Auth.URLToken }).withDefault("off"),
	listSetting("trusted-proxies", "proxies and load balancers (CIDRs) whose X-Forwarded-For / X-Real-IP (and PROXY header) give the client's address; ignored from other peers", reloadRestart, func(c *Config) *[]string { return &c.TrustedProxies }).withDefault("none"),
	boolSetting("proxy-protocol", "connections from trusted proxies start with a PROXY protocol v1/v2 header (a TCP load balancer's send-proxy-v2)", reloadRestart, func(c *Config) *bool { return &c.ProxyProtocol }),
	intSetting("ip-max-connections", "concurrent connections per client address (-1: no limit); more get close 4005", reloadRestart, func(c *Config) *int { return &c.AddressLimits.MaxConnsPerIP }, -1, maxInt).withDefault("64"),
	floatSetting("ip-handshakes-per-second", "new connections per second per address (a token bucket)", reloadRestart, func(c *Config) *float64 { return &c.AddressLimits.HandshakesPerSecond }, 1e9).withDefault("10"),
	intSetting("ip-handshake-burst", "burst of that bucket", reloadRestart, func(c *Config) *int { return &c.AddressLimits.HandshakeBurst }, 0, maxInt).withDefault("40"),
	floatSetting("ip-joins-per-second", "Joins per second per address; more get `RATE_LIMITED`", reloadRestart, func(c *Config) *float64 { return &c.AddressLimits.JoinsPerSecond }, 1e9).withDefault("10"),
	intSetting("ip-join-burst", "burst of that bucket", reloadRestart, func(c *Config) *int { return &c.AddressLimits.JoinBurst }, 0, maxInt).withDefault("40"),
	intSetting("ip-failed-joins-per-minute", "failed Joins (unknown code, full room, refused token) per address and minute before a lockout (-1: none)", reloadRestart, func(c *Config) *int { return &c.AddressLimits.FailedJoinsPerMinute }, -1, maxInt).withDefault("30"),
	durationSetting("ip-lockout", "how long an address that failed too many Joins may not join", reloadRestart, func(c *Config) *time.Duration { return &c.AddressLimits.Lockout }).withDefault("1m"),
	listSetting("ip-exempt", "addresses (CIDRs) the per-address limits leave alone; `none` for none. Loopback by default: put a local proxy in trusted-proxies", reloadRestart, func(c *Config) *[]string { return &c.AddressExempt }),
	intSetting("ip-max-tracked", "addresses tracked at once (memory bound); past it new addresses are not limited", reloadRestart, func(c *Config) *int { return &c.AddressLimits.MaxTracked }, 0, 1<<24).withDefault("65536"),
	boolSetting("conceal-rooms", "a Join to a full room (or one the token may not create) answers ROOM_NOT_FOUND, like an unknown code: no existence oracle", reloadRestart, func(c *Config) *bool { return &c.Room.ConcealRooms }),
	intSetting("room-code-length", "length of server-made room codes (31 letters and digits each)", reloadRestart, func(c *Config) *int { return &c.Room.CodeLength }, 0, 16),
	stringSetting("admin-listen", "admin API address; `off` disables it; a non-loopback address needs an admin token", reloadRestart, func(c *Config) *string { return &c.AdminListen }),
	stringSetting("admin-token", "bearer token for the admin API (all but `/healthz`, `/readyz`; pprof included); prefer admin-token-file (flags show in ps)", reloadRestart, func(c *Config) *string { return &c.AdminToken }).withDefault("none"),
	stringSetting("admin-token-file", "file holding the admin bearer token", reloadRestart, func(c *Config) *string { return &c.AdminTokenFile }).withDefault("none"),
	durationSetting("drain-timeout", "how long a drain lets rooms run on before closing their players", reloadLive, func(c *Config) *time.Duration { return &c.DrainTimeout }),
	boolSetting("reload-existing-rooms", "on reload, move existing rooms to the new default tick rate (clamped to the new bounds)", reloadLive, func(c *Config) *bool { return &c.ReloadExistingRooms }),
	intSetting("room-workers", "room worker goroutines", reloadRestart, func(c *Config) *int { return &c.Room.Workers }, 0, 1024).withDefault("one per CPU"),
	stringSetting("cluster-nats-url", "NATS server(s) of the cluster (`nats://host:4222`, comma-separated); set, the relay runs as a node of a cluster (see *Cluster*)", reloadRestart, func(c *Config) *string { return &c.Cluster.NATSURL }).withDefault("off"),
	stringSetting("cluster-nats-credentials", "NATS credentials file (JWT and seed)", reloadRestart, func(c *Config) *string { return &c.Cluster.NATSCredentials }).withDefault("none"),
	stringSetting("cluster-name", "the cluster's name: prefix of its NATS subjects and buckets; nodes with the same name on one NATS form one cluster", reloadRestart, func(c *Config) *string { return &c.Cluster.Name }).withDefault("tickrelay"),
	stringSetting("cluster-node-id", "this node's id, unique in the cluster (`[A-Za-z0-9_-]`)", reloadRestart, func(c *Config) *string { return &c.Cluster.NodeID }).withDefault("the host name"),
	stringSetting("cluster-advertise", "the WebSocket URL clients reach this node at, shown to operators", reloadRestart, func(c *Config) *string { return &c.Cluster.Advertise }).withDefault("none"),
	durationSetting("cluster-lease-ttl", "how long a room's ownership lasts unrenewed: after a node dies its rooms move after about this long", reloadRestart, func(c *Config) *time.Duration { return &c.Cluster.LeaseTTL }).withDefault("3s"),
	durationSetting("cluster-fence-margin", "an owner stops serving a room this long before its lease could run out without a renewal", reloadRestart, func(c *Config) *time.Duration { return &c.Cluster.FenceMargin }).withDefault("500ms"),
	durationSetting("cluster-handover-wait", "how long a node taking over a room waits for the other nodes' reports", reloadRestart, func(c *Config) *time.Duration { return &c.Cluster.HandoverWait }).withDefault("500ms"),
	intSetting("cluster-replicas", "replicas of the cluster's JetStream buckets (a clustered NATS)", reloadRestart, func(c *Config) *int { return &c.Cluster.Replicas }, 0, 5).withDefault("1"),
	intSetting("cluster-max-owned-rooms", "rooms this node owns before it places new ones on the node that owns the fewest (when that one owns fewer); 0: no limit, a room belongs to the node of the Join that created it", reloadRestart, func(c *Config) *int { return &c.Cluster.MaxOwnedRooms }, 0, maxInt).withDefault("0"),
}

// setSeatGrace parses a duration or "off" (a negative grace: no resume).
func setSeatGrace(c *Config, v string) error {
	if strings.TrimSpace(v) == "off" {
		c.Room.SeatGrace = -1
		return nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d < 0 {
		return fmt.Errorf("seat-grace: %q is not a non-negative duration (e.g. 15s) or off", v)
	}
	c.Room.SeatGrace = d
	return nil
}

func getSeatGrace(c *Config) string {
	if c.Room.SeatGrace < 0 {
		return "off"
	}
	return c.Room.SeatGrace.String()
}

// setTickPresets parses "key=value:rate,..." into Room.TickPresets. Rates
// are checked against the tick bounds when the server is built.
func setTickPresets(c *Config, v string) error {
	var presets []room.TickPreset
	for _, item := range splitList(v) {
		kv, rateText, ok := strings.Cut(item, ":")
		key, value, ok2 := strings.Cut(kv, "=")
		rate, err := strconv.Atoi(rateText)
		if !ok || !ok2 || key == "" || err != nil || rate <= 0 {
			return fmt.Errorf("tick-presets: %q is not key=value:rate (e.g. mode=ranked:60)", item)
		}
		presets = append(presets, room.TickPreset{Key: key, Value: value, Rate: rate})
	}
	c.Room.TickPresets = presets
	return nil
}

func getTickPresets(c *Config) string {
	parts := make([]string, 0, len(c.Room.TickPresets))
	for _, p := range c.Room.TickPresets {
		parts = append(parts, fmt.Sprintf("%s=%s:%d", p.Key, p.Value, p.Rate))
	}
	return strings.Join(parts, ",")
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// defaults is the configuration a server runs with when nothing is set,
// for documenting defaults.
func defaults() Config {
	c := Config{}.withDefaults()
	c.Room = c.Room.WithDefaults()
	return c
}

// defaultText is a setting's documented default.
func (s setting) defaultText() string {
	if s.DefaultText != "" {
		return s.DefaultText
	}
	c := defaults()
	return s.get(&c)
}

// BindFlags registers every setting on fs, writing into cfg. Flags are parsed
// after ApplyEnv, so a flag overrides its environment variable.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	for _, s := range settings {
		set := func(v string) error { return s.set(cfg, v) }
		usage := strings.ReplaceAll(s.Help, "`", "") + " (default " + s.defaultText() + "; env " + EnvName(s.Name) + ")"
		if s.isBool {
			fs.BoolFunc(s.Name, usage, set) // -name alone means true
		} else {
			fs.Func(s.Name, usage, set)
		}
	}
}

// ApplyEnv applies TICKRELAY_* variables found by getenv to cfg.
func ApplyEnv(cfg *Config, getenv func(string) string) error {
	var errs []error
	for _, s := range settings {
		if v := getenv(EnvName(s.Name)); v != "" {
			if err := s.set(cfg, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", EnvName(s.Name), err))
			}
		}
	}
	return errors.Join(errs...)
}

// changedSettings lists the settings whose values differ between old and
// next, by reload kind.
func changedSettings(old, next *Config) map[reloadKind][]string {
	out := map[reloadKind][]string{}
	for _, s := range settings {
		if s.get(old) != s.get(next) {
			out[s.Reload] = append(out[s.Reload], s.Name)
		}
	}
	return out
}
