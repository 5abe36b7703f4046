package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScenarioFileAndFlagPrecedence(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "s1.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
# S1 small rooms
clients: 1000
room-size: 8
rate: 20
duration: 30s
warmup: 5s
local-addrs: 127.0.0.1,127.0.0.2
immediate: true
max-loss: 0.001
chaos: 100
chaos-personas: burst,trickle
`), 0o644))

	cfg, err := parseArgs([]string{"-scenario", path, "-clients", "10", "-json", "-"}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, 10, cfg.Clients, "a flag given explicitly wins over the file")
	require.Equal(t, 8, cfg.RoomSize)
	require.Equal(t, 20.0, cfg.Rate)
	require.Equal(t, 30*time.Second, cfg.Duration)
	require.Equal(t, 5*time.Second, cfg.Warmup)
	require.True(t, cfg.Immediate)
	require.Equal(t, 0.001, cfg.MaxLoss)
	require.Equal(t, "-", cfg.JSON)
	require.Equal(t, 64, cfg.Payload, "keys absent from the file keep their defaults")
	require.Equal(t, 100, cfg.Chaos)
	require.Equal(t, "burst,trickle", cfg.ChaosPersonas)
	addrs, err := cfg.localAddrs()
	require.NoError(t, err)
	require.Len(t, addrs, 2)
}

func TestScenarioFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	require.NoError(t, os.WriteFile(typo, []byte("client: 10\n"), 0o644))
	_, err := parseArgs([]string{"-scenario", typo}, &bytes.Buffer{})
	require.ErrorContains(t, err, "client", "unknown keys are refused")

	_, err = parseArgs([]string{"-scenario", filepath.Join(dir, "missing.yaml")}, &bytes.Buffer{})
	require.Error(t, err)

	empty := filepath.Join(dir, "empty.yaml")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	cfg, err := parseArgs([]string{"-scenario", empty}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Equal(t, defaultConfig().Clients, cfg.Clients)
}

func TestServerPIDs(t *testing.T) {
	t.Parallel()
	cfg, err := parseArgs([]string{"-server-pid", "10", "-server-pids", "11, 12", "-broker-pid", "13"}, &bytes.Buffer{})
	require.NoError(t, err)
	pids, err := cfg.serverPIDs()
	require.NoError(t, err)
	require.Equal(t, []int{10, 11, 12}, pids)
	require.Equal(t, 13, cfg.BrokerPID)

	_, err = parseArgs([]string{"-server-pids", "11"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "server-pids needs server-pid")
	_, err = parseArgs([]string{"-server-pid", "10", "-server-pids", "11,x"}, &bytes.Buffer{})
	require.ErrorContains(t, err, `"x" is not a process id`)
	_, err = parseArgs([]string{"-broker-pid", "-1"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "broker-pid")
}
