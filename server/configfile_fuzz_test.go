package server

import (
	"os"
	"testing"
)

// FuzzApplyYAML feeds arbitrary files to the config parser: it must never
// panic, and whatever it accepts must be a config that either validates or
// is rejected by New with an error (never a crash at start-up).
func FuzzApplyYAML(f *testing.F) {
	example, err := os.ReadFile("../tickrelay.example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add([]byte("tick-rate: 20\nallowed-origins: [a, b]\n"))
	f.Add([]byte("tick-rate: {a: 1}\n"))
	f.Add([]byte("- 1\n- 2\n"))
	f.Add([]byte("idle-timeout: 1s\nping-interval: 2s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg Config
		if applyYAML(&cfg, data, "fuzz.yaml") != nil {
			return
		}
		cfg.Logger = quietLogger()
		_, _ = New(cfg) // validation errors are fine; panics are not
	})
}
