package report

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// encodedHist is a latency export of the given microsecond values.
func encodedHist(t *testing.T, us ...int64) string {
	t.Helper()
	h := NewHistogram()
	for _, v := range us {
		require.NoError(t, h.RecordValue(v))
	}
	b, err := h.EncodeV2()
	require.NoError(t, err)
	return string(b)
}

func TestDecode(t *testing.T) {
	t.Parallel()
	// Shaped like client-sim's README example, with a server object.
	js := `{"run_id":"78ba92a3","clients":1000,"connected":1000,"room_size":8,"rooms":125,"rate":20,
	"duration_s":10,"sent":200001,"expected":1400007,"delivered":1400007,"loss_ratio":0,
	"latency_ms":{"p50":22.7,"p99":159.4,"p999":212.6,"max":320},"errors":{},"client_cpu_s":4.4,"client_cores":0.44,
	"server":{"pid":77,"cpu_s":4.7,"cores":0.47,"cpu_us_per_delivery":3.36,"rss_before_kib":12612,"rss_after_join_kib":16284,
	"rss_end_kib":22100,"hwm_kib":22100,"kib_per_connection":3.67},"some_future_key":1}`
	r, err := Decode([]byte(js))
	require.NoError(t, err)
	require.Equal(t, 1000, r.Connected)
	require.Equal(t, uint64(1400007), r.Delivered)
	require.Equal(t, 159.4, r.LatencyMs.P99)
	require.Empty(t, r.Protocol, "older reports have no protocol key")
	require.NotNil(t, r.Server)
	require.Equal(t, 3.36, r.Server.CPUUsPerDelivery)
	require.Equal(t, int64(16284), r.Server.RSSAfterJoinKiB)

	for _, bad := range []string{
		`not json`,
		`{"duration_s":10}`, // no clients
		`{"clients":5}`,     // no window
		`{"clients":5,"duration_s":1,"server":{"pid":9,"sampling_incomplete":true}}`,
	} {
		_, err := Decode([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	in := Report{Protocol: ProtocolCentrifugo, Clients: 3, DurationS: 1, LatencyHist: encodedHist(t, 5),
		Errors: map[string]int64{"send": 1}, Server: &Server{PID: 4, KiBPerConnection: 1.5}}
	b, err := Encode(in)
	require.NoError(t, err)
	require.Equal(t, byte('\n'), b[len(b)-1])
	out, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	require.Equal(t, "centrifugo", m["protocol"])
}

func TestHistogramHelpers(t *testing.T) {
	t.Parallel()
	require.Equal(t, int64(HistMinMicros), ClampMicros(-5))
	require.Equal(t, int64(HistMaxMicros), ClampMicros(1<<40))
	require.Equal(t, int64(1234), ClampMicros(1234))

	require.Equal(t, Percentiles{}, PercentilesOf(nil))
	require.Equal(t, Percentiles{}, PercentilesOf(NewHistogram()))
	require.Empty(t, EncodeHistogram(NewHistogram()), "nothing measured, nothing exported")

	r := Report{LatencyHist: encodedHist(t, 1000, 2000, 3000, 40000)}
	h, err := r.Latency()
	require.NoError(t, err)
	require.Equal(t, int64(4), h.TotalCount())
	p := PercentilesOf(h)
	require.InDelta(t, 2.0, p.P50, 0.01)
	require.InDelta(t, 40.0, p.Max, 0.05)
	require.InDelta(t, 11.5, p.Mean, 0.05)

	none, err := Report{}.Latency()
	require.NoError(t, err)
	require.Nil(t, none)
	_, err = Report{LatencyHist: "!!"}.Latency()
	require.Error(t, err)
}

func TestMerge(t *testing.T) {
	t.Parallel()
	a := Report{Clients: 4750, Connected: 4750, Rooms: 594, DurationS: 10, ConnectS: 1.9, Expected: 100, Delivered: 100,
		ClientCPUS: 1, ClientCores: 0.1, Errors: map[string]int64{"dial:http_503": 2},
		LatencyHist: encodedHist(t, 1000, 2000), Server: &Server{PID: 1}, SendLagMs: Percentiles{P99: 1, Max: 9}}
	b := Report{Clients: 4750, Connected: 4740, Rooms: 594, DurationS: 10, ConnectS: 2.1, Expected: 100, Delivered: 90,
		Duplicates: 1, ClientCPUS: 2, ClientCores: 0.2, Errors: map[string]int64{"dial:http_503": 1, "disconnect:1006": 3},
		LatencyHist: encodedHist(t, 3000, 40000), SendLagMs: Percentiles{P99: 3, Max: 4}}
	m, err := Merge([]Report{a, b})
	require.NoError(t, err)
	require.Equal(t, 9500, m.Clients)
	require.Equal(t, 9490, m.Connected)
	require.Equal(t, 1188, m.Rooms)
	require.Equal(t, 2.1, m.ConnectS, "the slowest process sets the connect time")
	require.Equal(t, uint64(190), m.Delivered)
	require.InDelta(t, 0.05, m.LossRatio, 1e-12)
	require.InDelta(t, 19.0, m.DeliveredPerSec, 1e-12)
	require.Equal(t, uint64(1), m.Duplicates)
	require.InDelta(t, 0.3, m.ClientCores, 1e-12)
	require.Equal(t, map[string]int64{"dial:http_503": 3, "disconnect:1006": 3}, m.Errors)
	require.Nil(t, m.Server, "per-process server samples do not merge")
	require.InDelta(t, 40.0, m.LatencyMs.Max, 0.05)
	require.InDelta(t, 2.0, m.LatencyMs.P50, 0.01)
	require.Equal(t, Percentiles{P99: 3, Max: 9}, m.SendLagMs, "the worst send lag of any process")
	h, err := m.Latency()
	require.NoError(t, err)
	require.Equal(t, int64(4), h.TotalCount())
	// The inputs are untouched.
	require.Equal(t, map[string]int64{"dial:http_503": 2}, a.Errors)

	one, err := Merge([]Report{a})
	require.NoError(t, err)
	require.Equal(t, a.Clients, one.Clients)

	_, err = Merge(nil)
	require.Error(t, err)
	_, err = Merge([]Report{a, {Clients: 1, DurationS: 5}})
	require.Error(t, err, "different windows cannot be summed")
}

func TestMergeResume(t *testing.T) {
	t.Parallel()
	a := Report{Clients: 10, DurationS: 10, Expected: 100, Delivered: 100,
		Resume: &Resume{Enabled: true, CutFraction: 0.05, CutEveryS: 1, Cuts: 5, Disconnects: 4, Reconnects: 4, Recovered: 4,
			FramesReplayed: 30, InputsResent: 7, ResumeMs: Percentiles{P50: 10, P99: 40, Max: 50}}}
	b := Report{Clients: 10, DurationS: 10, Expected: 100, Delivered: 97,
		Resume: &Resume{Enabled: true, CutFraction: 0.05, CutEveryS: 1, Cuts: 3, Disconnects: 3, Reconnects: 2, Recovered: 1, Resyncs: 1,
			InputsLost: 2, SessionsEnded: 1, ResumeMs: Percentiles{P50: 20, P99: 30, Max: 90}}}
	m, err := Merge([]Report{a, b})
	require.NoError(t, err)
	require.Equal(t, uint64(3), m.Lost)
	require.Equal(t, &Resume{Enabled: true, CutFraction: 0.05, CutEveryS: 1, Cuts: 8, Disconnects: 7, Reconnects: 6, Recovered: 5, Resyncs: 1,
		FramesReplayed: 30, InputsResent: 7, InputsLost: 2, SessionsEnded: 1, ResumeMs: Percentiles{P50: 20, P99: 40, Max: 90}}, m.Resume)
	require.Equal(t, uint64(5), a.Resume.Cuts, "the inputs are untouched")

	none, err := Merge([]Report{{Clients: 1, DurationS: 10}, {Clients: 1, DurationS: 10}})
	require.NoError(t, err)
	require.Nil(t, none.Resume)
}
