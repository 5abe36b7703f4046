package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tickrelay/tickrelay/client-sim/chaos"
	"github.com/tickrelay/tickrelay/client-sim/report"
)

// Config is one simulation. Flags and scenario files set the same fields
// under the same names (the yaml tags are the flag names).
type Config struct {
	// Protocol is the wire protocol: report.ProtocolTickrelay (the relay,
	// the reference relay and the baseline) or report.ProtocolCentrifugo
	// (a Centrifugo server: each room is a channel).
	Protocol string `yaml:"protocol"`
	// URL is the server's WebSocket URL, or a comma-separated list of them
	// (the nodes of a cluster): client n connects to URL n mod len.
	URL        string        `yaml:"url"`
	Clients    int           `yaml:"clients"`
	RoomSize   int           `yaml:"room-size"`
	Rate       float64       `yaml:"rate"`    // messages per second per client; 0: idle
	Payload    int           `yaml:"payload"` // bytes, at least 16
	Duration   time.Duration `yaml:"duration"`
	Warmup     time.Duration `yaml:"warmup"`
	Ramp       float64       `yaml:"ramp"`        // connections per second; 0: as fast as possible
	LocalAddrs string        `yaml:"local-addrs"` // comma-separated source IPs, used round-robin
	TickRate   int           `yaml:"tick-rate"`   // room option; 0: server default
	Immediate  bool          `yaml:"immediate"`   // room option
	JSON       string        `yaml:"json"`        // report file; "-" for stdout
	Plot       string        `yaml:"plot"`        // latency plot file (.svg, .png, .pdf)
	MaxLoss    float64       `yaml:"max-loss"`    // fail when loss_ratio exceeds it; negative: never
	Drain      time.Duration `yaml:"drain"`       // longest wait for late deliveries after the window
	RunID      string        `yaml:"run-id"`      // room ids are sim-<run-id>-<n>; empty: random
	KeepAlive  time.Duration `yaml:"keepalive"`   // client WebSocket ping interval; 0: off
	// AckInterval is how soon a client acknowledges the frames it got
	// (client.Options.AckInterval: on its Sends, alone when idle), as the
	// protocol asks and the SDKs' sessions do; 0: never, which leaves the
	// relay holding every frame for a resume.
	AckInterval time.Duration `yaml:"ack-interval"`
	ServerPID   int           `yaml:"server-pid"` // sample this process's CPU and memory; 0: off
	// ServerPIDs are more server processes (comma-separated: the other
	// nodes of a cluster) whose CPU and memory are added to -server-pid's.
	ServerPIDs string `yaml:"server-pids"`
	// BrokerPID is a process the servers need beside them (a cluster's
	// NATS server), sampled like the server and reported on its own.
	BrokerPID  int    `yaml:"broker-pid"`
	Shards     int    `yaml:"shards"`     // send scheduler goroutines; 0: 2 x GOMAXPROCS
	CPUProfile string `yaml:"cpuprofile"` // write a CPU profile of the whole run here
	// Chaos is the number of chaos clients beside the honest ones (package
	// chaos): bad clients whose answers from the server are checked against
	// the documented ones. 0: none.
	Chaos int `yaml:"chaos"`
	// ChaosPersonas are given to the chaos clients round-robin
	// (comma-separated names of chaos.Personas); empty: all of them.
	ChaosPersonas string `yaml:"chaos-personas"`
	// Resume makes every client a client.Session: a lost connection is
	// reconnected and the seat resumed (frames replayed, sends re-sent).
	Resume bool `yaml:"resume"`
	// FaultCutFraction, with FaultCutEvery, puts a TCP proxy between the
	// clients and the server that resets that fraction of the connections
	// through it every FaultCutEvery, from the first send to the end of
	// the window. 0: no proxy.
	FaultCutFraction float64       `yaml:"fault-cut-fraction"`
	FaultCutEvery    time.Duration `yaml:"fault-cut-every"`
	// Mode is modeRelay (Sends at Rate) or modeLockstep (LOCKSTEP rooms:
	// one Input per tick, see lockstep.go). InputDelay is the lockstep
	// clients' initial input delay in ticks (it adapts).
	Mode       string `yaml:"mode"`
	InputDelay int    `yaml:"input-delay"`

	// Progress receives the per-second progress line and the connect log.
	// Nil means none.
	Progress io.Writer `yaml:"-"`

	// hooks let tests act on a running simulation.
	hooks hooks
}

type hooks struct {
	// midWindow runs once in the middle of the measured window.
	midWindow func(s *sim)
}

func defaultConfig() Config {
	return Config{
		Protocol:    report.ProtocolTickrelay,
		URL:         "ws://127.0.0.1:7600/ws",
		Clients:     100,
		RoomSize:    8,
		Rate:        20,
		Payload:     64,
		Duration:    30 * time.Second,
		Warmup:      5 * time.Second,
		Ramp:        1000,
		MaxLoss:     -1,
		Drain:       5 * time.Second,
		AckInterval: 250 * time.Millisecond,
		Mode:        modeRelay,
		InputDelay:  2,
	}
}

// bindFlags declares every flag of Config on fs, with cfg's values as
// defaults.
func bindFlags(fs *flag.FlagSet, cfg *Config) {
	fs.StringVar(&cfg.Protocol, "protocol", cfg.Protocol, "wire protocol: tickrelay (the relay, reference relay, baseline) or centrifugo (each room a channel of a Centrifugo server)")
	fs.StringVar(&cfg.URL, "url", cfg.URL, "server WebSocket URL (Centrifugo: ws://HOST:PORT/connection/websocket); a comma-separated list (a cluster's nodes) spreads the clients over them round-robin")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "number of clients")
	fs.IntVar(&cfg.RoomSize, "room-size", cfg.RoomSize, "clients per room")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "messages per second per client (0: idle)")
	fs.IntVar(&cfg.Payload, "payload", cfg.Payload, "payload bytes (>= 16: send time and sequence number)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measured window")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "sending before the measured window")
	fs.Float64Var(&cfg.Ramp, "ramp", cfg.Ramp, "connections per second (0: as fast as possible)")
	fs.StringVar(&cfg.LocalAddrs, "local-addrs", cfg.LocalAddrs, "comma-separated loopback source IPs, used round-robin (e.g. 127.0.0.1,127.0.0.2)")
	fs.IntVar(&cfg.TickRate, "tick-rate", cfg.TickRate, "room tick rate asked for on create (0: server default)")
	fs.BoolVar(&cfg.Immediate, "immediate", cfg.Immediate, "ask for immediate rooms (no tick batching)")
	fs.StringVar(&cfg.JSON, "json", cfg.JSON, "write the JSON report to this file (- for stdout)")
	fs.StringVar(&cfg.Plot, "plot", cfg.Plot, "write the latency distribution plot to this file (.svg, .png or .pdf)")
	fs.Float64Var(&cfg.MaxLoss, "max-loss", cfg.MaxLoss, "exit with status 3 when the loss ratio exceeds this (negative: never)")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "longest wait for in-flight deliveries after the window")
	fs.StringVar(&cfg.RunID, "run-id", cfg.RunID, "run id in room names sim-<run-id>-<n> (default random)")
	fs.DurationVar(&cfg.KeepAlive, "keepalive", cfg.KeepAlive, "client keep-alive ping interval (0: off; the relay pings idle clients)")
	fs.DurationVar(&cfg.AckInterval, "ack-interval", cfg.AckInterval, "clients acknowledge frames within this long, alone when idle, as the SDK sessions do (0: never)")
	fs.IntVar(&cfg.ServerPID, "server-pid", cfg.ServerPID, "also report CPU and memory of this server process (Linux /proc)")
	fs.StringVar(&cfg.ServerPIDs, "server-pids", cfg.ServerPIDs, "comma-separated more server processes (a cluster's other nodes) whose CPU and memory are added to -server-pid's")
	fs.IntVar(&cfg.BrokerPID, "broker-pid", cfg.BrokerPID, "also report CPU and memory of this process the servers use (a cluster's NATS server), separately from the server's")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "send scheduler goroutines (0: 2 x GOMAXPROCS)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", cfg.CPUProfile, "write a CPU profile of client-sim to this file")
	fs.StringVar(&cfg.Mode, "mode", cfg.Mode, "relay (Sends at -rate) or lockstep (LOCKSTEP rooms: one Input per tick; reports InputSet lateness, input delay and lead)")
	fs.IntVar(&cfg.InputDelay, "input-delay", cfg.InputDelay, "lockstep: initial input delay in ticks (it adapts to the relay's lead figures)")
	fs.IntVar(&cfg.Chaos, "chaos", cfg.Chaos, "chaos clients beside the honest ones: bad clients whose answers are checked against docs/PROTOCOL.md (0: none)")
	fs.BoolVar(&cfg.Resume, "resume", cfg.Resume, "clients resume their seat after a lost connection (client.Session: reconnect with backoff, replayed frames, re-sent sends)")
	fs.Float64Var(&cfg.FaultCutFraction, "fault-cut-fraction", cfg.FaultCutFraction, "put a TCP proxy in front of the server that resets this fraction of the connections every -fault-cut-every (0: no proxy)")
	fs.DurationVar(&cfg.FaultCutEvery, "fault-cut-every", cfg.FaultCutEvery, "interval of the fault proxy's cuts (e.g. 1s)")
	fs.StringVar(&cfg.ChaosPersonas, "chaos-personas", cfg.ChaosPersonas, "comma-separated chaos personas, given to the chaos clients round-robin (default all: "+strings.Join(chaos.Names(), ",")+")")
}

// parseArgs builds the Config of a command line: defaults, then the
// -scenario file, then the flags given explicitly (which win over the file).
func parseArgs(args []string, stderr io.Writer) (Config, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("client-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenario := fs.String("scenario", "", "YAML file with the same keys as the flags (flags given explicitly win)")
	bindFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *scenario != "" {
		set := map[string]string{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
		if err := loadScenario(*scenario, &cfg); err != nil {
			return cfg, err
		}
		for name, v := range set {
			if err := fs.Set(name, v); err != nil {
				return cfg, fmt.Errorf("flag -%s: %w", name, err)
			}
		}
	}
	return cfg, cfg.validate()
}

func loadScenario(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("scenario: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true) // a misspelt key is an error, not a silent default
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("scenario %s: %w", path, err)
	}
	return nil
}

func (c *Config) validate() error {
	var errs []error
	switch c.Protocol {
	case report.ProtocolTickrelay:
	case report.ProtocolCentrifugo:
		if c.Payload < centrifugoPayloadHeader {
			errs = append(errs, fmt.Errorf("payload must be at least %d bytes with -protocol centrifugo (the sender's number follows the timestamp and sequence number; got %d)", centrifugoPayloadHeader, c.Payload))
		}
		if c.Immediate || c.TickRate != 0 {
			errs = append(errs, errors.New("tick-rate and immediate are tickrelay room options; Centrifugo has no ticks"))
		}
	default:
		errs = append(errs, fmt.Errorf("protocol must be %s or %s (got %q)", report.ProtocolTickrelay, report.ProtocolCentrifugo, c.Protocol))
	}
	if c.Clients < 1 {
		errs = append(errs, fmt.Errorf("clients must be at least 1 (got %d)", c.Clients))
	}
	if c.RoomSize < 1 {
		errs = append(errs, fmt.Errorf("room-size must be at least 1 (got %d)", c.RoomSize))
	}
	if c.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate must not be negative (got %g)", c.Rate))
	}
	if c.Payload < payloadHeader {
		errs = append(errs, fmt.Errorf("payload must be at least %d bytes (got %d)", payloadHeader, c.Payload))
	}
	if c.Duration <= 0 {
		errs = append(errs, fmt.Errorf("duration must be positive (got %s)", c.Duration))
	}
	if c.Warmup < 0 || c.Drain < 0 || c.KeepAlive < 0 || c.AckInterval < 0 {
		errs = append(errs, errors.New("warmup, drain, keepalive and ack-interval must not be negative"))
	}
	if c.Ramp < 0 {
		errs = append(errs, fmt.Errorf("ramp must not be negative (got %g)", c.Ramp))
	}
	if c.TickRate < 0 {
		errs = append(errs, fmt.Errorf("tick-rate must not be negative (got %d)", c.TickRate))
	}
	if _, err := c.localAddrs(); err != nil {
		errs = append(errs, err)
	}
	if c.Chaos < 0 {
		errs = append(errs, fmt.Errorf("chaos must not be negative (got %d)", c.Chaos))
	}
	if _, err := chaos.ParsePersonas(c.ChaosPersonas); err != nil {
		errs = append(errs, err)
	}
	if c.Chaos > 0 && c.Protocol != report.ProtocolTickrelay {
		errs = append(errs, fmt.Errorf("chaos clients speak the tickrelay protocol only (got -protocol %s)", c.Protocol))
	}
	urls, err := c.urls()
	if err != nil {
		errs = append(errs, err)
	}
	if more, err := c.serverPIDs(); err != nil {
		errs = append(errs, err)
	} else if len(more) > 1 && more[0] == 0 {
		errs = append(errs, errors.New("server-pids needs server-pid"))
	}
	if c.BrokerPID < 0 {
		errs = append(errs, fmt.Errorf("broker-pid must not be negative (got %d)", c.BrokerPID))
	}
	if c.FaultCutFraction < 0 || c.FaultCutFraction > 1 {
		errs = append(errs, fmt.Errorf("fault-cut-fraction must be within 0-1 (got %g)", c.FaultCutFraction))
	}
	if c.FaultCutFraction > 0 {
		if c.FaultCutEvery <= 0 {
			errs = append(errs, errors.New("fault-cut-fraction needs a positive fault-cut-every"))
		}
		for _, u := range urls {
			if !strings.HasPrefix(u, "ws://") {
				errs = append(errs, fmt.Errorf("the fault proxy forwards plain TCP: ws:// URLs only (got %q)", u))
			}
		}
	}
	if c.Resume && c.Protocol != report.ProtocolTickrelay {
		errs = append(errs, fmt.Errorf("resume is the tickrelay protocol's (got -protocol %s)", c.Protocol))
	}
	switch c.Mode {
	case modeRelay:
	case modeLockstep:
		if c.Protocol != report.ProtocolTickrelay || c.Immediate || c.Chaos > 0 || c.Resume {
			errs = append(errs, errors.New("mode lockstep needs -protocol tickrelay, and no -immediate, -chaos or -resume"))
		}
		if c.InputDelay < 1 {
			errs = append(errs, fmt.Errorf("input-delay must be at least 1 tick (got %d)", c.InputDelay))
		}
	default:
		errs = append(errs, fmt.Errorf("mode must be %s or %s (got %q)", modeRelay, modeLockstep, c.Mode))
	}
	if c.RunID != "" && !validRunID(c.RunID) {
		errs = append(errs, fmt.Errorf("run-id must be 1-40 bytes of [A-Za-z0-9_.:-] (got %q)", c.RunID))
	}
	return errors.Join(errs...)
}

// urls splits URL into the servers' URLs.
func (c *Config) urls() ([]string, error) {
	var out []string
	for _, u := range strings.Split(c.URL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("url: no server URL")
	}
	return out, nil
}

// localAddrs parses LocalAddrs; nil means "let the kernel choose".
func (c *Config) localAddrs() ([]*net.TCPAddr, error) {
	if strings.TrimSpace(c.LocalAddrs) == "" {
		return nil, nil
	}
	var out []*net.TCPAddr
	for _, s := range strings.Split(c.LocalAddrs, ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, fmt.Errorf("local-addrs: %q is not an IP address", s)
		}
		out = append(out, &net.TCPAddr{IP: ip})
	}
	return out, nil
}

// validRunID keeps room ids sim-<run-id>-<n> within the protocol's 64 bytes
// of [A-Za-z0-9_.:-].
func validRunID(s string) bool {
	if len(s) == 0 || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '_' || ch == '.' || ch == ':' || ch == '-'
		if !ok {
			return false
		}
	}
	return true
}

// serverPIDs is -server-pid followed by -server-pids: the processes whose
// CPU and memory add up to the server's figures.
func (c *Config) serverPIDs() ([]int, error) {
	pids := []int{c.ServerPID}
	for f := range strings.SplitSeq(c.ServerPIDs, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("server-pids: %q is not a process id", f)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}
