package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// System is one server configuration under test. Every run starts it in a
// fresh process.
type System struct {
	Name       string   // table key: "relay-30hz"
	Desc       string   // for the report
	Kind       string   // kindRelay, kindBaseline, kindReference or kindCentrifugo
	ServerArgs []string // besides -listen (and -admin-listen for the relay)
	SimArgs    []string // client-sim flags this system needs (e.g. -immediate)
	// Admin turns the relay's admin API on (metrics, tick histograms,
	// pprof) and has the harness scrape GET /metrics once a second, as a
	// monitored production relay would be. Off: -admin-listen off.
	Admin bool
	// Nodes > 1 makes a cluster of that many relay processes on one NATS
	// server (issue 14): client-sim gets every node's URL, the server's
	// figures are the sum over the nodes, NATS's are reported apart.
	Nodes int
}

const (
	kindRelay      = "relay"
	kindBaseline   = "baseline"
	kindReference  = "reference"  // bench/reference: the floor of this design, a measuring instrument
	kindCentrifugo = "centrifugo" // Centrifugo v6, built from its module (bench/centrifugo)
	// kindNATS is not a system's kind: the NATS server a cluster system
	// runs beside its relays (bins.missing's key when it is not built).
	kindNATS = "nats"
)

// The systems. relay-30hz is the relay as shipped (30 Hz, admin API on),
// the one every target is about.
var allSystems = []System{
	{Name: "reference-30hz", Desc: "reference relay (bench/reference, a measuring instrument): gnet + gobwas/ws, one write per member per 30 Hz tick, no room logic beyond membership: the floor of this design", Kind: kindReference, ServerArgs: []string{"-tick-rate", "30"}},
	{Name: "centrifugo", Desc: "Centrifugo " + centrifugoVersion + " built from its Go module, bench/centrifugo/config.json: in-memory broker, anonymous connect, client-side publish into the room's channel, history and presence off; client-sim -protocol centrifugo", Kind: kindCentrifugo, SimArgs: []string{"-protocol", "centrifugo"}},
	{Name: "relay-30hz", Desc: "relay, default 30 Hz ticks, admin API on and /metrics scraped every second", Kind: kindRelay, Admin: true},
	{Name: "baseline-imm", Desc: "baseline (net/http + gorilla, 2 goroutines per connection), forwards each message at once", Kind: kindBaseline, ServerArgs: []string{"-tick-rate", "0"}},
	{Name: "baseline-30hz", Desc: "baseline, 30 Hz ticks (a time.Ticker goroutine per room)", Kind: kindBaseline, ServerArgs: []string{"-tick-rate", "30"}},
	{Name: "relay-10hz", Desc: "relay, -tick-rate 10, admin on and scraped", Kind: kindRelay, ServerArgs: []string{"-tick-rate", "10"}, Admin: true},
	{Name: "relay-60hz", Desc: "relay, -tick-rate 60, admin on and scraped", Kind: kindRelay, ServerArgs: []string{"-tick-rate", "60"}, Admin: true},
	{Name: "relay-imm", Desc: "relay, immediate rooms (-allow-immediate; client-sim -immediate), admin on and scraped", Kind: kindRelay, ServerArgs: []string{"-allow-immediate=true"}, SimArgs: []string{"-immediate"}, Admin: true},
	{Name: "relay-30hz-noadmin", Desc: "relay, 30 Hz, -admin-listen off: no metrics, no tick observer (the metrics-cost control)", Kind: kindRelay, ServerArgs: []string{"-admin-listen", "off"}},
	{Name: refCluster, Desc: "3 relay nodes (30 Hz, admin API on and scraped, like relay-30hz) on one nats-server " + natsVersion + " with JetStream (built from its Go module), -cluster-node-id node-1..3; client-sim -url lists the three nodes, clients round-robin, so most players are on an edge that is not their room's owner (one more hop through NATS)", Kind: kindRelay, Admin: true, Nodes: 3},
	{Name: "relay-30hz-nochaos", Desc: "relay-30hz with client-sim -chaos 0: the soak's clean control (the same honest load, no chaos clients)", Kind: kindRelay, SimArgs: []string{"-chaos", "0"}, Admin: true},
}

func systemByName(name string) (System, error) {
	for _, s := range allSystems {
		if s.Name == name {
			return s, nil
		}
	}
	return System{}, fmt.Errorf("unknown system %q", name)
}

// Load is what the harness needs to know of a client-sim scenario: read
// from the scenario file plus the mode's overrides (client-sim itself reads
// the same file and flags, and validates every key).
type Load struct {
	Clients    int
	RoomSize   int
	Rate       float64
	Payload    int
	Warmup     time.Duration
	Duration   time.Duration
	Drain      time.Duration
	Ramp       float64
	LocalAddrs string
	Chaos      int // chaos clients beside the honest ones
}

// set applies one client-sim key; keys the harness does not use are left
// to client-sim.
func (l *Load) set(key, value string) error {
	var err error
	switch key {
	case "clients":
		l.Clients, err = strconv.Atoi(value)
	case "room-size":
		l.RoomSize, err = strconv.Atoi(value)
	case "rate":
		l.Rate, err = strconv.ParseFloat(value, 64)
	case "payload":
		l.Payload, err = strconv.Atoi(value)
	case "warmup":
		l.Warmup, err = time.ParseDuration(value)
	case "duration":
		l.Duration, err = time.ParseDuration(value)
	case "drain":
		l.Drain, err = time.ParseDuration(value)
	case "ramp":
		l.Ramp, err = strconv.ParseFloat(value, 64)
	case "local-addrs":
		l.LocalAddrs = value
	case "chaos":
		l.Chaos, err = strconv.Atoi(value)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// client-sim's defaults for the keys Load holds (client-sim/config.go).
func defaultLoad() Load {
	return Load{Clients: 100, RoomSize: 8, Rate: 20, Payload: 64, Warmup: 5 * time.Second,
		Duration: 30 * time.Second, Drain: 5 * time.Second, Ramp: 1000}
}

// parseLoad reads a client-sim scenario file's contents and applies
// overrides (flag name -> value, as on client-sim's command line).
func parseLoad(b []byte, overrides map[string]string) (Load, error) {
	l := defaultLoad()
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return l, fmt.Errorf("scenario: %w", err)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if err := l.set(k, fmt.Sprint(m[k])); err != nil {
			return l, fmt.Errorf("scenario: %w", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		if err := l.set(k, overrides[k]); err != nil {
			return l, fmt.Errorf("override: %w", err)
		}
	}
	return l, nil
}

// Scenario is one load shape run against several systems.
type Scenario struct {
	ID    string // "s1"
	Title string
	File  string // client-sim scenario file, relative to the repository root
	// Overrides are client-sim flags over the file (quick mode's shorter
	// runs), passed on the command line, where they win.
	Overrides map[string]string
	Systems   []string
	Load      Load // File + Overrides, filled by Plan.load
	// RelayArgs are relay flags for this scenario, given to every relay
	// system's server (quick mode's soak shortens the relay's time limits
	// so that every chaos persona is answered within its short window).
	RelayArgs []string

	// Reach makes this the S4 run: HoldProcs client-sim processes with
	// HoldClients between them, one loopback source address each, then
	// (relay only) one more process trying OverLimit connections past the
	// relay's -max-connections.
	Reach       bool
	HoldProcs   int
	HoldClients int
	OverLimit   int
}

// Plan is everything one harness invocation does.
type Plan struct {
	Mode      string
	Rounds    int
	Scenarios []Scenario
	Settle    time.Duration // pause between runs: sockets, TIME_WAIT and CPU settle

	Micro          bool
	MicroCount     int
	MicroBenchtime string

	Profile        bool
	ProfileSeconds int

	ResultsFile string // the markdown the results go to
	PlotsDir    string
	PlotFormat  string // svg, png or pdf; empty means svg
	OutDir      string // raw reports, logs, profiles, binaries (gitignored)
}

func fullPlan() Plan {
	main3 := []string{"relay-30hz", "baseline-imm", "baseline-30hz"}
	// Side by side in every load scenario: the relay, its floor, Centrifugo
	// and the baselines.
	sideBySide := []string{"relay-30hz", "reference-30hz", "centrifugo", "baseline-imm", "baseline-30hz"}
	return Plan{
		Mode:   "full",
		Rounds: 3,
		Scenarios: []Scenario{
			// relay-10hz and relay-60hz are left to -systems: they answer
			// no target and the full run must stay under ~50 minutes.
			{ID: "s1", Title: "S1 small rooms", File: "bench/scenarios/s1.yaml",
				Systems: append(slices.Clone(sideBySide), "relay-imm", "relay-30hz-noadmin", refCluster)},
			{ID: "s2", Title: "S2 big rooms", File: "bench/scenarios/s2.yaml", Systems: append(slices.Clone(sideBySide), refCluster)},
			{ID: "s3", Title: "S3 idle", File: "bench/scenarios/s3.yaml", Systems: sideBySide},
			{ID: "s4", Title: "S4 reach", File: "bench/scenarios/s4.yaml", Systems: main3,
				Reach: true, HoldProcs: 4, HoldClients: 19000, OverLimit: 300},
			{ID: "s5", Title: "S5 low load", File: "bench/scenarios/s5.yaml",
				Systems: []string{"relay-30hz", "reference-30hz", "centrifugo", "baseline-30hz"}},
			// The relay at its defaults beside 10% chaos clients, and the
			// same honest load without them, in the same rounds.
			{ID: "soak", Title: "Soak: S1 beside chaos clients", File: "bench/scenarios/soak.yaml", Systems: soakPair},
		},
		Settle:         3 * time.Second,
		Micro:          true,
		MicroCount:     5,
		MicroBenchtime: "500ms",
		Profile:        true,
		ProfileSeconds: 15,
		ResultsFile:    "bench/RESULTS.md",
		PlotsDir:       "bench/plots",
		OutDir:         "bench/out/full",
	}
}

func quickPlan() Plan {
	// The relay, its floor and the ticked baseline; Centrifugo (a
	// minutes-long first build) only when asked for with -systems.
	pair := []string{"relay-30hz", "reference-30hz", "baseline-30hz"}
	short := map[string]string{"warmup": "1s", "duration": "5s", "drain": "2s"}
	return Plan{
		Mode:   "quick",
		Rounds: 1,
		Scenarios: []Scenario{
			{ID: "s1", Title: "S1 small rooms", File: "bench/scenarios/s1.yaml", Systems: pair, Overrides: short},
			{ID: "s2", Title: "S2 big rooms", File: "bench/scenarios/s2.yaml", Systems: pair, Overrides: short},
			{ID: "s3", Title: "S3 idle", File: "bench/scenarios/s3.yaml", Systems: pair,
				Overrides: map[string]string{"clients": "2000", "warmup": "2s", "duration": "2s"}},
			// Not run unless asked for with -scenarios (it takes ~30 s a run).
			{ID: "s4", Title: "S4 reach", File: "bench/scenarios/s4.yaml", Systems: []string{"relay-30hz", "baseline-30hz"},
				Overrides: map[string]string{"warmup": "5s", "duration": "8s"},
				Reach:     true, HoldProcs: 4, HoldClients: 19000, OverLimit: 300},
			// Not run unless asked for: at 200 clients a short window says
			// little.
			{ID: "s5", Title: "S5 low load", File: "bench/scenarios/s5.yaml", Systems: pair, Overrides: short},
			// A small soak: 200 honest clients and 20 chaos clients for 6 s,
			// the relay's grace and timeouts shortened (in both runs) so that
			// every persona is answered within it.
			{ID: "soak", Title: "Soak: S1 beside chaos clients", File: "bench/scenarios/soak.yaml", Systems: soakPair,
				Overrides: map[string]string{"clients": "200", "chaos": "20", "warmup": "1s", "duration": "5s", "drain": "2s"},
				RelayArgs: quickSoakRelayArgs},
		},
		Settle:         time.Second,
		MicroCount:     1,
		MicroBenchtime: "200ms",
		ProfileSeconds: 4,
		ResultsFile:    "bench/out/quick.md",
		PlotsDir:       "bench/out/quick-plots",
		OutDir:         "bench/out/quick",
	}
}

// soakPair: the relay beside the chaos clients of the soak's scenario
// file, and its clean control.
var soakPair = []string{refRelay, refNoChaos}

// quickSoakRelayArgs shorten the relay's rate-limit grace, message read
// timeout and handshake timeout (defaults 5 s, 10 s, 5 s) for quick
// mode's 6-second soak. The message read timeout stays at 2 s: shorter,
// a relay bug (its clock runs from the moment the input was last empty,
// and on while the relay holds a congested client's input) closes busy
// bursters with 4004 on a loaded machine.
var quickSoakRelayArgs = []string{"-rate-limit-grace", "1s", "-message-read-timeout", "2s", "-handshake-timeout", "2s"}

// defaultScenarios is what a mode runs when -scenarios is not given.
func defaultScenarios(mode string) []string {
	if mode == "quick" {
		return []string{"s1", "s2", "s3", "soak"}
	}
	return []string{"s1", "s2", "s3", "s4", "s5", "soak"}
}

// filter keeps the scenarios asked for, in the plan's order; a non-empty
// systems list replaces every scenario's systems (so quick mode can also
// run, say, relay-imm).
func (p *Plan) filter(scenarios, systems []string) error {
	var out []Scenario
	for _, id := range scenarios {
		i := slices.IndexFunc(p.Scenarios, func(s Scenario) bool { return s.ID == id })
		if i < 0 {
			return fmt.Errorf("unknown scenario %q", id)
		}
		if !slices.ContainsFunc(out, func(s Scenario) bool { return s.ID == id }) {
			out = append(out, p.Scenarios[i])
		}
	}
	slices.SortStableFunc(out, func(a, b Scenario) int { return strings.Compare(a.ID, b.ID) })
	if len(systems) > 0 {
		for _, name := range systems {
			if _, err := systemByName(name); err != nil {
				return err
			}
		}
		for i := range out {
			out[i].Systems = slices.Clone(systems)
		}
	}
	p.Scenarios = out
	return nil
}

// load reads every scenario file under root.
func (p *Plan) load(root string) error {
	for i := range p.Scenarios {
		sc := &p.Scenarios[i]
		b, err := os.ReadFile(filepath.Join(root, sc.File))
		if err != nil {
			return fmt.Errorf("scenario %s: %w", sc.ID, err)
		}
		if sc.Load, err = parseLoad(b, sc.Overrides); err != nil {
			return fmt.Errorf("scenario %s (%s): %w", sc.ID, sc.File, err)
		}
	}
	return nil
}

// uses says whether any scenario of the plan runs the system.
func (p Plan) uses(system string) bool {
	for _, sc := range p.Scenarios {
		if slices.Contains(sc.Systems, system) {
			return true
		}
	}
	return false
}

// usesCluster says whether any scenario of the plan runs a cluster system
// (and so needs the NATS server).
func (p Plan) usesCluster() bool {
	for _, sc := range p.Scenarios {
		for _, name := range sc.Systems {
			if sys, err := systemByName(name); err == nil && sys.Nodes > 1 {
				return true
			}
		}
	}
	return false
}

// serverArgsFor are the scenario's extra server flags for sys: RelayArgs
// for the relay's systems, none for the others.
func (sc Scenario) serverArgsFor(sys System) []string {
	if sys.Kind != kindRelay {
		return nil
	}
	return sc.RelayArgs
}

// overrideArgs is sc.Overrides as client-sim flags, in a stable order.
func (sc Scenario) overrideArgs() []string {
	var args []string
	for _, k := range slices.Sorted(maps.Keys(sc.Overrides)) {
		args = append(args, "-"+k, sc.Overrides[k])
	}
	return args
}

// Comparison is a ratio reported for a scenario: Num's figure over Den's,
// taken round by round.
type Comparison struct{ Num, Den string }

// comparisons lists, for the systems of a scenario, the relay against its
// floor (the reference relay) and Centrifugo, every relay system against
// every baseline, and the relay with its admin API against the relay
// without (the metrics cost).
func comparisons(systems []string) []Comparison {
	var out []Comparison
	has := func(n string) bool { return slices.Contains(systems, n) }
	for _, d := range []string{refFloor, refCentrifugo} {
		if has(refRelay) && has(d) {
			out = append(out, Comparison{Num: refRelay, Den: d})
		}
	}
	for _, n := range systems {
		if !strings.HasPrefix(n, "relay") || n == refNoAdmin || n == refNoChaos {
			continue
		}
		for _, d := range systems {
			if strings.HasPrefix(d, "baseline") {
				out = append(out, Comparison{Num: n, Den: d})
			}
		}
	}
	if has("relay-30hz") && has("relay-30hz-noadmin") {
		out = append(out, Comparison{Num: "relay-30hz", Den: "relay-30hz-noadmin"})
	}
	if has(refRelay) && has(refNoChaos) {
		out = append(out, Comparison{Num: refRelay, Den: refNoChaos})
	}
	return out
}

// estimate is a rough wall time for the plan, printed at the start.
func (p Plan) estimate() time.Duration {
	var d time.Duration
	for _, sc := range p.Scenarios {
		l := sc.Load
		per := l.Warmup + l.Duration + 2*time.Second + p.Settle
		if l.Ramp > 0 {
			per += time.Duration(float64(l.Clients) / l.Ramp * float64(time.Second))
		}
		if sc.Reach {
			per += 8 * time.Second
		}
		d += time.Duration(p.Rounds*len(sc.Systems)) * per
		if p.Profile && (sc.ID == "s1" || sc.ID == "s2") {
			d += per
		}
	}
	if p.Micro {
		d += time.Duration(p.MicroCount) * 15 * time.Second
	}
	return d
}
