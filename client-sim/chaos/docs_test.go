package chaos

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the persona table of client-sim/README.md from Personas")

const (
	personasBegin = "<!-- personas:begin (generated from client-sim/chaos/personas.go; go test ./client-sim/chaos -run TestREADME -update) -->\n"
	personasEnd   = "<!-- personas:end -->"
)

// renderPersonas is client-sim/README.md's persona table.
func renderPersonas() string {
	var b strings.Builder
	b.WriteString("| persona | what its connections do | the documented answer it must get |\n|---|---|---|\n")
	for _, p := range Personas {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", p.Name, strings.ReplaceAll(p.Does, "|", `\|`), strings.ReplaceAll(p.Expected, "|", `\|`))
	}
	return b.String()
}

// TestREADMEPersonaTable keeps client-sim/README.md's persona table the one
// rendered from Personas.
func TestREADMEPersonaTable(t *testing.T) {
	path := "../README.md"
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(doc)
	i, j := strings.Index(text, personasBegin), strings.Index(text, personasEnd)
	require.True(t, i >= 0 && j > i, "client-sim/README.md lacks the persona markers")
	want := text[:i+len(personasBegin)] + renderPersonas() + text[j:]
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		text = want
	}
	require.Equal(t, want, text, "the persona table in client-sim/README.md is stale: go test ./client-sim/chaos -run TestREADME -update")
	for _, p := range Personas {
		require.NotEmpty(t, p.Does, p.Name)
		require.NotEmpty(t, p.Expected, p.Name)
		require.NotNil(t, p.attack, p.Name)
		require.NotNil(t, p.judge, p.Name)
		require.Positive(t, p.gap, p.Name)
	}
}
