package main

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	relay "github.com/tickrelay/tickrelay/server"
)

// The caps the soak's memory bound is made of are the relay's defaults, as
// its settings table documents them.
func TestRelayCapsAreTheRelayDefaults(t *testing.T) {
	t.Parallel()
	fs := flag.NewFlagSet("tickrelay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg relay.Config
	relay.BindFlags(fs, &cfg)
	def := func(name string) int64 {
		f := fs.Lookup(name)
		require.NotNil(t, f, name)
		_, rest, ok := strings.Cut(f.Usage, "(default ")
		require.True(t, ok, "%s: %q", name, f.Usage)
		v, _, _ := strings.Cut(rest, ";")
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "%s default %q", name, v)
		return n
	}
	require.Equal(t, def("outbound-hard-bytes"), relayCaps.outboundHard)
	require.Equal(t, def("max-backlog-bytes"), relayCaps.maxBacklog)
	require.Equal(t, def("max-message-bytes"), relayCaps.maxMessage)
	require.Equal(t, int64(64<<10), relayCaps.heldMargin, "the relay holds a largest message plus 64 KiB of a congested client's input")
	require.Equal(t, int64(5248), perConnCapKiB())
}
