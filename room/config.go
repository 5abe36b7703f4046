package room

import (
	"fmt"
	"runtime"
	"time"
)

// Defaults of the zero fields of Config (see each field's comment).
const (
	defaultTickRate          = 30
	defaultMinTickRate       = 1
	defaultMaxTickRate       = 120
	defaultMaxRooms          = 100_000
	defaultMaxPlayers        = 16
	defaultMaxPlayersPerRoom = 1_000
	defaultMaxMetadataBytes  = 4 << 10
	defaultMaxFrameBytes     = 256 << 10
	defaultMaxBacklogBytes   = 1 << 20
	defaultInboxCapacity     = 65_536
	defaultHeadroom          = 10
	defaultSenderTickMsgs    = 512
	defaultSenderTickBytes   = 64 << 10
	defaultInboxPerSeat      = 1024
	defaultSeatGrace         = 15 * time.Second
	defaultMaxSeatGrace      = 2 * time.Minute
	defaultReplayPerSeat     = 256 << 10
	defaultReplayPerRoom     = 4 << 20
	defaultLockstepTolerance = 5 * time.Millisecond
	defaultLockstepMaxTol    = 250 * time.Millisecond
	defaultLockstepLead      = 32
	defaultLockstepInput     = 256
	defaultLockstepLog       = 1 << 20
	defaultLockstepSnapshot  = 512 << 10
)

// Hard bounds of Config values. They keep arithmetic in range (a period of
// at least 1 ms, player ids and sizes far from overflow), not policy.
const (
	maxWorkers          = 1024
	maxTickRateLimit    = 1000
	maxPlayersLimit     = 1 << 20
	minFrameBytesLimit  = 1 << 10
	maxFrameBytesLimit  = 64 << 20
	maxHeadroomLimit    = 64
	maxMetadataLimit    = 1 << 20
	maxInboxLimit       = 1 << 24
	maxBacklogBytesSane = 1 << 30
)

// bound is one integer field of Config: its default and largest value.
type bound struct {
	name     string
	v        *int
	def, max int
}

func (c *Config) bounds() []bound {
	return []bound{
		{"Workers", &c.Workers, runtime.GOMAXPROCS(0), maxWorkers},
		{"DefaultTickRate", &c.DefaultTickRate, defaultTickRate, maxTickRateLimit},
		{"MinTickRate", &c.MinTickRate, defaultMinTickRate, maxTickRateLimit},
		{"MaxTickRate", &c.MaxTickRate, defaultMaxTickRate, maxTickRateLimit},
		{"MaxRooms", &c.MaxRooms, defaultMaxRooms, 1 << 30},
		{"DefaultMaxPlayers", &c.DefaultMaxPlayers, defaultMaxPlayers, maxPlayersLimit},
		{"MaxPlayersPerRoom", &c.MaxPlayersPerRoom, defaultMaxPlayersPerRoom, maxPlayersLimit},
		{"MaxMetadataBytes", &c.MaxMetadataBytes, defaultMaxMetadataBytes, maxMetadataLimit},
		{"MaxFrameBytes", &c.MaxFrameBytes, defaultMaxFrameBytes, maxFrameBytesLimit},
		{"MaxBacklogBytes", &c.MaxBacklogBytes, defaultMaxBacklogBytes, maxBacklogBytesSane},
		{"InboxCapacity", &c.InboxCapacity, defaultInboxCapacity, maxInboxLimit},
		{"Headroom", &c.Headroom, defaultHeadroom, maxHeadroomLimit},
		{"SenderTickMessages", &c.SenderTickMessages, defaultSenderTickMsgs, 1 << 20},
		{"SenderTickBytes", &c.SenderTickBytes, defaultSenderTickBytes, maxFrameBytesLimit},
		{"InboxPerSeat", &c.InboxPerSeat, defaultInboxPerSeat, maxInboxLimit},
		{"CodeLength", &c.CodeLength, defaultCodeLen, maxCodeLen},
		{"ReplayBytesPerSeat", &c.ReplayBytesPerSeat, defaultReplayPerSeat, 1 << 30},
		{"ReplayBytesPerRoom", &c.ReplayBytesPerRoom, defaultReplayPerRoom, 1 << 30},
		{"LockstepMaxLeadTicks", &c.LockstepMaxLeadTicks, defaultLockstepLead, 4096},
		{"LockstepMaxInputBytes", &c.LockstepMaxInputBytes, defaultLockstepInput, 64 << 10},
		{"LockstepLogBytes", &c.LockstepLogBytes, defaultLockstepLog, 1 << 30},
		{"LockstepMaxSnapshotBytes", &c.LockstepMaxSnapshotBytes, defaultLockstepSnapshot, 64 << 20},
	}
}

// WithDefaults returns c with its zero fields set to their defaults,
// without validating it (New validates).
func (c Config) WithDefaults() Config {
	// An unset DefaultMaxPlayers follows a MaxPlayersPerRoom below its
	// default rather than failing validation.
	if c.DefaultMaxPlayers == 0 && c.MaxPlayersPerRoom > 0 && c.MaxPlayersPerRoom < defaultMaxPlayers {
		c.DefaultMaxPlayers = c.MaxPlayersPerRoom
	}
	for _, b := range c.bounds() {
		if *b.v == 0 {
			*b.v = b.def
		}
	}
	if c.SeatGrace == 0 {
		c.SeatGrace = defaultSeatGrace
	}
	if c.MaxSeatGrace == 0 {
		c.MaxSeatGrace = defaultMaxSeatGrace
	}
	if c.LockstepTolerance == 0 {
		c.LockstepTolerance = defaultLockstepTolerance
	}
	if c.LockstepMaxTolerance == 0 {
		c.LockstepMaxTolerance = defaultLockstepMaxTol
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return c
}

// resolve validates c and returns it with defaults applied. Errors wrap
// ErrInvalidArgument and name the offending field.
func (c Config) resolve() (Config, error) {
	invalid := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: Config."+format, append([]any{ErrInvalidArgument}, args...)...)
	}
	for _, b := range c.bounds() {
		if *b.v < 0 {
			return invalid("%s (%d) must not be negative", b.name, *b.v)
		}
	}
	c = c.WithDefaults()
	for _, b := range c.bounds() {
		if *b.v > b.max {
			return invalid("%s (%d) must be at most %d", b.name, *b.v, b.max)
		}
	}
	if c.MaxSeatGrace < 0 {
		return invalid("MaxSeatGrace (%v) must not be negative", c.MaxSeatGrace)
	}
	if c.CodeLength < minCodeLen {
		return invalid("CodeLength (%d) must be at least %d", c.CodeLength, minCodeLen)
	}
	if c.MinTickRate > c.MaxTickRate {
		return invalid("MinTickRate (%d) must not exceed MaxTickRate (%d)", c.MinTickRate, c.MaxTickRate)
	}
	if c.DefaultTickRate < c.MinTickRate || c.DefaultTickRate > c.MaxTickRate {
		return invalid("DefaultTickRate (%d) must be within MinTickRate..MaxTickRate (%d..%d)",
			c.DefaultTickRate, c.MinTickRate, c.MaxTickRate)
	}
	if c.DefaultMaxPlayers > c.MaxPlayersPerRoom {
		return invalid("DefaultMaxPlayers (%d) must not exceed MaxPlayersPerRoom (%d)",
			c.DefaultMaxPlayers, c.MaxPlayersPerRoom)
	}
	if c.MaxFrameBytes < minFrameBytesLimit {
		return invalid("MaxFrameBytes (%d) must be at least %d", c.MaxFrameBytes, minFrameBytesLimit)
	}
	for _, p := range c.TickPresets {
		if p.Key == "" || p.Rate < c.MinTickRate || p.Rate > c.MaxTickRate {
			return invalid("TickPresets: %s=%s:%d needs a key and a rate within MinTickRate..MaxTickRate (%d..%d)",
				p.Key, p.Value, p.Rate, c.MinTickRate, c.MaxTickRate)
		}
	}
	if c.LockstepTolerance < 0 || c.LockstepMaxTolerance < 0 || c.LockstepTolerance > c.LockstepMaxTolerance {
		return invalid("LockstepTolerance (%v) must be within 0..LockstepMaxTolerance (%v)", c.LockstepTolerance, c.LockstepMaxTolerance)
	}
	if c.KeepAliveInterval < 0 {
		return invalid("KeepAliveInterval (%v) must not be negative", c.KeepAliveInterval)
	}
	if c.KeepAliveInterval > 0 && c.KeepAliveInterval < time.Millisecond {
		return invalid("KeepAliveInterval (%v) must be at least 1ms", c.KeepAliveInterval)
	}
	return c, nil
}

// periodOf is the tick period of a rate in Hz (rate > 0).
func periodOf(rate int) time.Duration { return time.Second / time.Duration(rate) }

// presetRate is the rate TickPresets give a room with this metadata, or 0.
func (c *Config) presetRate(metadata map[string]string) int {
	for _, p := range c.TickPresets {
		if v, ok := metadata[p.Key]; ok && v == p.Value {
			return p.Rate
		}
	}
	return 0
}
