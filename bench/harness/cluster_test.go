package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/client-sim/report"
)

func TestClusterSystem(t *testing.T) {
	t.Parallel()
	sys, err := systemByName(refCluster)
	require.NoError(t, err)
	require.Equal(t, 3, sys.Nodes)
	require.Equal(t, kindRelay, sys.Kind)
	require.True(t, sys.Admin, "scraped like relay-30hz, the system it is compared with")

	full := fullPlan()
	require.True(t, full.usesCluster())
	for _, sc := range full.Scenarios {
		require.Equal(t, sc.ID == "s1" || sc.ID == "s2", slicesContains(sc.Systems, refCluster), sc.ID)
	}
	quick := quickPlan()
	require.False(t, quick.usesCluster(), "quick mode builds no NATS server unless asked")
	require.NoError(t, quick.filter([]string{"s1"}, []string{refRelay, refCluster}))
	require.True(t, quick.usesCluster())

	require.Equal(t, []string{"-a", "127.0.0.1", "-p", "4222", "-js", "-sd", "/tmp/js"}, natsServerArgs(4222, "/tmp/js"))
	require.Equal(t, "nats-server -a 127.0.0.1 -p PORT -js -sd STORE_DIR", commandLine("/x/bin/nats-server", natsServerArgs(4222, "/tmp/js")))
	node := append(serverArgs(sys, 40001, 40002), clusterNodeArgs("nats://127.0.0.1:4222", 2)...)
	require.Equal(t, "tickrelay -listen 127.0.0.1:PORT -log-level warn -admin-listen 127.0.0.1:PORT -cluster-nats-url nats://127.0.0.1:PORT -cluster-node-id node-2",
		commandLine("/x/bin/tickrelay", node))

	require.Equal(t, []string{"-server-pid", "10"}, serverPIDArgs([]int{10}, nil))
	sim := append([]string{"-url", "ws://127.0.0.1:1/ws,ws://127.0.0.1:2/ws,ws://127.0.0.1:3/ws"},
		serverPIDArgs([]int{10, 11, 12}, nil)...)
	require.Equal(t, "client-sim -url ws://127.0.0.1:PORT/ws,ws://127.0.0.1:PORT/ws,ws://127.0.0.1:PORT/ws -server-pid $SERVER_PID -server-pids $OTHER_NODE_PIDS",
		commandLine("bin/client-sim", sim))
	require.Equal(t, []string{"-server-pid", "10", "-server-pids", "11,12"}, serverPIDArgs([]int{10, 11, 12}, nil))

	s := &server{url: "ws://a/ws", adminAddr: "a:1", peers: []*server{{url: "ws://b/ws", adminAddr: "b:1"}, {url: "ws://c/ws"}}}
	require.Equal(t, "ws://a/ws,ws://b/ws,ws://c/ws", s.urls())
	require.Equal(t, []string{"a:1", "b:1"}, s.adminAddrs())
}

func slicesContains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestRelayFiguresAdd(t *testing.T) {
	t.Parallel()
	f := RelayFigures{Closes: map[string]float64{"slow_consumer": 1}, ConnsOpen: 0, ReleasedS: 0.2}
	f.add(RelayFigures{Closes: map[string]float64{"slow_consumer": 2, "rate_limited": 1}, HandshakeFailures: map[string]float64{"timeout": 3}, ConnsOpen: 1, ReleasedS: 0.5})
	require.Equal(t, map[string]float64{"slow_consumer": 3, "rate_limited": 1}, f.Closes)
	require.Equal(t, map[string]float64{"timeout": 3}, f.HandshakeFailures)
	require.Equal(t, 1.0, f.ConnsOpen)
	require.Equal(t, 0.5, f.ReleasedS, "the slowest node")
	f.add(RelayFigures{ReleasedS: -1})
	require.Equal(t, -1.0, f.ReleasedS, "a node that kept connections")
}

func TestClusterReport(t *testing.T) {
	t.Parallel()
	r := fakeResults(t)
	var b strings.Builder
	writeCluster(&b, r)
	require.Empty(t, b.String(), "no cluster runs, no section")

	for round := 1; round <= 3; round++ {
		for _, sc := range []string{"s1", "s2"} {
			run := fakeRun(t, sc, refCluster, round, 4.0, 70, 10)
			run.Report.Broker = &report.Server{Cores: 0.1, CPUUsPerDelivery: 1.0}
			run.Relay = &RelayFigures{Closes: map[string]float64{"restart": 2}}
			if sc == "s2" && round == 2 {
				run.Report.Delivered = run.Report.Expected - 42_000 // 99%
			}
			r.Runs = append(r.Runs, run)
		}
	}
	writeCluster(&b, r)
	out := b.String()
	t.Log(out)
	require.Contains(t, out, "### Cluster: 3 nodes against one relay (issue 14)")
	// S1: the relay's 2.01-2.03 µs against the cluster's 4.0 (relays) and
	// 5.0 (relays + NATS), round by round.
	require.Contains(t, out, "| S1 small rooms | relays µs/delivery | 2.02 | 4.00 | 1.98 (1.97–1.99) |")
	require.Contains(t, out, "| S1 small rooms | NATS µs/delivery | – | 1.00 | – |")
	require.Contains(t, out, "| S1 small rooms | relays + NATS µs/delivery | 2.02 | 5.00 | 2.48 (2.46–2.49) |")
	require.Contains(t, out, "| S1 small rooms | p99 latency, ms | 35.0 | 70.0 | 2.00 |")
	require.Contains(t, out, "| S2 big rooms | delivered, worst round | 100.0000% | 99.0000% | – |")
	require.Contains(t, out, "**The cluster lost deliveries in S2 big rooms**")
	require.Contains(t, out, "| S1 small rooms | relays' closes, all rounds | – | restart=6 | – |")

	// A failed cluster run is counted, not hidden.
	r.Runs = append(r.Runs, Run{Scenario: "s1", System: refCluster, Round: 3, Err: "nats-server: no binary"})
	b.Reset()
	writeCluster(&b, r)
	require.Contains(t, b.String(), "| S1 small rooms | delivered, worst round | 100.0000% | 100.0000% (1 run(s) failed) | – |")

	// The whole results file carries the section and the cluster's rows.
	require.Contains(t, renderMain(r), "### Cluster: 3 nodes against one relay")
}
