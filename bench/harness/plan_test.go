package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseLoad(t *testing.T) {
	t.Parallel()
	yml := []byte("# S1\nclients: 1000\nroom-size: 8\nrate: 20\npayload: 64\nwarmup: 5s\nduration: 30s\nmax-loss: 0.001\n")
	l, err := parseLoad(yml, nil)
	require.NoError(t, err)
	require.Equal(t, Load{Clients: 1000, RoomSize: 8, Rate: 20, Payload: 64, Warmup: 5 * time.Second,
		Duration: 30 * time.Second, Drain: 5 * time.Second, Ramp: 1000}, l, "keys it does not know are client-sim's business")

	l, err = parseLoad(yml, map[string]string{"warmup": "1s", "duration": "5s", "clients": "200"})
	require.NoError(t, err)
	require.Equal(t, time.Second, l.Warmup)
	require.Equal(t, 5*time.Second, l.Duration)
	require.Equal(t, 200, l.Clients)

	_, err = parseLoad([]byte("duration: soon\n"), nil)
	require.Error(t, err)
	_, err = parseLoad(yml, map[string]string{"clients": "many"})
	require.Error(t, err)
	_, err = parseLoad([]byte("clients: [1\n"), nil)
	require.Error(t, err)
}

func TestPlans(t *testing.T) {
	t.Parallel()
	full := fullPlan()
	require.Equal(t, 3, full.Rounds)
	require.NoError(t, full.filter(defaultScenarios("full"), nil))
	require.Equal(t, "s1,s2,s3,s4,s5,soak", scenarioIDs(full.Scenarios))
	for _, sc := range full.Scenarios {
		if sc.ID == soakID {
			require.Equal(t, []string{refRelay, refNoChaos}, sc.Systems, "the relay beside the chaos and its clean control")
			require.Empty(t, sc.RelayArgs, "the full soak runs the relay at its defaults")
			require.Empty(t, sc.Overrides)
			continue
		}
		require.Subset(t, sc.Systems, []string{refRelay, base30}, sc.ID)
		if !sc.Reach {
			// Side by side: the relay, its floor, Centrifugo, the baseline.
			require.Subset(t, sc.Systems, []string{refFloor, refCentrifugo}, sc.ID)
		}
		for _, name := range sc.Systems {
			_, err := systemByName(name)
			require.NoError(t, err)
		}
	}
	require.Subset(t, full.Scenarios[0].Systems, []string{refImm, refNoAdmin, baseImm})
	require.True(t, full.uses(refCentrifugo))
	require.NoError(t, full.load("../.."), "the scenario files of the repository")
	soak := full.Scenarios[len(full.Scenarios)-1]
	require.Equal(t, 1000, soak.Load.Clients)
	require.Equal(t, 100, soak.Load.Chaos, "10% chaos clients beside S1")
	s1 := full.Scenarios[0].Load
	s1.Chaos = soak.Load.Chaos
	require.Equal(t, s1, soak.Load, "the soak's honest load is S1's")
	est := full.estimate()
	t.Logf("full plan: about %s", est.Round(time.Minute))
	require.Greater(t, est, 30*time.Minute)
	require.Less(t, est, 55*time.Minute, "make bench stays within its time (the soak added ~5 minutes to ~42, the cluster ~4 more)")

	quick := quickPlan()
	require.NoError(t, quick.filter(defaultScenarios("quick"), nil))
	require.Equal(t, "s1,s2,s3,soak", scenarioIDs(quick.Scenarios))
	for _, sc := range quick.Scenarios {
		if sc.ID == soakID {
			require.Equal(t, soakPair, sc.Systems)
			continue
		}
		require.Equal(t, []string{refRelay, refFloor, base30}, sc.Systems)
	}
	require.NoError(t, quick.load("../.."))
	qs := quick.Scenarios[3]
	require.Equal(t, 200, qs.Load.Clients)
	require.Equal(t, 20, qs.Load.Chaos)
	require.Equal(t, 5*time.Second, qs.Load.Duration)
	relay, _ := systemByName(refRelay)
	require.Equal(t, quickSoakRelayArgs, qs.serverArgsFor(relay), "both soak runs get the shortened limits")
	base, _ := systemByName(base30)
	require.Empty(t, qs.serverArgsFor(base))
	require.Less(t, quick.estimate(), 2*time.Minute, "make bench-quick stays under ~2 minutes")
	t.Logf("quick plan: about %s", quick.estimate().Round(time.Second))
	require.False(t, quick.uses(refCentrifugo), "quick mode does not build Centrifugo unless asked")

	p := fullPlan()
	require.NoError(t, p.filter([]string{"s3", "s1"}, []string{refRelay, "relay-imm"}))
	require.Equal(t, "s1,s3", scenarioIDs(p.Scenarios))
	require.Equal(t, []string{refRelay, "relay-imm"}, p.Scenarios[1].Systems)
	pp := fullPlan()
	require.Error(t, pp.filter([]string{"s9"}, nil))
	require.Error(t, pp.filter([]string{"s1"}, []string{"nginx"}))
}

func TestComparisons(t *testing.T) {
	t.Parallel()
	got := comparisons([]string{refRelay, refFloor, refCentrifugo, baseImm, base30, "relay-imm", refNoAdmin})
	require.Equal(t, []Comparison{
		{refRelay, refFloor}, {refRelay, refCentrifugo},
		{refRelay, baseImm}, {refRelay, base30},
		{"relay-imm", baseImm}, {"relay-imm", base30},
		{refRelay, refNoAdmin},
	}, got)
	require.Equal(t, []Comparison{{refRelay, refNoChaos}}, comparisons(soakPair))
	require.Empty(t, comparisons([]string{base30}))
}

func TestCommandLines(t *testing.T) {
	t.Parallel()
	sys, err := systemByName("relay-imm")
	require.NoError(t, err)
	args := serverArgs(sys, 40001, 40002)
	require.Equal(t, []string{"-listen", "127.0.0.1:40001", "-log-level", "warn", "-admin-listen", "127.0.0.1:40002", "-allow-immediate=true"}, args)
	require.Equal(t, "tickrelay -listen 127.0.0.1:PORT -log-level warn -admin-listen 127.0.0.1:PORT -allow-immediate=true",
		commandLine("/tmp/x/bin/tickrelay", args))

	require.Equal(t, []string{"-listen", "127.0.0.1:40001", "-log-level", "warn", "-admin-listen", "127.0.0.1:40002", "-allow-immediate=true", "-rate-limit-grace", "1s"},
		serverArgs(sys, 40001, 40002, "-rate-limit-grace", "1s"), "a scenario's relay flags come last")
	nochaos, _ := systemByName(refNoChaos)
	require.Equal(t, []string{"-chaos", "0"}, nochaos.SimArgs)
	require.True(t, nochaos.Admin)

	noAdmin, _ := systemByName(refNoAdmin)
	require.Equal(t, []string{"-listen", "127.0.0.1:1", "-log-level", "warn", "-admin-listen", "off"}, serverArgs(noAdmin, 1, 0))
	base, _ := systemByName(base30)
	require.Equal(t, []string{"-listen", "127.0.0.1:1", "-tick-rate", "30"}, serverArgs(base, 1, 0))
	ref, _ := systemByName(refFloor)
	require.Equal(t, []string{"-listen", "127.0.0.1:1", "-tick-rate", "30"}, serverArgs(ref, 1, 0))
	require.Equal(t, "ws://127.0.0.1:1/ws", wsURL(ref, "127.0.0.1:1"))
	require.Equal(t, "http://127.0.0.1:1/healthz", healthURL(ref, "127.0.0.1:1"))
	cf, _ := systemByName(refCentrifugo)
	require.Equal(t, []string{"--config", "bench/centrifugo/config.json", "--http_server.port", "40001"}, serverArgs(cf, 40001, 0))
	require.Equal(t, "ws://127.0.0.1:1/connection/websocket", wsURL(cf, "127.0.0.1:1"))
	require.Equal(t, "http://127.0.0.1:1/health", healthURL(cf, "127.0.0.1:1"))
	require.Equal(t, []string{"-protocol", "centrifugo"}, cf.SimArgs)
	require.Equal(t, "centrifugo --config bench/centrifugo/config.json --http_server.port PORT", commandLine("/x/bin/centrifugo", serverArgs(cf, 40001, 0)))
	require.Empty(t, healthURL(base, "127.0.0.1:1"))

	sim := commandLine("bin/client-sim", []string{"-scenario", "bench/scenarios/s1.yaml", "-url", "ws://127.0.0.1:5555/ws",
		"-json", "/abs/out/runs/s1-relay-30hz-r1.json", "-server-pid", "4242", "-local-addrs", "127.0.0.1,127.0.0.2"})
	require.Equal(t, "client-sim -scenario bench/scenarios/s1.yaml -url ws://127.0.0.1:PORT/ws -json REPORT.json -server-pid $SERVER_PID -local-addrs 127.0.0.1,127.0.0.2", sim)
}
