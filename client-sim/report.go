package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the result of one run; its JSON form is client-sim's output
// format (documented in README.md).
type Report struct {
	RunID     string  `json:"run_id"`
	URL       string  `json:"url"`
	Clients   int     `json:"clients"`
	Connected int     `json:"connected"` // clients that joined their room
	RoomSize  int     `json:"room_size"`
	Rooms     int     `json:"rooms"`
	Rate      float64 `json:"rate"`
	Payload   int     `json:"payload"`
	TickRate  int     `json:"tick_rate"` // asked for on create; 0 = server default
	Immediate bool    `json:"immediate"`
	WarmupS   float64 `json:"warmup_s"`
	DurationS float64 `json:"duration_s"`
	ConnectS  float64 `json:"connect_s"` // time to connect and join every client

	Sent              uint64  `json:"sent"`       // sends inside the measured window
	SentTotal         uint64  `json:"sent_total"` // including warm-up
	Expected          uint64  `json:"expected"`   // sent x (members - 1), per room
	Delivered         uint64  `json:"delivered"`  // unique deliveries of measured sends
	LossRatio         float64 `json:"loss_ratio"` // 1 - delivered/expected
	Duplicates        uint64  `json:"duplicates"`
	OutOfOrder        uint64  `json:"out_of_order"`
	BadPayloads       uint64  `json:"bad_payloads"`
	ReceiversWithLoss int     `json:"receivers_with_loss"`
	SentPerSec        float64 `json:"sent_per_sec"`
	DeliveredPerSec   float64 `json:"delivered_per_sec"`

	LatencyMs Percentiles `json:"latency_ms"`
	// SendLagMs is how late sends left client-sim against their schedule:
	// if it grows, client-sim itself is the bottleneck.
	SendLagMs Percentiles `json:"send_lag_ms"`
	// LatencyHist is the whole latency distribution (microseconds), as
	// HdrHistogram's V2 compressed base64 encoding: a few KB that let a
	// harness merge rounds or processes and overlay systems on one plot,
	// which the percentiles above cannot. Empty when nothing was measured.
	LatencyHist string `json:"latency_hist,omitempty"`

	Errors map[string]int64 `json:"errors"`

	ClientCPUS   float64 `json:"client_cpu_s"` // client-sim's utime+stime over the measured window
	ClientCores  float64 `json:"client_cores"`
	ClientRSSKiB int64   `json:"client_rss_kib"` // after joining

	Server *ServerReport `json:"server,omitempty"` // with -server-pid

	latency *hdrhistogram.Histogram
}

// Percentiles of a distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// ServerReport holds the figures of the relay process given by -server-pid.
type ServerReport struct {
	PID                int     `json:"pid"`
	CPUS               float64 `json:"cpu_s"` // utime+stime over the measured window
	Cores              float64 `json:"cores"`
	CPUUsPerDelivery   float64 `json:"cpu_us_per_delivery"`
	RSSBeforeKiB       int64   `json:"rss_before_kib"`
	RSSAfterJoinKiB    int64   `json:"rss_after_join_kib"`
	RSSEndKiB          int64   `json:"rss_end_kib"`
	HWMKiB             int64   `json:"hwm_kib"`
	KiBPerConnection   float64 `json:"kib_per_connection"`
	SamplingIncomplete bool    `json:"sampling_incomplete,omitempty"`
}

// encodeHist is h in HdrHistogram's V2 compressed base64 form, "" when h is
// empty or cannot be encoded (the percentiles still stand; only the export
// is lost, so the run need not fail).
func encodeHist(h *hdrhistogram.Histogram) string {
	if h == nil || h.TotalCount() == 0 {
		return ""
	}
	b, err := h.EncodeV2()
	if err != nil {
		return ""
	}
	return string(b)
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{
		P50:  ms(h.ValueAtQuantile(50)),
		P90:  ms(h.ValueAtQuantile(90)),
		P99:  ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)),
		Max:  ms(h.Max()),
		Mean: h.Mean() / 1000,
	}
}

type reportInputs struct {
	connect   time.Duration
	clientCPU time.Duration
	clientRSS int64
	server    *serverProbe
}

// report gathers the figures that do not need the reader goroutines to have
// stopped (see finishReceiverStats for those that do).
func (s *sim) report(members []int, in reportInputs) Report {
	cfg := s.cfg
	r := Report{
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
	r.SentPerSec = float64(r.Sent) / r.DurationS
	r.DeliveredPerSec = float64(r.Delivered) / r.DurationS

	r.latency = mergeShards(s.hists)
	r.LatencyMs = percentiles(r.latency)
	r.LatencyHist = encodeHist(r.latency)
	lag := newHist()
	for _, sh := range s.senders {
		lag.Merge(sh.lag)
	}
	r.SendLagMs = percentiles(lag)

	r.ClientCPUS = in.clientCPU.Seconds()
	r.ClientCores = r.ClientCPUS / r.DurationS
	r.ClientRSSKiB = in.clientRSS
	if p := in.server; p != nil && p.pid != 0 {
		sr := &ServerReport{
			PID:                p.pid,
			CPUS:               (p.cpuEnd - p.cpuStart).Seconds(),
			RSSBeforeKiB:       p.rssBefore,
			RSSAfterJoinKiB:    p.rssJoined,
			RSSEndKiB:          p.rssEnd,
			HWMKiB:             p.hwm,
			SamplingIncomplete: p.failed,
		}
		sr.Cores = sr.CPUS / r.DurationS
		if r.Delivered > 0 {
			sr.CPUUsPerDelivery = sr.CPUS * 1e6 / float64(r.Delivered)
		}
		if r.Connected > 0 {
			sr.KiBPerConnection = float64(p.rssJoined-p.rssBefore) / float64(r.Connected)
		}
		r.Server = sr
	}
	return r
}

// finishReceiverStats adds the counters owned by the reader goroutines;
// only call once every client is closed.
func (r *Report) finishReceiverStats(s *sim) {
	for _, c := range s.clients {
		r.Duplicates += c.dups
		r.OutOfOrder += c.outOfOrder
		r.BadPayloads += c.badPayload
	}
}

func writeJSON(r Report, path string, stdout io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("json: %w", err)
	}
	b = append(b, '\n')
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
func writeSummary(w io.Writer, r Report) {
	fmt.Fprintf(w, "client-sim %s: %d clients (%d joined) in %d rooms of %d, %g msg/s, %d B payload, %gs measured after %gs warm-up\n",
		r.RunID, r.Clients, r.Connected, r.Rooms, r.RoomSize, r.Rate, r.Payload, r.DurationS, r.WarmupS)
	fmt.Fprintf(w, "  connect   %.2fs\n", r.ConnectS)
	fmt.Fprintf(w, "  sent      %d (%.0f/s)   expected %d   delivered %d (%.0f/s)\n",
		r.Sent, r.SentPerSec, r.Expected, r.Delivered, r.DeliveredPerSec)
	fmt.Fprintf(w, "  loss      %.4f%%   duplicates %d   out of order %d   receivers with loss %d\n",
		100*r.LossRatio, r.Duplicates, r.OutOfOrder, r.ReceiversWithLoss)
	l := r.LatencyMs
	fmt.Fprintf(w, "  latency   p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	fmt.Fprintf(w, "  client    cpu %.2fs (%.2f cores)  rss %d KiB  send lag p99 %.3fms max %.3fms\n",
		r.ClientCPUS, r.ClientCores, r.ClientRSSKiB, r.SendLagMs.P99, r.SendLagMs.Max)
	if sr := r.Server; sr != nil {
		fmt.Fprintf(w, "  server    cpu %.2fs (%.2f cores, %.2f us/delivery)  rss %d -> %d -> %d KiB, hwm %d KiB, %.1f KiB/conn\n",
			sr.CPUS, sr.Cores, sr.CPUUsPerDelivery, sr.RSSBeforeKiB, sr.RSSAfterJoinKiB, sr.RSSEndKiB, sr.HWMKiB, sr.KiBPerConnection)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "  errors    none")
		return
	}
	var parts []string
	for _, k := range sortedKeys(r.Errors) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Errors[k]))
	}
	fmt.Fprintf(w, "  errors    %s\n", strings.Join(parts, " "))
}

// percentileX maps a percentile to the x axis of the latency plot: the
// number of nines (50% -> 0.3, 90% -> 1, 99% -> 2, 99.9% -> 3), the usual
// HdrHistogram presentation that gives the tail room.
func percentileX(p float64) float64 {
	return -math.Log10(1 - p/100)
}
