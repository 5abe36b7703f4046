package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/room"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tickrelay.yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

func TestConfigPrecedenceFileEnvFlags(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "auth: off\ntick-rate: 20\nmax-tick-rate: 90\nlisten: 127.0.0.1:9001\nallowed-origins: [https://a.example, https://b.example]\n")
	env := envMap(map[string]string{"TICKRELAY_MAX_TICK_RATE": "100", "TICKRELAY_LISTEN": "127.0.0.1:9002"})
	cfg, path, err := LoadConfig([]string{"-config", file, "-listen", "127.0.0.1:9003"}, env, nil)
	require.NoError(t, err)
	require.Equal(t, file, path)
	require.Equal(t, 20, cfg.Room.DefaultTickRate, "from the file")
	require.Equal(t, 100, cfg.Room.MaxTickRate, "env beats file")
	require.Equal(t, "127.0.0.1:9003", cfg.Listen, "flag beats env")
	require.Equal(t, []string{"https://a.example", "https://b.example"}, cfg.AllowedOrigins)

	// Presets by room metadata, as a YAML list or a flag.
	presets := writeFile(t, "auth: off\ntick-presets: [mode=ranked:60, mode=casual:20]\n")
	cfg, _, err = LoadConfig([]string{"-config", presets}, envMap(nil), nil)
	require.NoError(t, err)
	require.Equal(t, []room.TickPreset{{Key: "mode", Value: "ranked", Rate: 60}, {Key: "mode", Value: "casual", Rate: 20}}, cfg.Room.TickPresets)
	_, _, err = LoadConfig([]string{"-tick-presets", "ranked60"}, envMap(nil), nil)
	require.ErrorContains(t, err, "not key=value:rate")

	// A boolean flag may be given alone or with a value.
	cfg, _, err = LoadConfig([]string{"-allow-immediate"}, envMap(nil), nil)
	require.NoError(t, err)
	require.True(t, cfg.Room.AllowImmediate)
	cfg, _, err = LoadConfig([]string{"-allow-immediate=false", "-reload-existing-rooms=true"}, envMap(nil), nil)
	require.NoError(t, err)
	require.False(t, cfg.Room.AllowImmediate)
	require.True(t, cfg.ReloadExistingRooms)

	// The file may also come from the environment.
	cfg, _, err = LoadConfig(nil, envMap(map[string]string{"TICKRELAY_CONFIG": file}), nil)
	require.NoError(t, err)
	require.Equal(t, 20, cfg.Room.DefaultTickRate)
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"tick-rat: 20\n":               `unknown setting "tick-rat"`,
		"tick-rate: fast\n":            `tick-rate: "fast" is not an integer`,
		"max-tick-rate: 5000\n":        "max-tick-rate: 5000 is out of range [0, 1000]",
		"idle-timeout: soon\n":         `idle-timeout: "soon" is not a non-negative duration`,
		"allow-immediate: maybe\n":     `allow-immediate: "maybe" is not a boolean`,
		"tick-rate: 1\ntick-rate: 2\n": `"tick-rate" is set twice`,
		"- a\n- b\n":                   "the top level must be a mapping",
	}
	for text, want := range cases {
		_, _, err := LoadConfig([]string{"-config", writeFile(t, text)}, envMap(nil), nil)
		require.ErrorContains(t, err, want, text)
	}
	_, _, err := LoadConfig(nil, envMap(map[string]string{"TICKRELAY_TICK_RATE": "x"}), nil)
	require.ErrorContains(t, err, "TICKRELAY_TICK_RATE")
	_, _, err = LoadConfig([]string{"-tick-rate", "-3"}, envMap(nil), nil)
	require.ErrorContains(t, err, "out of range")

	// Cross-field rules are checked when the server is built.
	_, err = New(Config{PingInterval: time.Minute, IdleTimeout: time.Second})
	require.ErrorContains(t, err, "idle-timeout", "named by its setting")

	// A config file must say whether players need tokens.
	_, _, err = LoadConfig([]string{"-config", writeFile(t, "tick-rate: 20\n")}, envMap(nil), nil)
	require.ErrorContains(t, err, "auth: off")
	_, _, err = LoadConfig([]string{"-config", writeFile(t, "tick-rate: 20\n")}, envMap(map[string]string{"TICKRELAY_AUTH": "off"}), nil)
	require.NoError(t, err, "the environment may say it")
	_, err = New(Config{Auth: AuthConfig{Mode: AuthJWT}})
	require.ErrorContains(t, err, "auth: jwt needs keys")
	_, err = New(Config{AdminListen: "0.0.0.0:7601"})
	require.ErrorContains(t, err, "admin-token-file")
	_, err = New(Config{AdminListen: "0.0.0.0:7601", AdminToken: "secret"})
	require.NoError(t, err)
}

func TestConfigExampleFileLoadsAndRuns(t *testing.T) {
	t.Parallel()
	cfg, _, err := LoadConfig([]string{"-config", "../tickrelay.example.yaml", "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, envMap(nil), nil)
	require.NoError(t, err)
	require.Equal(t, 30, cfg.Room.DefaultTickRate)
	cfg.Logger = quietLogger()
	srv, err := New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Start())
	c := dial(t, srv)
	require.EqualValues(t, 30, c.join("example", 1).GetTickRate())
	require.NoError(t, srv.Shutdown(t.Context()))
}

// The example file shows every setting it names at its default (or an
// explicit "off"/0 that means the default), so it cannot drift from the
// settings table.
func TestConfigExampleShowsDefaults(t *testing.T) {
	t.Parallel()
	var fromFile Config
	require.NoError(t, ApplyFile(&fromFile, "../tickrelay.example.yaml"))
	fromFile = fromFile.withDefaults()
	fromFile.Room = fromFile.Room.WithDefaults()
	def := defaults()
	for _, s := range settings {
		if s.Name == "auth" {
			continue // a config file must set it explicitly
		}
		require.Equal(t, s.get(&def), s.get(&fromFile), "tickrelay.example.yaml: %s is not its default", s.Name)
	}
}

func TestReloadAppliesToNewRoomsAndRejectsBadConfig(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	old := dial(t, srv)
	require.EqualValues(t, 50, old.join("before", 1).GetTickRate())

	next := srv.cfg
	next.Room.DefaultTickRate = 25
	require.NoError(t, srv.Reload(next))
	fresh := dial(t, srv)
	require.EqualValues(t, 25, fresh.join("after", 1).GetTickRate())
	old.send(pingMessage(7))
	pong := old.readUntil(isPong)
	require.EqualValues(t, 50, pong.GetPong().GetTickRate(), "existing rooms keep their rate")

	bad := srv.cfg
	bad.Room.MinTickRate = 100
	bad.Room.MaxTickRate = 10
	require.Error(t, srv.Reload(bad))
	again := dial(t, srv)
	require.EqualValues(t, 25, again.join("still", 1).GetTickRate(), "a rejected reload changes nothing")

	moving := srv.cfg
	moving.Room.DefaultTickRate = 40
	moving.ReloadExistingRooms = true
	require.NoError(t, srv.Reload(moving))
	require.Eventually(t, func() bool {
		old.send(pingMessage(8))
		return old.readUntil(isPong).GetPong().GetTickRate() == 40
	}, testTimeout, 20*time.Millisecond, "existing rooms move when asked")
}
