// Package chaos is client-sim's bad clients: connections that attack a
// tickrelay server beside the honest load (client-sim -chaos N) and record
// what the server answered each of them, to check against the documented
// answers of docs/PROTOCOL.md (rate limits, error codes, close codes).
//
// Each chaos client plays one persona (the table Personas) for the whole
// run: it opens a connection, attacks until the server ends it (or the run
// ends), records the outcome, pauses and starts again. The personas speak
// raw TCP and WebSocket frames through gobwas/ws's client-side helpers, not
// the Go SDK, which behaves too well (it reads, answers pings, never sends
// a broken frame).
//
// Chaos payloads sent into honest rooms carry Kind, so that honest
// receivers can leave them out and their figures stay exact.
//
// A Swarm is started once and stopped once; Stop is safe to call from any
// goroutine and returns when every chaos connection is closed.
package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tickrelay/tickrelay/client-sim/report"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Kind marks every payload a chaos client sends into an honest room
// (Send.kind): honest receivers skip deliveries of this kind.
const Kind uint32 = 0xC4A05

// maxCyclesPerClient bounds the connections one chaos client opens in a
// run, whatever its pace (the connection flood counts each of its
// connections).
const maxCyclesPerClient = 100_000

// maxAttack bounds one connection's attack: a relay that has not answered
// within it (far past every documented timeout at its defaults) has failed
// to answer.
const maxAttack = 2 * time.Minute

// RoomOptions are those the honest clients create their rooms with; chaos
// clients joining an honest room ask for the same, so that whoever
// arrives first creates the same room.
type RoomOptions struct {
	MaxPlayers uint32
	TickRate   uint32
	Immediate  bool
}

// Config is a swarm of chaos clients.
type Config struct {
	// URL is the relay's WebSocket endpoint (ws://host:port/ws).
	URL string
	// Clients is the number of chaos clients.
	Clients int
	// Personas are given to the clients round-robin (client i plays
	// Personas[i % len]); empty means every persona of the table, in its
	// order.
	Personas []string
	// Rooms are the honest rooms' ids. The personas that join honest rooms
	// spread over them: the k-th such client joins Rooms[k % len].
	Rooms       []string
	RoomOptions RoomOptions
	// RunID names the rooms of their own (chaos-<run-id>-kinds-<n>).
	RunID string
	// LocalAddrs are source addresses used round-robin; empty means the
	// kernel's choice.
	LocalAddrs []net.Addr
}

// Swarm is a running set of chaos clients.
type Swarm struct {
	cfg    Config
	target target
	slots  []slot
	tally  map[string]*tally
	conns  atomic.Int64
	undoc  atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// slot is one chaos client's assignment.
type slot struct {
	persona *Persona
	home    string // honest room (personas that join one)
	next    string // another honest room (churners move between the two)
	own     string // a room of their own (kind floods, in pairs)
	local   net.Addr
}

// ParsePersonas checks a comma-separated persona list; empty means all.
func ParsePersonas(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if personaByName(f) == nil {
			return nil, fmt.Errorf("chaos: unknown persona %q (known: %s)", f, strings.Join(Names(), ", "))
		}
		out = append(out, f)
	}
	return out, nil
}

// Names lists the personas of the table, in order.
func Names() []string {
	var out []string
	for i := range Personas {
		out = append(out, Personas[i].Name)
	}
	return out
}

func personaByName(name string) *Persona {
	for i := range Personas {
		if Personas[i].Name == name {
			return &Personas[i]
		}
	}
	return nil
}

// personasOf resolves cfg.Personas (empty: all).
func personasOf(names []string) []*Persona {
	if len(names) == 0 {
		names = Names()
	}
	out := make([]*Persona, 0, len(names))
	for _, n := range names {
		if p := personaByName(n); p != nil {
			out = append(out, p)
		}
	}
	return out
}

// ExtraSeats is how many seats each honest room needs beyond its honest
// members for the chaos clients that join honest rooms: their share of
// the rooms, one more for a churner visiting from the neighbouring room,
// and one for a chaos client reconnecting before the relay has let its
// previous seat go.
func ExtraSeats(clients int, personas []string, rooms int) int {
	if clients == 0 || rooms == 0 {
		return 0
	}
	ps := personasOf(personas)
	inRoom, churners := 0, 0
	for i := range clients {
		p := ps[i%len(ps)]
		if p.inRoom {
			inRoom++
		}
		if p.visits {
			churners++
		}
	}
	if inRoom == 0 {
		return 0
	}
	return ceilDiv(inRoom, rooms) + ceilDiv(churners, rooms) + 1
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// New checks cfg and assigns every chaos client its persona and rooms.
func New(cfg Config) (*Swarm, error) {
	t, err := parseTarget(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Clients < 0 {
		return nil, fmt.Errorf("chaos: clients must not be negative (got %d)", cfg.Clients)
	}
	if _, err := ParsePersonas(strings.Join(cfg.Personas, ",")); err != nil {
		return nil, err
	}
	ps := personasOf(cfg.Personas)
	s := &Swarm{cfg: cfg, target: t, tally: map[string]*tally{}}
	counts := map[string]int{}
	inRoom, flooders := 0, 0
	for i := range cfg.Clients {
		p := ps[i%len(ps)]
		sl := slot{persona: p}
		if len(cfg.LocalAddrs) > 0 {
			sl.local = cfg.LocalAddrs[i%len(cfg.LocalAddrs)]
		}
		if p.inRoom {
			if len(cfg.Rooms) == 0 {
				return nil, fmt.Errorf("chaos: persona %s joins honest rooms, and there are none", p.Name)
			}
			sl.home = cfg.Rooms[inRoom%len(cfg.Rooms)]
			sl.next = cfg.Rooms[(inRoom+1)%len(cfg.Rooms)]
			inRoom++
		}
		if p.ownRoom {
			sl.own = fmt.Sprintf("chaos-%s-kinds-%d", cfg.RunID, flooders/2)
			flooders++
		}
		counts[p.Name]++
		s.slots = append(s.slots, sl)
	}
	for _, p := range ps {
		if s.tally[p.Name] == nil {
			s.tally[p.Name] = newTally(p, counts[p.Name])
		}
	}
	return s, nil
}

// Start launches every chaos client. They run until Stop (or ctx ends).
func (s *Swarm) Start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	for i, sl := range s.slots {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			a := &attacker{ctx: ctx, sw: s, slot: sl, idx: i,
				rng: rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
			a.loop()
		}()
	}
}

// Stop ends every chaos client (connections in the middle of their attack
// count as unfinished) and returns once all are closed.
func (s *Swarm) Stop() {
	s.once.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
	})
	s.wg.Wait()
}

// Connections is the number of chaos connections finished so far, and of
// those, how many got an undocumented answer (for a progress line).
func (s *Swarm) Connections() (total, undocumented int64) {
	return s.conns.Load(), s.undoc.Load()
}

// Report is the chaos section of the run's report. Call it after Stop.
func (s *Swarm) Report() *report.Chaos {
	out := &report.Chaos{Clients: len(s.slots)}
	for _, p := range Personas {
		t := s.tally[p.Name]
		if t == nil {
			continue
		}
		r := t.report()
		out.Connections += r.Connections
		out.Personas = append(out.Personas, r)
	}
	out.AllDocumented, _ = out.Verdict()
	return out
}

// attacker is one chaos client: its slot and its goroutine's state.
type attacker struct {
	ctx context.Context
	sw  *Swarm
	slot
	idx   int
	cycle int
	rng   *rand.Rand
	// held counts a connection flood's incomplete requests held open.
	held chan struct{}
}

func (a *attacker) loop() {
	for a.cycle = 0; a.cycle < maxCyclesPerClient && a.ctx.Err() == nil; a.cycle++ {
		a.persona.attack(a)
		a.pause(a.persona.gap)
	}
}

// pause waits d, or until the run ends.
func (a *attacker) pause(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-a.ctx.Done():
	}
}

// stopped says whether the run is over.
func (a *attacker) stopped() bool { return a.ctx.Err() != nil }

// record counts a finished (or stopped) connection.
func (a *attacker) record(c *Conn) {
	undocumented := a.sw.tally[a.persona.Name].add(a.persona, c)
	a.sw.conns.Add(1)
	if undocumented {
		a.sw.undoc.Add(1)
	}
}

// roomOptions are the honest rooms' options, for a Join that may create one.
func (a *attacker) roomOptions() *pb.RoomOptions {
	o := a.sw.cfg.RoomOptions
	return &pb.RoomOptions{MaxPlayers: o.MaxPlayers, TickRate: o.TickRate, Immediate: o.Immediate}
}

// histogram is a distribution of durations in microseconds, in the
// report's histogram shape. Not safe for concurrent use (tally guards it).
type histogram struct{ h *hdrhistogram.Histogram }

func newHistogram() histogram { return histogram{h: report.NewHistogram()} }

func (h histogram) record(d time.Duration) {
	_ = h.h.RecordValue(report.ClampMicros(d.Microseconds()))
}

// MaxConnsPerClient is the most connections one chaos client holds at once
// (a connection flood's wave and its held requests), for descriptor
// budgets.
const MaxConnsPerClient = connFloodWave + connFloodSlowloris
