package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

// writeSoak is the soak's own part of its section: what the chaos clients
// got from the relay, per persona over all rounds; the relay's own count of
// the closes it made; its memory during the runs.
func writeSoak(b *strings.Builder, r *Results, sc Scenario) {
	if sc.Load.Chaos == 0 {
		return
	}
	var reps []report.Report
	for _, run := range r.runsOf(sc.ID, refRelay) {
		if run.ok() && run.Report.Chaos != nil {
			reps = append(reps, run.Report)
		}
	}
	if len(reps) > 0 {
		writeChaosTable(b, reps)
	}
	writeRelayCloses(b, r, sc)
	writeSoakMemory(b, r, sc)
}

func writeChaosTable(b *strings.Builder, reps []report.Report) {
	merged, err := report.Merge(reps)
	if err != nil || merged.Chaos == nil {
		fmt.Fprintf(b, "\nChaos reports could not be combined: %v.\n", err)
		return
	}
	c := merged.Chaos
	verdict := "every finished chaos connection got its documented answer"
	if ok, problems := c.Verdict(); !ok {
		verdict = "**undocumented answers:** " + strings.Join(problems, "; ")
	}
	fmt.Fprintf(b, "\nChaos clients beside `%s`, %d round(s) together: %d clients, %s connections; %s. The documented answer of each persona, and what its connections do, are in [client-sim's README](../client-sim/README.md#chaos-clients).\n\n",
		refRelay, len(reps), c.Clients, commas(float64(c.Connections), 0), verdict)
	var rows [][]string
	for _, p := range c.Personas {
		retry := dash
		if p.RetryAfterMs != nil {
			retry = fmt.Sprintf("%d–%d", p.RetryAfterMs.Min, p.RetryAfterMs.Max)
		}
		closeRetry := dash
		if p.CloseRetryAfterMs != nil {
			closeRetry = fmt.Sprintf("%d–%d", p.CloseRetryAfterMs.Min, p.CloseRetryAfterMs.Max)
		}
		answered := dash
		if p.AnsweredAfterHist != "" {
			answered = fmt.Sprintf("%s / %s", commas(p.AnsweredAfterMs.P50, 0), commas(p.AnsweredAfterMs.Max, 0))
		}
		rows = append(rows, []string{"`" + p.Persona + "`", fmt.Sprint(p.Clients), commas(float64(p.Connections), 0),
			commas(float64(p.Documented), 0), commas(float64(p.Undocumented), 0), commas(float64(p.Unfinished), 0),
			countsText(p.Outcomes), countsText(p.Errors), retry, closeRetry, answered})
	}
	b.WriteString(table([]string{"persona", "clients", "connections", "documented", "undocumented", "unfinished",
		"outcomes", "Errors received", "retry_after_ms told", "retry_after_ms with the Close", "answered after ms (p50 / max)"},
		"lrrrrrllrrr", rows))
	b.WriteString("\n*Outcomes: `close:CODE` is the relay's Close frame, `error:CODE+` the Error sent with it; `dropped`: the stream ended without a Close (a client that reads nothing cannot read it); `client_closed`: client-sim ended it with nothing left to answer; `unfinished`: still waiting for its answer when the run ended. Answered after: from connecting to the relay's answer.*\n")
	for _, p := range c.Personas {
		for _, v := range p.Violations {
			fmt.Fprintf(b, "\n- **undocumented:** %s", v)
		}
	}
	b.WriteString("\n")
}

// writeRelayCloses is the relay's own account, per system and round: the
// closes it made by cause, the handshakes it refused, and whether every
// connection was let go after the run.
func writeRelayCloses(b *strings.Builder, r *Results, sc Scenario) {
	var rows [][]string
	for _, sys := range sc.Systems {
		for _, run := range r.runsOf(sc.ID, sys) {
			f := run.Relay
			if !run.ok() || f == nil {
				continue
			}
			released := "never (" + releaseWait.String() + ")"
			if f.ReleasedS >= 0 {
				released = fmt.Sprintf("0 after %.1f s", f.ReleasedS)
			}
			rows = append(rows, []string{"`" + sys + "`", fmt.Sprint(run.Round), floatCounts(f.Closes), floatCounts(f.HandshakeFailures), released})
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nThe relay's own count (`tickrelay_server_closes_total` by cause, `tickrelay_handshake_failures_total` by reason, `tickrelay_connections_open`), read from its `/metrics` after client-sim exited:\n\n")
	b.WriteString(table([]string{"system", "round", "closes by cause", "handshake failures", "connections open"}, "lrlll", rows))
}

// writeSoakMemory shows the relay's RSS during each run (sampled every
// rssEvery by the harness) and its VmHWM.
func writeSoakMemory(b *strings.Builder, r *Results, sc Scenario) {
	var rows [][]string
	for _, sys := range sc.Systems {
		for _, run := range r.runsOf(sc.ID, sys) {
			p := run.Probe
			if !run.ok() || len(p.RSSTimelineKiB) == 0 {
				continue
			}
			tl := p.RSSTimelineKiB
			rows = append(rows, []string{"`" + sys + "`", fmt.Sprint(run.Round), mib(float64(p.RSSBeforeKiB)),
				mib(float64(tl[len(tl)/2])), mib(float64(p.RSSPeakKiB)), mib(float64(tl[len(tl)-1])), mib(float64(p.HWMKiB)),
				fmt.Sprintf("%d every %.1f s", len(tl), p.RSSEveryS)})
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nThe relay's memory (RSS from /proc/PID/status, MiB; read by the harness during client-sim's whole run):\n\n")
	b.WriteString(table([]string{"system", "round", "before", "halfway", "peak", "last", "VmHWM", "samples"}, "lrrrrrrl", rows))
}

func countsText(m map[string]int64) string {
	if len(m) == 0 {
		return dash
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %s", k, commas(float64(m[k]), 0)))
	}
	return strings.Join(parts, ", ")
}

func floatCounts(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %s", k, commas(m[k], 0)))
	}
	return strings.Join(parts, ", ")
}
