package main

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tickrelay/tickrelay/client"
	"github.com/tickrelay/tickrelay/client-sim/report"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Modes of client-sim (-mode).
const (
	modeRelay    = "relay"
	modeLockstep = "lockstep"
)

// With -mode lockstep every client joins a LOCKSTEP room and, on each
// InputSet of a tick T that includes it, sends its input for T + d, where
// d is its input delay in ticks. d adapts as a game would: one tick more
// when an input comes back INPUT_TOO_LATE or the lead the relay reports
// falls under a quarter of a tick, one less when the lead stayed above one
// and a half ticks for a second. Every receiver measures, for the InputSets
// that arrive inside the measured window:
//   - lateness: how much later than the earliest one it saw (per tick,
//     warm-up included) an InputSet arrived, i.e. the jitter of the relay's
//     tick plus the network's;
//   - input delay: from sending its input for T to receiving InputSet T
//     (the report's latency distribution), and d itself;
//   - the lead the relay reported, its own flags, and INPUT_TOO_LATE.

// lsShard holds the lockstep histograms of a shard of receivers.
type lsShard struct {
	mu       sync.Mutex
	lateness *hdrhistogram.Histogram // µs; guarded by mu
	lead     *hdrhistogram.Histogram // µs, positive leads only
	delay    *hdrhistogram.Histogram // input delay in ticks, sampled per InputSet
}

func newLsShard() *lsShard {
	return &lsShard{lateness: newHist(), lead: newHist(), delay: hdrhistogram.New(0, 4096, 3)}
}

// lsClient is one client's lockstep state, owned by its reader goroutine.
type lsClient struct {
	period   int64 // ns
	delay    uint64
	maxDelay uint64
	payload  []byte
	// sentAt[t % len] is when the input for tick t left (sentTick names t).
	sentAt    [1024]int64
	sentTick  [1024]uint64
	minOffset int64 // earliest arrival - tick*period seen
	haveMin   bool
	goodSince uint64 // tick since which the lead stayed high
	sentUpTo  uint64 // highest tick an input was sent for

	// Counters, read after the reader goroutine ended.
	sets                                 uint64
	client, repeated, replaced, notThere uint64
	late                                 uint64
}

func (sc *simClient) lockstepOptions() client.Options {
	return client.Options{
		OnInputSet: sc.onInputSet,
		OnClose:    sc.onClose,
		OnError:    sc.onLockstepError,
		OnLeft:     sc.onLeft,
	}
}

// startLockstep prepares the client's lockstep state after its Joined and
// sends the inputs of its first delay ticks.
func (sc *simClient) startLockstep(c *client.Client, j *client.Joined) {
	cfg := sc.sim.cfg
	ls := &lsClient{
		period:   int64(time.Second) / int64(max(j.TickRate, 1)),
		delay:    uint64(cfg.InputDelay),
		maxDelay: 30,
		payload:  make([]byte, cfg.Payload),
	}
	if j.Lockstep != nil && j.Lockstep.MaxLeadTicks > 0 {
		ls.maxDelay = uint64(j.Lockstep.MaxLeadTicks) - 1
	}
	sc.lsMu.Lock()
	sc.c, sc.player, sc.ls = c, j.PlayerID, ls
	for t := j.Tick + 1; t <= j.Tick+ls.delay; t++ {
		sc.sendInput(t)
	}
	sc.lsMu.Unlock()
}

// sendInput sends the input for tick t. sc.lsMu must be held.
func (sc *simClient) sendInput(t uint64) {
	ls := sc.ls
	if t <= ls.sentUpTo || sc.dead.Load() || sc.sim.stopping.Load() {
		return
	}
	ls.sentUpTo = t
	now := time.Now().UnixNano()
	ls.sentAt[t%uint64(len(ls.sentAt))], ls.sentTick[t%uint64(len(ls.sentTick))] = now, t
	if err := sc.c.SendInput(t, ls.payload, client.InputOptions{}); err != nil {
		sc.sim.errors.add("send_input")
	}
}

// onInputSet runs on the reader goroutine for every InputSet.
func (sc *simClient) onInputSet(set *client.InputSet) {
	now := time.Now().UnixNano()
	sc.received.Add(1)
	sc.lsMu.Lock()
	defer sc.lsMu.Unlock()
	ls := sc.ls
	if ls == nil {
		return // catch-up before Join returned: nothing of ours yet
	}
	off := now - int64(set.Tick)*ls.period
	if !ls.haveMin || off < ls.minOffset {
		ls.minOffset, ls.haveMin = off, true
	}
	mine := false
	for _, in := range set.Inputs {
		if in.PlayerID != sc.player {
			continue
		}
		mine = true
		switch in.Flag {
		case client.InputClient:
			ls.client++
		case client.InputRepeated:
			ls.repeated++
		case client.InputReplacedByServer:
			ls.replaced++
		default:
			ls.notThere++
		}
	}
	// Adapt the input delay to the lead.
	if set.HasLead {
		switch lead := set.Lead.Nanoseconds(); {
		case lead < ls.period/4:
			ls.delay = min(ls.delay+1, ls.maxDelay)
			ls.goodSince = set.Tick
		case lead > ls.period*3/2:
			if set.Tick-ls.goodSince > uint64(time.Second/time.Duration(ls.period)) && ls.delay > 1 {
				ls.delay--
				ls.goodSince = set.Tick
			}
		default:
			ls.goodSince = set.Tick
		}
	}
	if mine {
		sc.sendInput(set.Tick + ls.delay)
	}
	ws, we := sc.sim.winStart.Load(), sc.sim.winEnd.Load()
	if now < ws || now >= we {
		return
	}
	ls.sets++
	sc.delivered.Add(1)
	sh := sc.lsShard
	sh.mu.Lock()
	_ = sh.lateness.RecordValue(clampUs((off - ls.minOffset) / 1000))
	_ = sh.delay.RecordValue(int64(ls.delay))
	if set.HasLead && set.Lead > 0 {
		_ = sh.lead.RecordValue(clampUs(set.Lead.Microseconds()))
	}
	sh.mu.Unlock()
	i := set.Tick % uint64(len(ls.sentAt))
	if mine && ls.sentTick[i] == set.Tick {
		sc.shard.mu.Lock()
		_ = sc.shard.hist.RecordValue(clampUs((now - ls.sentAt[i]) / 1000))
		sc.shard.mu.Unlock()
	}
}

func (sc *simClient) onLockstepError(err *client.ServerError) {
	if err.Code == pb.ErrorCode_ERROR_CODE_INPUT_TOO_LATE && err.Reason == "closed" {
		sc.lsMu.Lock()
		if ls := sc.ls; ls != nil {
			ls.late++
			ls.delay = min(ls.delay+1, ls.maxDelay)
		}
		sc.lsMu.Unlock()
		return
	}
	sc.onError(err)
}

// lockstepReport sums the lockstep figures; call after every client closed.
func (s *sim) lockstepReport(serverCPU float64) *report.Lockstep {
	out := &report.Lockstep{Flags: map[string]uint64{}}
	lateness, lead, delay := newHist(), newHist(), hdrhistogram.New(0, 4096, 3)
	for _, sh := range s.lsShards {
		sh.mu.Lock()
		lateness.Merge(sh.lateness)
		lead.Merge(sh.lead)
		delay.Merge(sh.delay)
		sh.mu.Unlock()
	}
	for _, c := range s.clients {
		c.lsMu.Lock()
		if ls := c.ls; ls != nil {
			out.InputSets += ls.sets
			out.LateInputs += ls.late
			out.Flags["client"] += ls.client
			out.Flags["repeated"] += ls.repeated
			out.Flags["replaced_by_server"] += ls.replaced
			out.Flags["not_present"] += ls.notThere
		}
		c.lsMu.Unlock()
	}
	out.InputSetsPerSec = float64(out.InputSets) / s.cfg.Duration.Seconds()
	out.LatenessMs = report.PercentilesOf(lateness)
	out.LeadMs = report.PercentilesOf(lead)
	if lead.TotalCount() > 0 {
		out.LeadP1Ms = float64(lead.ValueAtQuantile(1)) / 1000
	}
	out.InputDelayTicks = report.Percentiles{
		P50: float64(delay.ValueAtQuantile(50)), P90: float64(delay.ValueAtQuantile(90)),
		P99: float64(delay.ValueAtQuantile(99)), P999: float64(delay.ValueAtQuantile(99.9)),
		Max: float64(delay.Max()), Mean: delay.Mean(),
	}
	if out.InputSets > 0 && serverCPU > 0 {
		out.ServerCPUUsPerInputSet = serverCPU * 1e6 / float64(out.InputSets)
	}
	return out
}
