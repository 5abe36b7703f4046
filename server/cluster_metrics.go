package server

import "github.com/prometheus/client_golang/prometheus"

// The cluster's metrics (package cluster's counters), collected when the
// relay runs as a cluster node.
var (
	descClusterConnected  = desc("tickrelay_cluster_nats_connected", "1 while the node is connected to NATS.")
	descClusterOwned      = desc("tickrelay_cluster_rooms_owned", "Rooms this node owns (ticks).")
	descClusterRemote     = desc("tickrelay_cluster_remote_seats", "Players of this node's rooms connected to other nodes.")
	descClusterEdgeConns  = desc("tickrelay_cluster_edge_connections", "This node's connections in rooms other nodes own.")
	descClusterPublished  = desc("tickrelay_cluster_messages_published_total", "Messages this node published to NATS.")
	descClusterPubBytes   = desc("tickrelay_cluster_published_bytes_total", "Bytes of those messages.")
	descClusterPubErrors  = desc("tickrelay_cluster_publish_errors_total", "Publishes NATS refused (disconnected, or a message over its max_payload).")
	descClusterQueueFull  = desc("tickrelay_cluster_queue_full_total", "Messages dropped because the node's publish queue was full.")
	descClusterNATSErrors = desc("tickrelay_cluster_nats_errors_total", "Asynchronous NATS errors (slow consumer and the like).")
	descClusterGaps       = desc("tickrelay_cluster_link_gaps_total", "Lost messages noticed between nodes, by direction (uplink: edge to owner; downlink: owner to edge); each makes the clients concerned resume.", "direction")
	descClusterStale      = desc("tickrelay_cluster_stale_downlinks_total", "Downlinks dropped for an older lease epoch (a fenced or paused former owner).")
	descClusterTakeovers  = desc("tickrelay_cluster_takeovers_total", "Rooms this node took over after their owner was gone.")
	descClusterLostRaces  = desc("tickrelay_cluster_takeover_races_lost_total", "Takeovers another node won.")
	descClusterHandoffs   = desc("tickrelay_cluster_handoffs_total", "Rooms handed over in drains (given or taken).")
	descClusterPlaced     = desc("tickrelay_cluster_rooms_placed_elsewhere_total", "Rooms a Join on this node created on another node (this node draining, or over cluster-max-owned-rooms).")
	descClusterFenced     = desc("tickrelay_cluster_fenced_total", "Rooms this node stopped serving because it could not renew their lease in time.")
	descClusterLeaseLost  = desc("tickrelay_cluster_lease_losses_total", "Leases found taken or gone at renewal.")
	descClusterRenewFails = desc("tickrelay_cluster_lease_renew_failures_total", "Lease renewals that failed (retried until the fence).")
)

func describeCluster(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descClusterConnected, descClusterOwned, descClusterRemote, descClusterEdgeConns, descClusterPublished,
		descClusterPubBytes, descClusterPubErrors, descClusterQueueFull, descClusterNATSErrors, descClusterGaps,
		descClusterStale, descClusterTakeovers, descClusterLostRaces, descClusterHandoffs, descClusterFenced,
		descClusterLeaseLost, descClusterRenewFails, descClusterPlaced,
	} {
		ch <- d
	}
}

func (m *metrics) collectCluster(ch chan<- prometheus.Metric) {
	n := m.srv.cluster
	if n == nil {
		return
	}
	st := n.Stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	connected := 0.0
	if st.Connected {
		connected = 1
	}
	gauge(descClusterConnected, connected)
	gauge(descClusterOwned, float64(st.RoomsOwned))
	gauge(descClusterRemote, float64(st.RemoteSeats))
	gauge(descClusterEdgeConns, float64(st.EdgeConns))
	counter(descClusterPublished, st.Published)
	counter(descClusterPubBytes, st.PublishedBytes)
	counter(descClusterPubErrors, st.PublishErrors)
	counter(descClusterQueueFull, st.QueueFull)
	counter(descClusterNATSErrors, st.NATSErrors)
	counter(descClusterGaps, st.UplinkGaps, "uplink")
	counter(descClusterGaps, st.DownlinkGaps, "downlink")
	counter(descClusterStale, st.StaleDropped)
	counter(descClusterTakeovers, st.Takeovers)
	counter(descClusterLostRaces, st.TakeoverLosses)
	counter(descClusterHandoffs, st.Handoffs)
	counter(descClusterFenced, st.Fenced)
	counter(descClusterLeaseLost, st.LeaseLosses)
	counter(descClusterRenewFails, st.RenewFailures)
	counter(descClusterPlaced, st.PlacedElsewhere)
}
