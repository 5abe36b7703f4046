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
	intSetting("max-connections", "open connections; past it a connection gets HTTP 503 (a flood far past it is answered before its request is read); a value the open-file limit cannot hold is lowered", reloadRestart, func(c *Config) *int { return &c.MaxConnections }, 0, maxInt).withDefault("open-file limit − 128"),
	intSetting("max-message-bytes", "largest client message (after reassembly); larger: `Error{MESSAGE_TOO_LARGE}` and close 1009", reloadRestart, func(c *Config) *int { return &c.MaxMessageBytes }, 0, 16<<20),
	intSetting("max-bad-messages", "undecodable envelopes after which a connection is closed with 1008 (each one before gets `BAD_MESSAGE`)", reloadRestart, func(c *Config) *int { return &c.MaxBadMessages }, 0, 1<<20),
	intSetting("max-fragments", "frames one fragmented message may have; more: close 1009", reloadRestart, func(c *Config) *int { return &c.MaxFragments }, 0, 1<<20),
	durationSetting("handshake-timeout", "a connection that has not completed the upgrade in time gets HTTP 408 and is closed", reloadRestart, func(c *Config) *time.Duration { return &c.HandshakeTimeout }),
	durationSetting("message-read-timeout", "a message whose first bytes arrived must be complete within this long, else close 4004", reloadRestart, func(c *Config) *time.Duration { return &c.MessageReadTimeout }),
	durationSetting("ping-interval", "a connection silent this long is pinged", reloadRestart, func(c *Config) *time.Duration { return &c.PingInterval }),
	durationSetting("idle-timeout", "a connection silent this long gets `Error{TIMEOUT}` and close 4001", reloadRestart, func(c *Config) *time.Duration { return &c.IdleTimeout }),
	durationSetting("close-timeout", "after a clean close (drain, kick) the relay waits this long for the client's Close", reloadRestart, func(c *Config) *time.Duration { return &c.CloseTimeout }),
	durationSetting("fail-linger", "after failing a connection (protocol error, limit) the relay drops it when the client answers, this long after its Close is flushed, or when the client read nothing for this long", reloadRestart, func(c *Config) *time.Duration { return &c.FailLinger }),
	intSetting("outbound-soft-bytes", "unwritten bytes above which a connection is congested: its frames are held back, latest-only updates superseded, its input not read", reloadRestart, func(c *Config) *int { return &c.OutboundSoftBytes }, 0, maxInt),
	intSetting("outbound-hard-bytes", "unwritten bytes (frames, pongs, errors) above which a connection is closed as a slow consumer (4000)", reloadRestart, func(c *Config) *int { return &c.OutboundHardBytes }, 0, maxInt),
	intSetting("socket-send-buffer", "SO_SNDBUF per connection in bytes; smaller buffers cost less kernel memory and let the relay see slow clients sooner", reloadRestart, func(c *Config) *int { return &c.SocketSendBuffer }, 0, 64<<20).withDefault("kernel default"),
	intSetting("socket-recv-buffer", "SO_RCVBUF per connection in bytes", reloadRestart, func(c *Config) *int { return &c.SocketRecvBuffer }, 0, 64<<20).withDefault("kernel default"),
	floatSetting("rate-messages", "messages per second one connection may send (a token bucket; WebSocket pings count)", reloadLive, func(c *Config) *float64 { return &c.RateLimits.MessagesPerSecond }, 1e9),
	intSetting("rate-message-burst", "burst of that bucket", reloadLive, func(c *Config) *int { return &c.RateLimits.MessageBurst }, 0, maxInt),
	intSetting("rate-bytes", "payload bytes per second one connection may send", reloadLive, func(c *Config) *int { return &c.RateLimits.BytesPerSecond }, 0, maxInt),
	intSetting("rate-byte-burst", "burst of that bucket (at least max-message-bytes)", reloadLive, func(c *Config) *int { return &c.RateLimits.ByteBurst }, 0, maxInt),
	durationSetting("rate-limit-grace", "a connection over its rate limits this long (its excess dropped, `RATE_LIMITED` once a second) is closed with 4003", reloadLive, func(c *Config) *time.Duration { return &c.RateLimits.Grace }),
	intSetting("tick-budget-messages", "messages one sender may add to one tick of its room; more are dropped with `RATE_LIMITED`", reloadLive, func(c *Config) *int { return &c.Room.SenderTickMessages }, 0, 1<<20),
	intSetting("tick-budget-bytes", "payload bytes one sender may add to one tick of its room (at least max-message-bytes)", reloadLive, func(c *Config) *int { return &c.Room.SenderTickBytes }, 0, 64<<20),
	intSetting("inbox-per-connection", "messages one connection may have queued for its room worker; more get `OVERLOADED`", reloadRestart, func(c *Config) *int { return &c.Room.InboxPerSeat }, 0, 1<<24),
	intSetting("tick-rate", "default room tick rate, Hz", reloadNewRooms, func(c *Config) *int { return &c.Room.DefaultTickRate }, 0, 1000),
	intSetting("min-tick-rate", "lowest tick rate a room may ask for, Hz", reloadNewRooms, func(c *Config) *int { return &c.Room.MinTickRate }, 0, 1000),
	intSetting("max-tick-rate", "highest tick rate a room may ask for, Hz", reloadNewRooms, func(c *Config) *int { return &c.Room.MaxTickRate }, 0, 1000),
	boolSetting("allow-immediate", "let rooms opt out of tick batching", reloadNewRooms, func(c *Config) *bool { return &c.Room.AllowImmediate }),
	{Name: "tick-presets", Help: "tick rates by room metadata for rooms created without a rate: `mode=ranked:60,mode=casual:20` (or a YAML list); the first match wins, an explicit `RoomOptions.tick_rate` wins over all",
		Reload: reloadNewRooms, DefaultText: "none", set: setTickPresets, get: getTickPresets},
	intSetting("max-frame-bytes", "a tick's frame larger than this is split into several frames of the same tick", reloadRestart, func(c *Config) *int { return &c.Room.MaxFrameBytes }, 0, 64<<20),
	intSetting("max-backlog-bytes", "messages held back for one congested player; past it the player is closed as a slow consumer", reloadRestart, func(c *Config) *int { return &c.Room.MaxBacklogBytes }, 0, 1<<30),
	intSetting("max-rooms", "room limit; past it creating a room gets `ROOM_LIMIT_REACHED`", reloadLive, func(c *Config) *int { return &c.Room.MaxRooms }, 0, maxInt),
	intSetting("max-players", "largest capacity a room may ask for", reloadNewRooms, func(c *Config) *int { return &c.Room.MaxPlayersPerRoom }, 0, 1<<20),
	intSetting("default-max-players", "capacity of a room whose creator gives none", reloadNewRooms, func(c *Config) *int { return &c.Room.DefaultMaxPlayers }, 0, 1<<20),
	durationSetting("keepalive-interval", "an empty frame to members of a room quiet this long (a clock for idle rooms); rooms asleep when it is turned on get it from their next message", reloadLive, func(c *Config) *time.Duration { return &c.Room.KeepAliveInterval }).withDefault("off"),
	stringSetting("admin-listen", "admin API address; `off` disables it", reloadRestart, func(c *Config) *string { return &c.AdminListen }),
	stringSetting("admin-token", "bearer token for the admin API (all but `/healthz`, `/readyz`)", reloadRestart, func(c *Config) *string { return &c.AdminToken }).withDefault("none"),
	durationSetting("drain-timeout", "how long a drain lets rooms run on before closing their players", reloadLive, func(c *Config) *time.Duration { return &c.DrainTimeout }),
	boolSetting("reload-existing-rooms", "on reload, move existing rooms to the new default tick rate (clamped to the new bounds)", reloadLive, func(c *Config) *bool { return &c.ReloadExistingRooms }),
	intSetting("room-workers", "room worker goroutines", reloadRestart, func(c *Config) *int { return &c.Room.Workers }, 0, 1024).withDefault("one per CPU"),
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
