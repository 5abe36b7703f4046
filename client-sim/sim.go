package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tickrelay/tickrelay/client-sim/chaos"
	"github.com/tickrelay/tickrelay/client-sim/report"
)

// Connect concurrency: dials in flight at once. Enough to reach thousands of
// connections per second on loopback, few enough not to overflow the
// server's accept backlog into SYN retransmits (1 s stalls).
const maxDialsInFlight = 256

// histShards is the number of latency histograms receivers are spread over.
const histShards = 16

// sim is one running simulation.
type sim struct {
	cfg     Config
	runID   string
	clients []*simClient
	hists   []*histShard
	senders []*sendShard
	errors  errorCounts

	// The measured window, as wall-clock UnixNano: a delivery counts when
	// the send time in its payload is inside [winStart, winEnd). Atomic
	// because reader goroutines read them while the coordinator sets them.
	winStart atomic.Int64
	winEnd   atomic.Int64

	connected atomic.Int64
	stopping  atomic.Bool // client-sim is closing the connections itself
	phase     atomic.Pointer[string]

	// roomCapacity is the max_players honest clients create their rooms
	// with: room-size, plus seats for the chaos clients that join honest
	// rooms.
	roomCapacity int
	swarm        *chaos.Swarm // nil without -chaos

	// urls are the servers the clients connect to (through the fault
	// proxies, with -fault-cut-fraction): client n to urls[n mod len].
	urls   []string
	faults *faults // nil without -fault-cut-fraction

	// With -resume: connections the sessions lost, and how long each took
	// to be back.
	disconnects atomic.Uint64
	resumeMu    sync.Mutex
	resumeHist  *hdrhistogram.Histogram // guarded by resumeMu
}

// url is the server client n connects to.
func (s *sim) url(n int) string { return s.urls[n%len(s.urls)] }

// recordResume records the time from a lost connection to the seat back.
func (s *sim) recordResume(d time.Duration) {
	s.resumeMu.Lock()
	_ = s.resumeHist.RecordValue(clampUs(d.Microseconds()))
	s.resumeMu.Unlock()
}

func newSim(cfg Config) (*sim, error) {
	s := &sim{cfg: cfg, runID: cfg.RunID, resumeHist: newHist()}
	urls, err := cfg.urls()
	if err != nil {
		return nil, err
	}
	s.urls = urls
	if s.runID == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("run id: %w", err)
		}
		s.runID = hex.EncodeToString(b[:])
	}
	for range histShards {
		s.hists = append(s.hists, &histShard{hist: newHist()})
	}
	s.clients = make([]*simClient, cfg.Clients)
	for i := range s.clients {
		s.clients[i] = &simClient{idx: i, room: i / cfg.RoomSize, sim: s, shard: s.hists[i%histShards]}
	}
	rooms := (cfg.Clients + cfg.RoomSize - 1) / cfg.RoomSize
	s.roomCapacity = cfg.RoomSize
	if cfg.Chaos > 0 {
		personas, err := chaos.ParsePersonas(cfg.ChaosPersonas)
		if err != nil {
			return nil, err
		}
		s.roomCapacity += chaos.ExtraSeats(cfg.Chaos, personas, rooms)
		ids := make([]string, rooms)
		for i := range ids {
			ids[i] = s.roomID(i)
		}
		locals, err := cfg.localAddrs()
		if err != nil {
			return nil, err
		}
		var addrs []net.Addr
		for _, l := range locals {
			addrs = append(addrs, l)
		}
		s.swarm, err = chaos.New(chaos.Config{
			URL: urls[0], Clients: cfg.Chaos, Personas: personas, Rooms: ids, RunID: s.runID, LocalAddrs: addrs,
			RoomOptions: chaos.RoomOptions{MaxPlayers: uint32(s.roomCapacity), TickRate: uint32(cfg.TickRate), Immediate: cfg.Immediate},
		})
		if err != nil {
			return nil, err
		}
	}
	n := cfg.Shards
	if n <= 0 {
		n = 2 * runtime.GOMAXPROCS(0)
	}
	for range n {
		s.senders = append(s.senders, newSendShard(cfg.Payload, cfg.Protocol == report.ProtocolCentrifugo))
	}
	// Until the send phase starts nothing is measured.
	s.winStart.Store(1<<63 - 1)
	s.winEnd.Store(1<<63 - 1)
	s.setPhase("connect")
	return s, nil
}

func (s *sim) setPhase(p string) { s.phase.Store(&p) }

func (s *sim) logf(format string, args ...any) {
	if s.cfg.Progress != nil {
		fmt.Fprintf(s.cfg.Progress, format+"\n", args...)
	}
}

// run executes one simulation: connect and join every client (paced by
// Ramp), send for Warmup+Duration, wait for in-flight deliveries, close
// everything and report. The connections are closed before it returns,
// whatever happens.
func run(ctx context.Context, cfg Config) (result, error) {
	if err := cfg.validate(); err != nil {
		return result{}, fmt.Errorf("config: %w", err)
	}
	if limit, err := raiseOpenFileLimit(); err == nil && uint64(cfg.Clients+cfg.Chaos*chaos.MaxConnsPerClient)+64 > limit {
		return result{}, fmt.Errorf("%d clients and %d chaos clients need more than the open-file limit %d allows: run several client-sim processes", cfg.Clients, cfg.Chaos, limit)
	}
	locals, err := cfg.localAddrs()
	if err != nil {
		return result{}, fmt.Errorf("config: %w", err)
	}
	s, err := newSim(cfg)
	if err != nil {
		return result{}, err
	}
	if cfg.FaultCutFraction > 0 {
		// The clients connect through the proxies from the start, so that
		// any of their connections can be cut.
		f, err := startFaults(s.urls)
		if err != nil {
			return result{}, err
		}
		defer f.Close()
		s.faults, s.urls = f, f.urls
	}
	pids, err := cfg.serverPIDs() // validated with the config
	if err != nil {
		return result{}, err
	}
	srv := newServerProbe(pids...)
	broker := newServerProbe(cfg.BrokerPID)
	srv.sampleRSS(&srv.rssBefore)
	broker.sampleRSS(&broker.rssBefore)

	stopProgress := s.startProgress()
	defer stopProgress()
	defer s.closeAll()

	// Connect phase.
	connectStart := time.Now()
	s.logf("client-sim %s: connecting %d clients to %s (rooms of %d, ramp %g/s)", s.runID, cfg.Clients, cfg.URL, cfg.RoomSize, cfg.Ramp)
	if s.faults != nil {
		s.logf("client-sim %s: through fault proxies %s: %g of the connections cut every %s", s.runID, strings.Join(s.urls, ","), cfg.FaultCutFraction, cfg.FaultCutEvery)
	}
	if err := s.connectAll(ctx, locals); err != nil {
		return result{}, err
	}
	connectDur := time.Since(connectStart)
	members := make([]int, (cfg.Clients+cfg.RoomSize-1)/cfg.RoomSize)
	for _, c := range s.clients {
		if c.joined {
			members[c.room]++
		}
	}
	s.logf("client-sim %s: %d/%d joined in %.1fs", s.runID, s.connected.Load(), cfg.Clients, connectDur.Seconds())
	srv.sampleRSS(&srv.rssJoined)
	broker.sampleRSS(&broker.rssJoined)
	clientRSSJoined := selfRSS()

	// Send phase: warm-up, then the measured window.
	start := time.Now()
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)
	s.winStart.Store(winStart.UnixNano())
	s.winEnd.Store(winEnd.UnixNano())
	s.setPhase("warmup")
	var sendWG sync.WaitGroup
	if cfg.Rate > 0 {
		s.startSenders(ctx, &sendWG, start, int64(cfg.Warmup+cfg.Duration))
	}
	if s.faults != nil {
		fctx, stopFaults := context.WithDeadline(ctx, winEnd)
		defer stopFaults()
		go s.faults.run(fctx, cfg.FaultCutFraction, cfg.FaultCutEvery)
	}
	if s.swarm != nil {
		// Beside the honest load from its first send to the end of the
		// window: the warm-up lets the attacks reach their stride.
		s.logf("client-sim %s: %d chaos clients (%s)", s.runID, cfg.Chaos, strings.Join(s.chaosPersonas(), ","))
		s.swarm.Start(ctx)
		defer s.swarm.Stop()
	}

	if err := sleepUntil(ctx, winStart); err != nil {
		sendWG.Wait()
		return result{}, err
	}
	s.setPhase("measure")
	cpu0 := selfCPU()
	srv.sampleCPU(&srv.cpuStart)
	broker.sampleCPU(&broker.cpuStart)
	if h := cfg.hooks.midWindow; h != nil {
		if err := sleepUntil(ctx, winStart.Add(cfg.Duration/2)); err != nil {
			sendWG.Wait()
			return result{}, err
		}
		h(s)
	}
	if err := sleepUntil(ctx, winEnd); err != nil {
		sendWG.Wait()
		return result{}, err
	}
	cpu1 := selfCPU()
	srv.sampleCPU(&srv.cpuEnd)
	broker.sampleCPU(&broker.cpuEnd)
	if s.swarm != nil {
		s.swarm.Stop() // connections still attacking count as unfinished
	}
	sendWG.Wait()

	// Drain: deliveries of sends from the end of the window are in flight.
	s.setPhase("drain")
	expected := s.expected(members)
	s.drain(ctx, expected)
	srv.sampleRSS(&srv.rssEnd)
	srv.sampleHWM()
	broker.sampleRSS(&broker.rssEnd)
	broker.sampleHWM()

	rep := s.report(members, reportInputs{
		connect:   connectDur,
		clientCPU: cpu1 - cpu0,
		clientRSS: clientRSSJoined,
		server:    srv,
		broker:    broker,
	})
	// Closing waits for every reader goroutine, after which their counters
	// may be read. Our own closes are not counted as disconnects.
	s.closeAll()
	rep.Errors = s.errors.snapshot()
	rep.finishReceiverStats(s)
	rep.finishResumeStats(s)
	if s.swarm != nil {
		rep.Chaos = s.swarm.Report()
	}
	return rep, nil
}

// chaosPersonas are the personas the chaos clients play.
func (s *sim) chaosPersonas() []string {
	ps, _ := chaos.ParsePersonas(s.cfg.ChaosPersonas)
	if len(ps) == 0 {
		return chaos.Names()
	}
	return ps
}

// connectAll dials and joins every client, Ramp per second, at most
// maxDialsInFlight at once, and returns when every attempt has finished.
func (s *sim) connectAll(ctx context.Context, locals []*net.TCPAddr) error {
	sem := make(chan struct{}, maxDialsInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := time.Now()
	for i, c := range s.clients {
		if s.cfg.Ramp > 0 {
			at := start.Add(time.Duration(float64(i) / s.cfg.Ramp * float64(time.Second)))
			if err := sleepUntil(ctx, at); err != nil {
				return err
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		var local net.Addr
		if len(locals) > 0 {
			local = locals[i%len(locals)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.connect(ctx, local)
		}()
	}
	return nil
}

// startSenders spreads the joined clients over the send shards and starts
// them; they stop by themselves at end (ns after start).
func (s *sim) startSenders(ctx context.Context, wg *sync.WaitGroup, start time.Time, end int64) {
	n := len(s.senders)
	period := int64(float64(time.Second) / s.cfg.Rate)
	k := 0
	for _, c := range s.clients {
		if c.joined {
			s.senders[k%n].add(c, period)
			k++
		}
	}
	for _, sh := range s.senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sh.run(ctx, s, start, period, end)
		}()
	}
}

// expected is the number of deliveries the measured window should produce:
// every measured send of a member, once to each other member of its room.
// Only valid once the senders have stopped.
func (s *sim) expected(members []int) uint64 {
	var n uint64
	for _, c := range s.clients {
		if c.joined {
			n += c.sentMeasured * uint64(members[c.room]-1)
		}
	}
	return n
}

func (s *sim) delivered() uint64 {
	var n uint64
	for _, c := range s.clients {
		n += c.delivered.Load()
	}
	return n
}

// drain waits for late deliveries: until everything expected has arrived,
// nothing arrived for a second, or Drain has passed.
func (s *sim) drain(ctx context.Context, expected uint64) {
	deadline := time.Now().Add(s.cfg.Drain)
	last, lastChange := s.delivered(), time.Now()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		got := s.delivered()
		if got >= expected || time.Now().After(deadline) || time.Since(lastChange) > time.Second {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// closeAll closes every connection, a few at a time (Close waits for the
// server's answer). Safe to call twice.
func (s *sim) closeAll() {
	s.stopping.Store(true)
	s.setPhase("close")
	work := make(chan *simClient)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				switch {
				case c.cf != nil:
					_ = c.cf.Close()
				case c.sess != nil:
					_ = c.sess.Close()
				default:
					_ = c.c.Close()
				}
			}
		}()
	}
	for _, c := range s.clients {
		if c.c != nil || c.cf != nil || c.sess != nil {
			work <- c
		}
	}
	close(work)
	wg.Wait()
}

// startProgress prints one line per second until the returned func is
// called.
func (s *sim) startProgress() (stop func()) {
	if s.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		start := time.Now()
		var lastSent, lastRecv uint64
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var sent, recv uint64
			for _, sh := range s.senders {
				sent += sh.sent.Load()
			}
			for _, c := range s.clients {
				recv += c.received.Load()
			}
			p99 := float64(mergeShards(s.hists).ValueAtQuantile(99)) / 1000
			chaosPart := ""
			if s.swarm != nil {
				n, bad := s.swarm.Connections()
				chaosPart = fmt.Sprintf("  chaos %d conns %d undocumented", n, bad)
			}
			fmt.Fprintf(s.cfg.Progress, "[%4.0fs] %-7s connected %d/%d  sends/s %d  deliveries/s %d  p99 %.2fms  errors %d%s\n",
				time.Since(start).Seconds(), *s.phase.Load(), s.connected.Load(), s.cfg.Clients,
				sent-lastSent, recv-lastRecv, p99, s.errors.total(), chaosPart)
			lastSent, lastRecv = sent, recv
		}
	}()
	return func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-finished
	}
}

// sleepUntil waits until t or until ctx is done.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
