package splitproxy

import (
	"os"
	"strconv"
	"testing"
)

// SeedEnv names the environment variable that replays a seed:
// SPLITPROXY_SEED=1234 go test -run TestX ./pkg.
const SeedEnv = "SPLITPROXY_SEED"

// ForTest starts a Proxy to target for the lifetime of t. The seed comes
// from SPLITPROXY_SEED when set, else it is random; it is logged at once and
// again if the test fails, so that a failure can be replayed. mutate, if not
// nil, adjusts the config.
func ForTest(t testing.TB, target string, mutate func(*Config)) *Proxy {
	t.Helper()
	cfg := Config{Target: target}
	if v := os.Getenv(SeedEnv); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("splitproxy: %s=%q is not a number", SeedEnv, v)
		}
		cfg.Seed = seed
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := Start(cfg)
	if err != nil {
		t.Fatalf("splitproxy: %v", err)
	}
	t.Logf("splitproxy: %s -> %s, seed %d (replay with %s=%d)", p.Addr(), target, p.Seed(), SeedEnv, p.Seed())
	t.Cleanup(func() {
		_ = p.Close()
		if t.Failed() {
			t.Logf("splitproxy: this test ran with seed %d; replay with %s=%d", p.Seed(), SeedEnv, p.Seed())
		}
	})
	return p
}
