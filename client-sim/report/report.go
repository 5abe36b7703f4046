// Package report is the schema of client-sim's JSON report: the one
// definition that client-sim writes and bench/harness reads, with the
// latency histogram both sides encode and decode, and the merge of reports
// from client-sim processes that ran side by side against one server.
//
// The JSON keys are documented in client-sim/README.md. Values of these
// types are plain data: safe to share once built, not to mutate
// concurrently.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Protocols client-sim speaks (Report.Protocol).
const (
	ProtocolTickrelay  = "tickrelay"
	ProtocolCentrifugo = "centrifugo"
)

// Report is the result of one client-sim run; its JSON form is client-sim's
// output format.
type Report struct {
	RunID string `json:"run_id"`
	URL   string `json:"url"`
	// Protocol is the wire protocol spoken: ProtocolTickrelay or
	// ProtocolCentrifugo. Empty in reports written before the field
	// existed, which were all tickrelay.
	Protocol  string  `json:"protocol,omitempty"`
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
	Lost              uint64  `json:"lost"`       // expected - delivered (0 when not below)
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
	// LatencyHist is the whole latency distribution (microseconds, see
	// NewHistogram), as HdrHistogram's V2 compressed base64 encoding: a
	// few KB that let a harness merge rounds or processes and overlay
	// systems on one plot, which the percentiles above cannot. Empty when
	// nothing was measured.
	LatencyHist string `json:"latency_hist,omitempty"`

	Errors map[string]int64 `json:"errors"`

	ClientCPUS   float64 `json:"client_cpu_s"` // client-sim's utime+stime over the measured window
	ClientCores  float64 `json:"client_cores"`
	ClientRSSKiB int64   `json:"client_rss_kib"` // after joining

	Server *Server `json:"server,omitempty"` // with -server-pid (and -server-pids, summed)
	// Broker is the process of -broker-pid (a cluster's NATS server),
	// sampled at the same instants as Server.
	Broker *Server `json:"broker,omitempty"`

	// Chaos is what the chaos connections (-chaos) got from the server;
	// nil without them. Every figure above is the honest clients' alone.
	Chaos *Chaos `json:"chaos,omitempty"`

	// Resume is what the sessions (-resume) and the fault proxy
	// (-fault-cut-fraction) went through; nil without either.
	Resume *Resume `json:"resume,omitempty"`
}

// Resume holds the figures of resuming clients and of the fault proxy.
type Resume struct {
	Enabled     bool    `json:"enabled"`      // -resume: the clients are client.Sessions
	CutFraction float64 `json:"cut_fraction"` // -fault-cut-fraction (0: no proxy)
	CutEveryS   float64 `json:"cut_every_s"`  // -fault-cut-every
	// Cuts is the number of connections the fault proxy reset;
	// Disconnects the connections the sessions lost (cuts, and any other
	// loss).
	Cuts        uint64 `json:"cuts"`
	Disconnects uint64 `json:"disconnects"`
	// The sessions' client.SessionStats, summed: Recovered resumes took
	// the seat back with every frame, Resyncs had to start over.
	Reconnects     int    `json:"reconnects"`
	Recovered      int    `json:"recovered"`
	Resyncs        int    `json:"resyncs"`
	FramesReplayed uint64 `json:"frames_replayed"`
	InputsResent   int    `json:"inputs_resent"`
	InputsLost     int    `json:"inputs_lost"`
	// SessionsEnded counts sessions that gave up before the end of the
	// run (no reconnect in time, a close not to reconnect after).
	SessionsEnded int `json:"sessions_ended"`
	// ResumeMs is the time from a lost connection to the seat back, per
	// reconnect (its max: until the last was back).
	ResumeMs Percentiles `json:"resume_ms"`
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

// Server holds the figures of the server process given by -server-pid.
type Server struct {
	PID int `json:"pid"`
	// PIDs, when more than one process was sampled (-server-pids), are
	// all of them, PID first: every figure below is their sum.
	PIDs               []int   `json:"pids,omitempty"`
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

// The latency histogram: microseconds from 1 us to 60 s, 3 significant
// digits (0.1% resolution).
const (
	HistMinMicros = 1
	HistMaxMicros = 60_000_000
	HistSigFigs   = 3
)

// NewHistogram is an empty latency histogram of the report's shape.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(HistMinMicros, HistMaxMicros, HistSigFigs)
}

// ClampMicros brings us into the histogram's range, so that a recording
// never fails.
func ClampMicros(us int64) int64 {
	return min(max(us, HistMinMicros), HistMaxMicros)
}

// EncodeHistogram is h in HdrHistogram's V2 compressed base64 form, "" when
// h is empty or cannot be encoded (the percentiles still stand; only the
// export is lost, so a run need not fail for it).
func EncodeHistogram(h *hdrhistogram.Histogram) string {
	if h == nil || h.TotalCount() == 0 {
		return ""
	}
	b, err := h.EncodeV2()
	if err != nil {
		return ""
	}
	return string(b)
}

// PercentilesOf summarises a microsecond histogram in milliseconds; zero
// for an empty or nil one.
func PercentilesOf(h *hdrhistogram.Histogram) Percentiles {
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

// Latency decodes the exported latency distribution; nil when the report
// has none (idle runs, or a client-sim without the export).
func (r Report) Latency() (*hdrhistogram.Histogram, error) {
	if r.LatencyHist == "" {
		return nil, nil
	}
	h, err := hdrhistogram.Decode([]byte(r.LatencyHist))
	if err != nil {
		return nil, fmt.Errorf("report: latency_hist of run %s: %w", r.RunID, err)
	}
	return h, nil
}

// Decode reads one report and checks the fields every figure depends on,
// so that a truncated or foreign file fails here rather than as a silent
// zero in a table. Unknown keys are ignored (newer writers, older readers).
func Decode(b []byte) (Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("report: %w", err)
	}
	if r.Clients <= 0 {
		return r, errors.New("report: no clients (not a client-sim report?)")
	}
	if r.DurationS <= 0 {
		return r, errors.New("report: no measured window")
	}
	if r.Server != nil && r.Server.SamplingIncomplete {
		return r, fmt.Errorf("report: server sampling incomplete (pid %d gone?)", r.Server.PID)
	}
	if r.Broker != nil && r.Broker.SamplingIncomplete {
		return r, fmt.Errorf("report: broker sampling incomplete (pid %d gone?)", r.Broker.PID)
	}
	return r, nil
}

// ReadFile is Decode of the file at path.
func ReadFile(path string) (Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Report{}, fmt.Errorf("report: %w", err)
	}
	r, err := Decode(b)
	if err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Encode is the report as client-sim writes it: indented JSON and a final
// newline.
func Encode(r Report) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return append(b, '\n'), nil
}

// Merge combines the reports of client-sim processes that ran side by side
// against one server (S4 spreads clients over several processes): sums for
// counts and client CPU, the slowest connect time, merged latency, the
// worst send lag, the chaos sections combined. The server figures are left out: each process sampled
// the server at its own moments, so a harness takes its own samples for
// such runs. The inputs are not modified.
func Merge(rs []Report) (Report, error) {
	if len(rs) == 0 {
		return Report{}, errors.New("report: merge: no reports")
	}
	if len(rs) == 1 {
		return rs[0], nil
	}
	out := rs[0]
	out.RunID = ""
	out.Errors = map[string]int64{}
	out.Server, out.Broker = nil, nil
	out.Clients, out.Connected, out.Rooms = 0, 0, 0
	out.Sent, out.SentTotal, out.Expected, out.Delivered = 0, 0, 0, 0
	out.Duplicates, out.OutOfOrder, out.BadPayloads, out.ReceiversWithLoss = 0, 0, 0, 0
	out.Resume = nil
	out.ClientCPUS, out.ClientCores, out.ClientRSSKiB, out.ConnectS = 0, 0, 0, 0
	var merged *hdrhistogram.Histogram
	for i, r := range rs {
		if r.DurationS != rs[0].DurationS {
			return Report{}, fmt.Errorf("report: merge: report %d measured %gs, report 0 %gs", i, r.DurationS, rs[0].DurationS)
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
		h, err := r.Latency()
		if err != nil {
			return Report{}, fmt.Errorf("report: merge: %w", err)
		}
		if h != nil {
			if merged == nil {
				merged = h
			} else {
				merged.Merge(h)
			}
		}
		out.Resume = mergeResume(out.Resume, r.Resume)
		if i > 0 {
			// Send lag cannot be merged from percentiles: keep the worst.
			out.SendLagMs.P99 = max(out.SendLagMs.P99, r.SendLagMs.P99)
			out.SendLagMs.Max = max(out.SendLagMs.Max, r.SendLagMs.Max)
		}
	}
	chaos := make([]*Chaos, 0, len(rs))
	for _, r := range rs {
		chaos = append(chaos, r.Chaos)
	}
	c, err := mergeChaos(chaos)
	if err != nil {
		return Report{}, err
	}
	out.Chaos = c
	out.LossRatio, out.Lost = 0, 0
	if out.Delivered < out.Expected {
		out.Lost = out.Expected - out.Delivered
	}
	if out.Expected > 0 {
		out.LossRatio = max(0, 1-float64(out.Delivered)/float64(out.Expected))
	}
	out.SentPerSec = float64(out.Sent) / out.DurationS
	out.DeliveredPerSec = float64(out.Delivered) / out.DurationS
	out.LatencyMs = PercentilesOf(merged)
	out.LatencyHist = ""
	if merged != nil {
		b, err := merged.EncodeV2()
		if err != nil {
			return Report{}, fmt.Errorf("report: merge: encode latency: %w", err)
		}
		out.LatencyHist = string(b)
	}
	return out, nil
}

// mergeResume adds b's resume figures to a (either may be nil): sums, and
// the worst resume times (percentiles cannot be merged).
func mergeResume(a, b *Resume) *Resume {
	if b == nil {
		return a
	}
	if a == nil {
		c := *b
		return &c
	}
	out := *a
	out.Enabled = a.Enabled || b.Enabled
	out.Cuts += b.Cuts
	out.Disconnects += b.Disconnects
	out.Reconnects += b.Reconnects
	out.Recovered += b.Recovered
	out.Resyncs += b.Resyncs
	out.FramesReplayed += b.FramesReplayed
	out.InputsResent += b.InputsResent
	out.InputsLost += b.InputsLost
	out.SessionsEnded += b.SessionsEnded
	out.ResumeMs.P50 = max(a.ResumeMs.P50, b.ResumeMs.P50)
	out.ResumeMs.P90 = max(a.ResumeMs.P90, b.ResumeMs.P90)
	out.ResumeMs.P99 = max(a.ResumeMs.P99, b.ResumeMs.P99)
	out.ResumeMs.P999 = max(a.ResumeMs.P999, b.ResumeMs.P999)
	out.ResumeMs.Max = max(a.ResumeMs.Max, b.ResumeMs.Max)
	out.ResumeMs.Mean = max(a.ResumeMs.Mean, b.ResumeMs.Mean)
	return &out
}
