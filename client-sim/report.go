package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// result is one run's report and the latency distribution behind it (for
// the plot; the report carries it only encoded).
type result struct {
	report.Report
	latency *hdrhistogram.Histogram
}

type reportInputs struct {
	connect   time.Duration
	clientCPU time.Duration
	clientRSS int64
	server    *serverProbe
	broker    *serverProbe // -broker-pid
}

// report gathers the figures that do not need the reader goroutines to have
// stopped (see finishReceiverStats for those that do).
func (s *sim) report(members []int, in reportInputs) result {
	cfg := s.cfg
	r := report.Report{
		Protocol:  cfg.Protocol,
		RunID:     s.runID,
		URL:       cfg.URL,
		Clients:   cfg.Clients,
		Connected: int(s.connected.Load()),
		RoomSize:  cfg.RoomSize,
		Rooms:     len(members),
		Rate:      cfg.Rate,
		Payload:   cfg.Payload,
		TickRate:  cfg.TickRate,
		Immediate: cfg.Immediate,
		WarmupS:   cfg.Warmup.Seconds(),
		DurationS: cfg.Duration.Seconds(),
		ConnectS:  in.connect.Seconds(),
	}
	roomSent := make([]uint64, len(members))
	for _, c := range s.clients {
		r.SentTotal += c.sentTotal
		if c.joined {
			r.Sent += c.sentMeasured
			roomSent[c.room] += c.sentMeasured
		}
	}
	r.Expected = s.expected(members)
	for _, c := range s.clients {
		d := c.delivered.Load()
		r.Delivered += d
		if c.joined && d < roomSent[c.room]-c.sentMeasured {
			r.ReceiversWithLoss++
		}
	}
	if r.Expected > 0 {
		r.LossRatio = max(0, 1-float64(r.Delivered)/float64(r.Expected))
	}
	if r.Delivered < r.Expected {
		r.Lost = r.Expected - r.Delivered
	}
	r.SentPerSec = float64(r.Sent) / r.DurationS
	r.DeliveredPerSec = float64(r.Delivered) / r.DurationS

	latency := mergeShards(s.hists)
	r.LatencyMs = report.PercentilesOf(latency)
	r.LatencyHist = report.EncodeHistogram(latency)
	lag := report.NewHistogram()
	for _, sh := range s.senders {
		lag.Merge(sh.lag)
	}
	r.SendLagMs = report.PercentilesOf(lag)

	r.ClientCPUS = in.clientCPU.Seconds()
	r.ClientCores = r.ClientCPUS / r.DurationS
	r.ClientRSSKiB = in.clientRSS
	r.Server = serverFigures(in.server, r)
	r.Broker = serverFigures(in.broker, r)
	return result{Report: r, latency: latency}
}

// finishReceiverStats adds the counters owned by the reader goroutines;
// only call once every client is closed.
func (r *result) finishReceiverStats(s *sim) {
	for _, c := range s.clients {
		r.Duplicates += c.dups
		r.OutOfOrder += c.outOfOrder
		r.BadPayloads += c.badPayload
	}
}

// finishResumeStats adds the sessions' and the fault proxy's figures; only
// call once every client is closed.
func (r *result) finishResumeStats(s *sim) {
	cfg := s.cfg
	if !cfg.Resume && s.faults == nil {
		return
	}
	rs := &report.Resume{
		Enabled:     cfg.Resume,
		CutFraction: cfg.FaultCutFraction,
		Disconnects: s.disconnects.Load(),
	}
	if s.faults != nil {
		rs.CutEveryS = cfg.FaultCutEvery.Seconds()
		rs.Cuts = s.faults.cuts()
	}
	for _, c := range s.clients {
		if c.sess == nil {
			continue
		}
		st := c.sess.Stats()
		rs.Reconnects += st.Reconnects
		rs.Recovered += st.Recovered
		rs.Resyncs += st.Resyncs
		rs.FramesReplayed += st.FramesReplayed
		rs.InputsResent += st.InputsResent
		rs.InputsLost += st.InputsLost
		if c.sess.Err() != nil {
			rs.SessionsEnded++
		}
	}
	s.resumeMu.Lock()
	rs.ResumeMs = report.PercentilesOf(s.resumeHist)
	s.resumeMu.Unlock()
	r.Resume = rs
}

func writeJSON(r report.Report, path string, stdout io.Writer) error {
	b, err := report.Encode(r)
	if err != nil {
		return fmt.Errorf("json: %w", err)
	}
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	return nil
}

// writeSummary prints the human summary.
func writeSummary(w io.Writer, r report.Report) {
	fmt.Fprintf(w, "client-sim %s: %d clients (%d joined) in %d rooms of %d, %g msg/s, %d B payload, %gs measured after %gs warm-up\n",
		r.RunID, r.Clients, r.Connected, r.Rooms, r.RoomSize, r.Rate, r.Payload, r.DurationS, r.WarmupS)
	fmt.Fprintf(w, "  connect   %.2fs\n", r.ConnectS)
	fmt.Fprintf(w, "  sent      %d (%.0f/s)   expected %d   delivered %d (%.0f/s)\n",
		r.Sent, r.SentPerSec, r.Expected, r.Delivered, r.DeliveredPerSec)
	fmt.Fprintf(w, "  loss      %.4f%% (lost %d)   duplicates %d   out of order %d   receivers with loss %d\n",
		100*r.LossRatio, r.Lost, r.Duplicates, r.OutOfOrder, r.ReceiversWithLoss)
	l := r.LatencyMs
	fmt.Fprintf(w, "  latency   p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	fmt.Fprintf(w, "  client    cpu %.2fs (%.2f cores)  rss %d KiB  send lag p99 %.3fms max %.3fms\n",
		r.ClientCPUS, r.ClientCores, r.ClientRSSKiB, r.SendLagMs.P99, r.SendLagMs.Max)
	if sr := r.Server; sr != nil {
		fmt.Fprintf(w, "  server    cpu %.2fs (%.2f cores, %.2f us/delivery)  rss %d -> %d -> %d KiB, hwm %d KiB, %.1f KiB/conn\n",
			sr.CPUS, sr.Cores, sr.CPUUsPerDelivery, sr.RSSBeforeKiB, sr.RSSAfterJoinKiB, sr.RSSEndKiB, sr.HWMKiB, sr.KiBPerConnection)
	}
	if br := r.Broker; br != nil {
		fmt.Fprintf(w, "  broker    cpu %.2fs (%.2f cores, %.2f us/delivery)  rss %d -> %d -> %d KiB, hwm %d KiB\n",
			br.CPUS, br.Cores, br.CPUUsPerDelivery, br.RSSBeforeKiB, br.RSSAfterJoinKiB, br.RSSEndKiB, br.HWMKiB)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "  errors    none")
	} else {
		fmt.Fprintf(w, "  errors    %s\n", counts(r.Errors))
	}
	if rs := r.Resume; rs != nil {
		mode := "off"
		if rs.Enabled {
			mode = "on"
		}
		fmt.Fprintf(w, "  resume    %s  cuts %d  disconnects %d  reconnects %d (recovered %d, resyncs %d)  replayed %d frames  inputs resent %d lost %d  sessions ended %d\n",
			mode, rs.Cuts, rs.Disconnects, rs.Reconnects, rs.Recovered, rs.Resyncs,
			rs.FramesReplayed, rs.InputsResent, rs.InputsLost, rs.SessionsEnded)
		if rs.Reconnects > 0 {
			fmt.Fprintf(w, "            back after p50 %.1fms  p99 %.1fms  max %.1fms\n", rs.ResumeMs.P50, rs.ResumeMs.P99, rs.ResumeMs.Max)
		}
	}
	writeChaosSummary(w, r.Chaos)
}

// writeChaosSummary prints the chaos section: per persona, its connections
// and what the server answered them.
func writeChaosSummary(w io.Writer, c *report.Chaos) {
	if c == nil {
		return
	}
	ok, problems := c.Verdict()
	verdict := "every finished connection got its documented answer"
	if !ok {
		verdict = "UNDOCUMENTED ANSWERS: " + strings.Join(problems, "; ")
	}
	fmt.Fprintf(w, "  chaos     %d clients, %d connections: %s\n", c.Clients, c.Connections, verdict)
	for _, p := range c.Personas {
		if p.Clients == 0 {
			continue
		}
		answered := ""
		if p.AnsweredAfterHist != "" {
			answered = fmt.Sprintf("; answered after p50 %.0fms max %.0fms", p.AnsweredAfterMs.P50, p.AnsweredAfterMs.Max)
		}
		fmt.Fprintf(w, "    %-11s %d clients, %d conns: %d documented, %d undocumented, %d unfinished%s\n",
			p.Persona, p.Clients, p.Connections, p.Documented, p.Undocumented, p.Unfinished, answered)
		line := "outcomes " + counts(p.Outcomes)
		if len(p.Errors) > 0 {
			line += "; errors " + counts(p.Errors)
		}
		if r := p.RetryAfterMs; r != nil {
			line += fmt.Sprintf("; retry_after_ms %d-%d", r.Min, r.Max)
		}
		if r := p.CloseRetryAfterMs; r != nil {
			line += fmt.Sprintf(" (with the Close %d-%d)", r.Min, r.Max)
		}
		fmt.Fprintf(w, "                %s\n", line)
		for _, v := range p.Violations {
			fmt.Fprintf(w, "                ! %s\n", v)
		}
	}
}

func counts(m map[string]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// percentileX maps a percentile to the x axis of the latency plot: the
// number of nines (50% -> 0.3, 90% -> 1, 99% -> 2, 99.9% -> 3), the usual
// HdrHistogram presentation that gives the tail room.
func percentileX(p float64) float64 {
	return -math.Log10(1 - p/100)
}

// serverFigures are a probe's figures over r's window; nil when it sampled
// nothing.
func serverFigures(p *serverProbe, r report.Report) *report.Server {
	if p == nil || p.pid == 0 {
		return nil
	}
	sr := &report.Server{
		PID:                p.pid,
		CPUS:               (p.cpuEnd - p.cpuStart).Seconds(),
		RSSBeforeKiB:       p.rssBefore,
		RSSAfterJoinKiB:    p.rssJoined,
		RSSEndKiB:          p.rssEnd,
		HWMKiB:             p.hwm,
		SamplingIncomplete: p.failed,
	}
	if len(p.pids) > 1 {
		sr.PIDs = p.pids
	}
	sr.Cores = sr.CPUS / r.DurationS
	if r.Delivered > 0 {
		sr.CPUUsPerDelivery = sr.CPUS * 1e6 / float64(r.Delivered)
	}
	if r.Connected > 0 {
		sr.KiBPerConnection = float64(p.rssJoined-p.rssBefore) / float64(r.Connected)
	}
	return sr
}
