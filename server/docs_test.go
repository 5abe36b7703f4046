package server

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the settings table of docs/OPERATIONS.md from the settings table")

const (
	settingsBegin = "<!-- settings:begin (generated from server/settings.go; go test ./server -run TestOperationsDoc -update-docs) -->\n"
	settingsEnd   = "<!-- settings:end -->"
)

// renderSettings is docs/OPERATIONS.md's settings table.
func renderSettings() string {
	var b strings.Builder
	b.WriteString("| setting (flag / file key) | default | meaning | on reload |\n|---|---|---|---|\n")
	for _, s := range settings {
		def := s.defaultText()
		if s.DefaultText == "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", s.Name, def, strings.ReplaceAll(s.Help, "|", `\|`), s.Reload)
	}
	return b.String()
}

// TestOperationsDocSettingsAndMetrics keeps docs/OPERATIONS.md true: its
// settings table is the one rendered from the settings table (defaults and
// reload behaviour included), and every metric is documented.
func TestOperationsDocSettingsAndMetrics(t *testing.T) {
	path := "../docs/OPERATIONS.md"
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(doc)
	i, j := strings.Index(text, settingsBegin), strings.Index(text, settingsEnd)
	require.True(t, i >= 0 && j > i, "docs/OPERATIONS.md lacks the settings markers")
	want := text[:i+len(settingsBegin)] + renderSettings() + text[j:]
	if *updateDocs {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		text = want
	}
	require.Equal(t, want, text, "the settings table in docs/OPERATIONS.md is stale: go test ./server -run TestOperationsDoc -update-docs")

	srv, err := New(Config{Logger: quietLogger()})
	require.NoError(t, err)
	descs := make(chan *prometheus.Desc, 100)
	srv.metrics.Describe(descs)
	close(descs)
	for d := range descs {
		name := d.String()
		name = name[strings.Index(name, `fqName: "`)+len(`fqName: "`):]
		name = name[:strings.Index(name, `"`)]
		require.Contains(t, text, "`"+name, "metric %s is not documented", name)
	}
}
