package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGauge(t *testing.T) {
	t.Parallel()
	body := "# HELP tickrelay_connections_open Open TCP connections.\n# TYPE tickrelay_connections_open gauge\n" +
		"tickrelay_connections_open 19872\n" +
		"# TYPE tickrelay_connections_opened_total counter\ntickrelay_connections_opened_total 20300\n" +
		"# TYPE tickrelay_rooms gauge\ntickrelay_rooms{mode=\"ticked\"} 7\n"
	v, ok, err := gauge(body, "tickrelay_connections_open")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 19872.0, v)
	_, ok, err = gauge(body, "tickrelay_connections_opened_total")
	require.NoError(t, err)
	require.False(t, ok, "a counter is not a gauge")
	_, ok, err = gauge(body, "tickrelay_rooms")
	require.NoError(t, err)
	require.False(t, ok, "only labelled samples")
	_, ok, err = gauge(body, "tickrelay_players")
	require.NoError(t, err)
	require.False(t, ok)
	_, _, err = gauge("tickrelay_x{ 1\n", "tickrelay_x")
	require.Error(t, err, "not an exposition")
}

func TestLabelled(t *testing.T) {
	t.Parallel()
	body := "# TYPE tickrelay_server_closes_total counter\n" +
		"tickrelay_server_closes_total{cause=\"rate_limited\"} 16\n" +
		"tickrelay_server_closes_total{cause=\"slow_message\"} 2\n" +
		"# TYPE tickrelay_connections_open gauge\ntickrelay_connections_open 3\n"
	m, err := labelled(body, "tickrelay_server_closes_total", "cause")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"rate_limited": 16, "slow_message": 2}, m)
	m, err = labelled(body, "tickrelay_handshake_failures_total", "reason")
	require.NoError(t, err)
	require.Empty(t, m, "none yet")
	m, err = labelled(body, "tickrelay_connections_open", "cause")
	require.NoError(t, err)
	require.Empty(t, m, "a gauge is not a counter")
	_, err = labelled("x{ 1\n", "x", "cause")
	require.Error(t, err)
}

func TestCounters(t *testing.T) {
	t.Parallel()
	body := "# TYPE tickrelay_cluster_link_gaps_total counter\n" +
		"tickrelay_cluster_link_gaps_total{direction=\"downlink\"} 4\n" +
		"tickrelay_cluster_link_gaps_total{direction=\"uplink\"} 0\n" +
		"# TYPE tickrelay_cluster_fenced_total counter\ntickrelay_cluster_fenced_total 2\n" +
		"# TYPE tickrelay_cluster_rooms_owned gauge\ntickrelay_cluster_rooms_owned 3\n" +
		"# TYPE tickrelay_server_closes_total counter\ntickrelay_server_closes_total{cause=\"restart\"} 1\n"
	m, err := counters(body, "tickrelay_cluster_")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"link_gaps_total{direction=downlink}": 4, "fenced_total": 2}, m)
}
