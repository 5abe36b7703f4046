package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// A command name with spaces and a parenthesis must not shift fields.
	stat := "4242 (evil ) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0"
	d, err := parseStatCPU([]byte(stat))
	require.NoError(t, err)
	require.Equal(t, 3250*time.Millisecond, d) // (250+75) ticks of 10 ms
	user, sys, err := parseStatTimes([]byte(stat))
	require.NoError(t, err)
	require.Equal(t, 2500*time.Millisecond, user)
	require.Equal(t, 750*time.Millisecond, sys)

	_, err = parseStatCPU([]byte("4242 no-parens S 1"))
	require.Error(t, err)
	_, err = parseStatCPU([]byte("4242 (x) S 1 2"))
	require.Error(t, err)
}

func TestParseStatusKiB(t *testing.T) {
	t.Parallel()
	status := "Name:\ttickrelay\nVmPeak:\t  900000 kB\nVmHWM:\t   48600 kB\nVmRSS:\t   41800 kB\n"
	v, err := parseStatusKiB([]byte(status), "VmRSS")
	require.NoError(t, err)
	require.Equal(t, int64(41800), v)
	v, err = parseStatusKiB([]byte(status), "VmHWM")
	require.NoError(t, err)
	require.Equal(t, int64(48600), v)
	_, err = parseStatusKiB([]byte(status), "VmSwap")
	require.Error(t, err)
	// /proc/meminfo has the same shape.
	v, err = parseStatusKiB([]byte("MemTotal:       24636316 kB\nSlab:             167756 kB\n"), "Slab")
	require.NoError(t, err)
	require.Equal(t, int64(167756), v)
}

func TestParseOpenFileLimit(t *testing.T) {
	t.Parallel()
	limits := "Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max processes             95000                95000                processes \n" +
		"Max open files            20000                20000                files     \n"
	n, err := parseOpenFileLimit([]byte(limits))
	require.NoError(t, err)
	require.Equal(t, 20000, n)
	_, err = parseOpenFileLimit([]byte("Max processes 1 1 processes\n"))
	require.Error(t, err)
}

func TestParseSlabObjSize(t *testing.T) {
	t.Parallel()
	slab := "slabinfo - version: 2.1\n" +
		"# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>\n" +
		"TCPv6                 26     26   2496   13    8 : tunables    0    0    0\n" +
		"TCP                38040  38064   2368   13    8 : tunables    0    0    0\n"
	require.Equal(t, 2368, parseSlabObjSize([]byte(slab), "TCP"))
	require.Equal(t, 2496, parseSlabObjSize([]byte(slab), "TCPv6"))
	require.Equal(t, 0, parseSlabObjSize([]byte(slab), "sock_inode_cache"))
}

func TestParseGauge(t *testing.T) {
	t.Parallel()
	body := "# HELP tickrelay_connections_open Open TCP connections.\n# TYPE tickrelay_connections_open gauge\n" +
		"tickrelay_connections_open 19872\ntickrelay_connections_opened_total 20300\n" +
		"tickrelay_closes_total{code=\"1000\",initiator=\"client\"} 7\n"
	v, ok := parseGauge(body, "tickrelay_connections_open")
	require.True(t, ok)
	require.Equal(t, 19872.0, v)
	_, ok = parseGauge(body, "tickrelay_closes_total") // labelled: not a plain sample
	require.False(t, ok)
	_, ok = parseGauge(body, "tickrelay_players")
	require.False(t, ok)
}
