package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const benchOutput = `goos: linux
goarch: amd64
pkg: github.com/tickrelay/tickrelay/room
cpu: AMD EPYC
BenchmarkTickBuild/players=8-2         	  423811	      1405 ns/op	        56.00 deliveries/tick	        25.08 ns/delivery	       0 B/op	       0 allocs/op
BenchmarkTickBuild/players=8-2         	  423811	      1505 ns/op	        56.00 deliveries/tick	        26.88 ns/delivery	       0 B/op	       0 allocs/op
BenchmarkTickBuild/players=8-2         	  423811	      1305 ns/op	        56.00 deliveries/tick	        23.30 ns/delivery	       0 B/op	       0 allocs/op
BenchmarkTickBuild/players=100-2       	    6183	     93358 ns/op	      9900 deliveries/tick	         9.430 ns/delivery	       2 B/op	       0 allocs/op
PASS
ok  	github.com/tickrelay/tickrelay/room	1.193s
PASS
ok  	github.com/tickrelay/tickrelay/server	0.011s
goos: linux
goarch: amd64
pkg: github.com/tickrelay/tickrelay/server/wsproto
cpu: AMD EPYC
BenchmarkDecoderNext/size=64-2         	16851372	        37.82 ns/op	1850.71 MB/s	       0 B/op	       0 allocs/op
BenchmarkHandshake/browser-upgrade-2            	  349705	      1640 ns/op	 319.54 MB/s	      48 B/op	       2 allocs/op
--- BENCH: BenchmarkSomething-2
    some log line
PASS
ok  	github.com/tickrelay/tickrelay/server/wsproto	7.066s
PASS
ok  	github.com/tickrelay/tickrelay/proto/wire	0.005s
`

func TestParseBenchOutput(t *testing.T) {
	t.Parallel()
	benches, none := parseBenchOutput(benchOutput)
	require.Equal(t, []string{"github.com/tickrelay/tickrelay/server", "github.com/tickrelay/tickrelay/proto/wire"}, none)
	require.Len(t, benches, 4)

	tb := benches[0]
	require.Equal(t, "github.com/tickrelay/tickrelay/room", tb.Pkg)
	require.Equal(t, "BenchmarkTickBuild/players=8", tb.Name)
	require.Equal(t, 3, tb.Runs)
	require.Equal(t, []string{"ns/op", "deliveries/tick", "ns/delivery", "B/op", "allocs/op"}, units(tb))
	ns, ok := tb.metric("ns/op")
	require.True(t, ok)
	require.Equal(t, MicroMetric{Unit: "ns/op", Median: 1405, Min: 1305, Max: 1505}, ns)
	perDelivery, _ := tb.metric("ns/delivery")
	require.Equal(t, 25.08, perDelivery.Median)
	_, ok = tb.metric("MB/s")
	require.False(t, ok)

	hs := benches[3]
	require.Equal(t, "github.com/tickrelay/tickrelay/server/wsproto", hs.Pkg)
	require.Equal(t, "BenchmarkHandshake/browser-upgrade", hs.Name)
	allocs, _ := hs.metric("allocs/op")
	require.Equal(t, 2.0, allocs.Median)

	md := renderMicro(&MicroResult{Command: "go test", Benchmarks: benches, NoBenchmarks: none}, Env{NProc: 2, CPUModel: "AMD EPYC", GoVersion: "go1.26.8", Commit: "abc"})
	require.Contains(t, md, "| room | BenchmarkTickBuild/players=8 | 1,405 (1,305–1,505) | – | 56 deliveries/tick, 25.1 (23.3–26.9) ns/delivery | 0 | 0 | 3 |")
	require.Contains(t, md, "No benchmarks in: github.com/tickrelay/tickrelay/server, github.com/tickrelay/tickrelay/proto/wire.")
}

func units(b MicroBench) []string {
	var out []string
	for _, m := range b.Metrics {
		out = append(out, m.Unit)
	}
	return out
}

func TestTrimProcs(t *testing.T) {
	t.Parallel()
	require.Equal(t, "BenchmarkX/size=64", trimProcs("BenchmarkX/size=64-2"))
	require.Equal(t, "BenchmarkX/browser-upgrade", trimProcs("BenchmarkX/browser-upgrade-16"))
	require.Equal(t, "BenchmarkX/browser-upgrade", trimProcs("BenchmarkX/browser-upgrade"))
}
