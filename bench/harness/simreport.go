package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// SimReport is the part of client-sim's JSON report (client-sim/README.md)
// the harness reads. Field names follow the JSON keys.
type SimReport struct {
	RunID     string  `json:"run_id"`
	URL       string  `json:"url"`
	Clients   int     `json:"clients"`
	Connected int     `json:"connected"`
	RoomSize  int     `json:"room_size"`
	Rooms     int     `json:"rooms"`
	Rate      float64 `json:"rate"`
	Payload   int     `json:"payload"`
	TickRate  int     `json:"tick_rate"`
	Immediate bool    `json:"immediate"`
	WarmupS   float64 `json:"warmup_s"`
	DurationS float64 `json:"duration_s"`
	ConnectS  float64 `json:"connect_s"`

	Sent              uint64  `json:"sent"`
	SentTotal         uint64  `json:"sent_total"`
	Expected          uint64  `json:"expected"`
	Delivered         uint64  `json:"delivered"`
	LossRatio         float64 `json:"loss_ratio"`
	Duplicates        uint64  `json:"duplicates"`
	OutOfOrder        uint64  `json:"out_of_order"`
	BadPayloads       uint64  `json:"bad_payloads"`
	ReceiversWithLoss int     `json:"receivers_with_loss"`
	DeliveredPerSec   float64 `json:"delivered_per_sec"`

	LatencyMs   Percentiles `json:"latency_ms"`
	SendLagMs   Percentiles `json:"send_lag_ms"`
	LatencyHist string      `json:"latency_hist,omitempty"`

	Errors map[string]int64 `json:"errors"`

	ClientCPUS   float64 `json:"client_cpu_s"`
	ClientCores  float64 `json:"client_cores"`
	ClientRSSKiB int64   `json:"client_rss_kib"`

	Server *ServerFigures `json:"server,omitempty"`
}

// Percentiles of a distribution in milliseconds, as client-sim writes them.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// ServerFigures is client-sim's "server" object (with -server-pid).
type ServerFigures struct {
	PID                int     `json:"pid"`
	CPUS               float64 `json:"cpu_s"`
	Cores              float64 `json:"cores"`
	CPUUsPerDelivery   float64 `json:"cpu_us_per_delivery"`
	RSSBeforeKiB       int64   `json:"rss_before_kib"`
	RSSAfterJoinKiB    int64   `json:"rss_after_join_kib"`
	RSSEndKiB          int64   `json:"rss_end_kib"`
	HWMKiB             int64   `json:"hwm_kib"`
	KiBPerConnection   float64 `json:"kib_per_connection"`
	SamplingIncomplete bool    `json:"sampling_incomplete,omitempty"`
}

// parseSimReport decodes one client-sim report and checks the fields every
// figure depends on, so that a truncated or foreign file fails here rather
// than as a silent zero in a table.
func parseSimReport(b []byte) (SimReport, error) {
	var r SimReport
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("client-sim report: %w", err)
	}
	if r.Clients <= 0 {
		return r, errors.New("client-sim report: no clients (not a client-sim report?)")
	}
	if r.DurationS <= 0 {
		return r, errors.New("client-sim report: no measured window")
	}
	if r.Server != nil && r.Server.SamplingIncomplete {
		return r, fmt.Errorf("client-sim report: server sampling incomplete (pid %d gone?)", r.Server.PID)
	}
	return r, nil
}

// latencyHist decodes the exported latency distribution; nil when the
// report has none (idle runs, or a client-sim without the export).
func (r SimReport) latencyHist() (*hdrhistogram.Histogram, error) {
	if r.LatencyHist == "" {
		return nil, nil
	}
	h, err := hdrhistogram.Decode([]byte(r.LatencyHist))
	if err != nil {
		return nil, fmt.Errorf("latency_hist of run %s: %w", r.RunID, err)
	}
	return h, nil
}

// mergeReports combines the reports of client-sim processes that ran side by
// side against one server (S4 spreads clients over several processes): sums
// for counts and client CPU, the slowest connect time, merged latency. The
// server figures are left out: each process sampled the server at its own
// moments, so the harness takes its own samples for such runs.
func mergeReports(rs []SimReport) (SimReport, error) {
	if len(rs) == 0 {
		return SimReport{}, errors.New("merge: no reports")
	}
	if len(rs) == 1 {
		return rs[0], nil
	}
	out := rs[0]
	out.RunID = ""
	out.Errors = map[string]int64{}
	out.Server = nil
	out.Clients, out.Connected, out.Rooms = 0, 0, 0
	out.Sent, out.SentTotal, out.Expected, out.Delivered = 0, 0, 0, 0
	out.Duplicates, out.OutOfOrder, out.BadPayloads, out.ReceiversWithLoss = 0, 0, 0, 0
	out.ClientCPUS, out.ClientCores, out.ClientRSSKiB, out.ConnectS = 0, 0, 0, 0
	var merged *hdrhistogram.Histogram
	for i, r := range rs {
		if r.DurationS != rs[0].DurationS {
			return SimReport{}, fmt.Errorf("merge: report %d measured %gs, report 0 %gs", i, r.DurationS, rs[0].DurationS)
		}
		out.Clients += r.Clients
		out.Connected += r.Connected
		out.Rooms += r.Rooms
		out.Sent += r.Sent
		out.SentTotal += r.SentTotal
		out.Expected += r.Expected
		out.Delivered += r.Delivered
		out.Duplicates += r.Duplicates
		out.OutOfOrder += r.OutOfOrder
		out.BadPayloads += r.BadPayloads
		out.ReceiversWithLoss += r.ReceiversWithLoss
		out.ClientCPUS += r.ClientCPUS
		out.ClientCores += r.ClientCores
		out.ClientRSSKiB += r.ClientRSSKiB
		out.ConnectS = max(out.ConnectS, r.ConnectS)
		for k, v := range r.Errors {
			out.Errors[k] += v
		}
		h, err := r.latencyHist()
		if err != nil {
			return SimReport{}, fmt.Errorf("merge: %w", err)
		}
		if h != nil {
			if merged == nil {
				merged = h
			} else {
				merged.Merge(h)
			}
		}
	}
	out.LossRatio = 0
	if out.Expected > 0 {
		out.LossRatio = max(0, 1-float64(out.Delivered)/float64(out.Expected))
	}
	out.DeliveredPerSec = float64(out.Delivered) / out.DurationS
	out.LatencyHist = ""
	out.LatencyMs = Percentiles{}
	if merged != nil {
		out.LatencyMs = histPercentiles(merged)
		b, err := merged.EncodeV2()
		if err != nil {
			return SimReport{}, fmt.Errorf("merge: encode latency: %w", err)
		}
		out.LatencyHist = string(b)
	}
	// Send lag cannot be merged from percentiles: keep the worst.
	for _, r := range rs[1:] {
		out.SendLagMs.P99 = max(out.SendLagMs.P99, r.SendLagMs.P99)
		out.SendLagMs.Max = max(out.SendLagMs.Max, r.SendLagMs.Max)
	}
	return out, nil
}

// histPercentiles is client-sim's percentile summary of a microsecond
// histogram, in milliseconds.
func histPercentiles(h *hdrhistogram.Histogram) Percentiles {
	if h == nil || h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}

// errorKinds is a copy of m without the kinds in drop, for reporting the
// errors a run was not expected to have.
func errorKinds(m map[string]int64, drop ...string) map[string]int64 {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]int64{}
	}
	for _, k := range drop {
		delete(out, k)
	}
	return out
}
