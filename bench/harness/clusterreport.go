package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// The cluster's figures: the NATS server's CPU per delivery (client-sim
// -broker-pid) and the relays' and NATS's together. NaN when the run has
// no NATS figures (a single relay).
var (
	figBrokerUs = func(r Run) float64 {
		if r.Report.Broker == nil || r.Report.Delivered == 0 {
			return math.NaN()
		}
		return r.Report.Broker.CPUUsPerDelivery
	}
	figBrokerCores = func(r Run) float64 {
		if r.Report.Broker == nil {
			return math.NaN()
		}
		return r.Report.Broker.Cores
	}
	figClusterUs = func(r Run) float64 { return figUsPerDelivery(r) + figBrokerUs(r) }
	// figWithBrokerUs is the CPU per delivery of everything the system
	// runs: the relays, and NATS when it has one.
	figWithBrokerUs = func(r Run) float64 {
		if r.Report.Broker == nil {
			return figUsPerDelivery(r)
		}
		return figClusterUs(r)
	}
)

// clusterScenarios are the scenarios that ran the cluster (at least once,
// failed runs included) beside the single relay, in the results' order.
func clusterScenarios(r *Results) []Scenario {
	var out []Scenario
	for _, sc := range r.Scenarios {
		if slices.Contains(sc.Systems, refRelay) && len(r.runsOf(sc.ID, refCluster)) > 0 {
			out = append(out, sc)
		}
	}
	return out
}

// writeCluster compares the 3-node cluster with the single relay in the
// same rounds (issue 14): CPU per delivery of the relays alone and with
// NATS, latency and delivery, with the cluster over the single relay
// round by round.
func writeCluster(b *strings.Builder, r *Results) {
	scs := clusterScenarios(r)
	if len(scs) == 0 {
		return
	}
	type fig struct {
		label string
		f     func(Run) float64
		fmt   func(float64) string
		ratio bool
	}
	figs := []fig{
		{"delivered, worst round", nil, nil, false},
		{"relays µs/delivery", figUsPerDelivery, f2, true},
		{"NATS µs/delivery", figBrokerUs, f2, false},
		{"relays + NATS µs/delivery", figWithBrokerUs, f2, true},
		{"relays cores", figCore, f2, true},
		{"NATS cores", figBrokerCores, f2, false},
		{"p50 latency, ms", figP50, f1, true},
		{"p99 latency, ms", figP99, f1, true},
		{"machine busy cores", figMachineCores, f2, false},
	}
	var rows [][]string
	for _, sc := range scs {
		for _, fg := range figs {
			row := []string{sc.Title, fg.label}
			if fg.f == nil {
				for _, sys := range []string{refRelay, refCluster} {
					row = append(row, worstDeliveryText(r, sc.ID, sys))
				}
				rows = append(rows, append(row, dash))
				closes := []string{sc.Title, "relays' closes, all rounds"}
				for _, sys := range []string{refRelay, refCluster} {
					closes = append(closes, closesText(r, sc.ID, sys))
				}
				rows = append(rows, append(closes, dash))
				continue
			}
			for _, sys := range []string{refRelay, refCluster} {
				row = append(row, fg.fmt(median(r.byRound(sc.ID, sys, fg.f))))
			}
			ratio := dash
			if fg.ratio {
				ratio = spreadText(spreadOf(pairedRatios(r.byRound(sc.ID, refCluster, fg.f), r.byRound(sc.ID, refRelay, fg.f))), f2)
			}
			rows = append(rows, append(row, ratio))
		}
	}
	b.WriteString("### Cluster: 3 nodes against one relay (issue 14)\n\n")
	fmt.Fprintf(b, "`%s`: three relay processes (30 Hz, admin API on and scraped, as `%s`) on one nats-server %s with JetStream, client-sim given the three URLs and its clients dealt to them round-robin. A room is owned by one node; its players on the other two nodes (with rooms spread over the nodes, most of them) are on an edge, which sends their inputs to the owner and receives the owner's frames through NATS: the extra hop. Relay CPU and memory are the sum over the three processes (client-sim `-server-pid` and `-server-pids`, sampled at the same instants), NATS's CPU is the nats-server process (`-broker-pid`) over the same window. Medians over %d round(s); the ratio is the cluster's figure over the single relay's in the same round, median (range) over rounds. Both share the machine's cores with client-sim (and the cluster with its NATS server), so latency under load here includes that contention.\n\n",
		refCluster, refRelay, natsVersion, r.Rounds)
	b.WriteString(table([]string{"scenario", "figure", "`" + refRelay + "`", "`" + refCluster + "`", "cluster / relay"}, "llrrr", rows))
	if lossy := clusterLossy(r, scs); len(lossy) > 0 {
		fmt.Fprintf(b, "\n**The cluster lost deliveries in %s**: its µs per delivery there divide the work of the clients it lost by fewer deliveries, so they are not the cost of the extra hop. The relays' closes (their own count, from /metrics after each run) say why.\n", strings.Join(lossy, ", "))
	}
	b.WriteString("\n")
}

// clusterLossy are the titles of the scenarios where a cluster run failed
// or delivered less than everything expected.
func clusterLossy(r *Results, scs []Scenario) []string {
	var out []string
	for _, sc := range scs {
		for _, run := range r.runsOf(sc.ID, refCluster) {
			if !run.ok() || run.Report.Delivered < run.Report.Expected {
				out = append(out, sc.Title)
				break
			}
		}
	}
	return out
}

// closesText is the relays' own count of the closes they made (summed
// over a cluster's nodes and over rounds), by cause.
func closesText(r *Results, scenario, system string) string {
	sum := map[string]int64{}
	seen := false
	for _, run := range r.runsOf(scenario, system) {
		if run.Relay == nil {
			continue
		}
		seen = true
		for k, v := range run.Relay.Closes {
			sum[k] += int64(v)
		}
	}
	if !seen {
		return dash
	}
	return errorText(sum)
}

// worstDeliveryText is the worst round's delivered/expected of a system,
// with its failed runs counted.
func worstDeliveryText(r *Results, scenario, system string) string {
	worst, failed := math.NaN(), 0
	for _, run := range r.runsOf(scenario, system) {
		if !run.ok() {
			failed++
			continue
		}
		if d := figDelivery(run); !math.IsNaN(d) && (math.IsNaN(worst) || d < worst) {
			worst = d
		}
	}
	s := pct(worst, 4)
	if failed > 0 {
		s += fmt.Sprintf(" (%d run(s) failed)", failed)
	}
	return s
}
