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
// environment variable and how it lands in Config. One table serves flags,
// environment and documentation, so the three cannot drift apart.
type setting struct {
	Name   string // flag name; the environment variable is TICKRELAY_ + upper snake case
	Help   string
	set    func(c *Config, v string) error
	get    func(c *Config) string
	isBool bool // a flag that may be given without a value (-allow-immediate)
}

// EnvName is the environment variable of a flag name.
func EnvName(flagName string) string {
	return "TICKRELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func intSetting(name, help string, field func(*Config) *int, lo, hi int) setting {
	return setting{Name: name, Help: help,
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

func durationSetting(name, help string, field func(*Config) *time.Duration) setting {
	return setting{Name: name, Help: help,
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

func stringSetting(name, help string, field func(*Config) *string) setting {
	return setting{Name: name, Help: help,
		set: func(c *Config, v string) error { *field(c) = v; return nil },
		get: func(c *Config) string { return *field(c) },
	}
}

func boolSetting(name, help string, field func(*Config) *bool) setting {
	return setting{Name: name, Help: help, isBool: true,
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

const maxInt = int(^uint(0) >> 1)

var settings = []setting{
	stringSetting("listen", "WebSocket listen address", func(c *Config) *string { return &c.Listen }),
	stringSetting("path", "WebSocket endpoint path", func(c *Config) *string { return &c.Path }),
	stringSetting("health-path", "plain HTTP health check path", func(c *Config) *string { return &c.HealthPath }),
	stringSetting("echo-path", "diagnostic echo endpoint path (off when empty)", func(c *Config) *string { return &c.EchoPath }),
	{Name: "allowed-origins", Help: "comma-separated Origin allow-list (empty: any)",
		set: func(c *Config, v string) error { c.AllowedOrigins = splitList(v); return nil },
		get: func(c *Config) string { return strings.Join(c.AllowedOrigins, ",") }},
	intSetting("event-loops", "gnet event loops (0: one per CPU)", func(c *Config) *int { return &c.EventLoops }, 0, 1024),
	intSetting("max-connections", "open connection limit (0: open-file limit - 128)", func(c *Config) *int { return &c.MaxConnections }, 0, maxInt),
	intSetting("max-message-bytes", "largest client message", func(c *Config) *int { return &c.MaxMessageBytes }, 0, 16<<20),
	durationSetting("handshake-timeout", "time allowed for the WebSocket handshake", func(c *Config) *time.Duration { return &c.HandshakeTimeout }),
	durationSetting("ping-interval", "ping connections silent this long", func(c *Config) *time.Duration { return &c.PingInterval }),
	durationSetting("idle-timeout", "close connections silent this long (4001)", func(c *Config) *time.Duration { return &c.IdleTimeout }),
	intSetting("outbound-soft-bytes", "unwritten bytes above which a connection is congested", func(c *Config) *int { return &c.OutboundSoftBytes }, 0, maxInt),
	intSetting("outbound-hard-bytes", "unwritten bytes above which a connection is closed (4000)", func(c *Config) *int { return &c.OutboundHardBytes }, 0, maxInt),
	intSetting("socket-send-buffer", "SO_SNDBUF per connection in bytes (0: kernel default)", func(c *Config) *int { return &c.SocketSendBuffer }, 0, 64<<20),
	intSetting("socket-recv-buffer", "SO_RCVBUF per connection in bytes (0: kernel default)", func(c *Config) *int { return &c.SocketRecvBuffer }, 0, 64<<20),
	intSetting("tick-rate", "default room tick rate, Hz", func(c *Config) *int { return &c.Room.DefaultTickRate }, 0, 1000),
	intSetting("min-tick-rate", "lowest tick rate a room may ask for, Hz", func(c *Config) *int { return &c.Room.MinTickRate }, 0, 1000),
	intSetting("max-tick-rate", "highest tick rate a room may ask for, Hz", func(c *Config) *int { return &c.Room.MaxTickRate }, 0, 1000),
	boolSetting("allow-immediate", "let rooms opt out of tick batching", func(c *Config) *bool { return &c.Room.AllowImmediate }),
	{Name: "tick-presets", Help: "tick rates by room metadata: key=value:rate, comma-separated (e.g. mode=ranked:60)",
		set: setTickPresets, get: getTickPresets},
	intSetting("max-frame-bytes", "largest frame of one tick before it is split", func(c *Config) *int { return &c.Room.MaxFrameBytes }, 0, 64<<20),
	intSetting("max-rooms", "room limit", func(c *Config) *int { return &c.Room.MaxRooms }, 0, maxInt),
	intSetting("max-players", "largest room capacity a client may ask for", func(c *Config) *int { return &c.Room.MaxPlayersPerRoom }, 0, 1<<20),
	intSetting("default-max-players", "room capacity when the creator gives none", func(c *Config) *int { return &c.Room.DefaultMaxPlayers }, 0, 1<<20),
	durationSetting("keepalive-interval", "empty frame to members of a quiet room (0: off)", func(c *Config) *time.Duration { return &c.Room.KeepAliveInterval }),
	stringSetting("admin-listen", `admin API address ("off" disables it)`, func(c *Config) *string { return &c.AdminListen }),
	stringSetting("admin-token", "bearer token required by the admin API (empty: none)", func(c *Config) *string { return &c.AdminToken }),
	durationSetting("drain-timeout", "how long a drain lets rooms run before closing them", func(c *Config) *time.Duration { return &c.DrainTimeout }),
	boolSetting("reload-existing-rooms", "on reload, move existing rooms to the new default tick rate", func(c *Config) *bool { return &c.ReloadExistingRooms }),
	intSetting("room-workers", "room worker goroutines (0: one per CPU)", func(c *Config) *int { return &c.Room.Workers }, 0, 1024),
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

// BindFlags registers every setting on fs, writing into cfg. Flags are parsed
// after ApplyEnv, so a flag overrides its environment variable.
func BindFlags(fs *flag.FlagSet, cfg *Config) {
	for _, s := range settings {
		set := func(v string) error { return s.set(cfg, v) }
		usage := s.Help + " (env " + EnvName(s.Name) + ")"
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
