package main

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReplaceRegion(t *testing.T) {
	t.Parallel()
	doc := "# Results\n\nhand-written intro\n\n" + beginMain + "\nold figures\n" + endMain + "\n\n## Analysis\n\nkept as written\n"
	out, err := replaceRegion(doc, beginMain, endMain, "new figures\n")
	require.NoError(t, err)
	require.Equal(t, "# Results\n\nhand-written intro\n\n"+beginMain+"\nnew figures\n"+endMain+"\n\n## Analysis\n\nkept as written\n", out)

	// Idempotent: regenerating gives the same file.
	again, err := replaceRegion(out, beginMain, endMain, "new figures\n")
	require.NoError(t, err)
	require.Equal(t, out, again)

	// Another region is independent of the first.
	both, err := replaceRegion(out, beginMicro, endMicro, "micro")
	require.NoError(t, err)
	require.Contains(t, both, "kept as written\n\n"+beginMicro+"\nmicro\n"+endMicro+"\n")
	both2, err := replaceRegion(both, beginMain, endMain, "newer")
	require.NoError(t, err)
	require.Contains(t, both2, beginMicro+"\nmicro\n"+endMicro)
	require.Contains(t, both2, beginMain+"\nnewer\n"+endMain)

	// Without markers the region is appended.
	app, err := replaceRegion("# Title", beginMain, endMain, "x")
	require.NoError(t, err)
	require.Equal(t, "# Title\n\n"+beginMain+"\nx\n"+endMain+"\n", app)
	empty, err := replaceRegion("", beginMain, endMain, "x")
	require.NoError(t, err)
	require.Equal(t, beginMain+"\nx\n"+endMain+"\n", empty)

	for _, bad := range []string{
		"a " + beginMain + " b",                          // no end
		"a " + endMain + " b",                            // no begin
		endMain + "\n" + beginMain,                       // wrong order
		beginMain + endMain + beginMain + "\n" + endMain, // twice
	} {
		_, err := replaceRegion(bad, beginMain, endMain, "x")
		require.Error(t, err, bad)
	}
}

func TestTable(t *testing.T) {
	t.Parallel()
	got := table([]string{"name", "value"}, "lr", [][]string{{"a|b", "1"}, {"short row"}})
	require.Equal(t, "| name | value |\n|---|---:|\n| a\\|b | 1 |\n| short row |  |\n", got)
	require.Panics(t, func() { table([]string{"a"}, "lr", nil) })
}

func TestNumberFormats(t *testing.T) {
	t.Parallel()
	require.Equal(t, "1,234,567", commas(1234567, 0))
	require.Equal(t, "999", commas(999, 0))
	require.Equal(t, "-12,345.68", commas(-12345.678, 2))
	require.Equal(t, dash, commas(math.NaN(), 0))
	require.Equal(t, "99.500%", pct(0.995, 3))
	require.Equal(t, dash, pct(math.Inf(1), 1))
	require.Equal(t, "0.33", f2(1.0/3))
	require.Equal(t, dash, f3(math.NaN()))
	require.Equal(t, "1.5", mib(1536))
	require.Equal(t, "0.300 (0.200–0.400)", spreadText(Spread{Median: 0.3, Min: 0.2, Max: 0.4, N: 3}, f3))
	require.Equal(t, "0.300", spreadText(Spread{Median: 0.3, Min: 0.3, Max: 0.3, N: 3}, f3))
	require.Equal(t, dash, spreadText(Spread{}, f3))
	require.Equal(t, "1,428", fmtBenchValue(1428.4))
	require.Equal(t, "0", fmtBenchValue(0))
	require.Equal(t, "25.5", fmtBenchValue(25.48))
	require.Equal(t, "2.76", fmtBenchValue(2.764))
}
