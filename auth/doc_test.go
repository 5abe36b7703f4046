package auth

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocListsEveryClaimAndReason keeps the contract in doc.go true: every
// claim the payload struct reads has a row in the claims table, every
// Reason a row in the refusals list, and the example payload is valid.
func TestDocListsEveryClaimAndReason(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	doc := string(src)

	var names []string
	var collect func(reflect.Type)
	collect = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			if f.Anonymous {
				collect(f.Type)
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			require.NotEmpty(t, name, "field %s has no claim name", f.Name)
			names = append(names, name)
		}
	}
	collect(reflect.TypeFor[tokenClaims]())
	require.Contains(t, names, "sub")
	require.Contains(t, names, "max_tick_rate")
	for _, name := range names {
		require.Contains(t, doc, "\n//\t"+name+" ", "claim %q has no row in the claims table of doc.go", name)
	}
	for _, r := range Reasons() {
		require.Contains(t, doc, "\n//\t"+string(r)+" ", "reason %q has no row in the refusals list of doc.go", r)
	}

	// The example payload.
	start := strings.Index(doc, "//\t{\"sub\"")
	require.Positive(t, start)
	end := strings.Index(doc[start:], "}}\n") + start + 2
	var payload strings.Builder
	for _, line := range strings.Split(doc[start:end], "\n") {
		payload.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "//"), "\t"))
	}
	var tc tokenClaims
	require.NoError(t, json.Unmarshal([]byte(payload.String()), &tc), payload.String())
	c, e := tc.claims(DefaultMaxMetaBytes)
	require.Nil(t, e)
	require.True(t, c.AllowsRoom("cup-2026-final"))
	require.NoError(t, c.CheckCreate("cup-2026-final", 60, 10))
	require.Equal(t, "Ada", c.Meta["name"])
}
