package server

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/server/wsproto"
)

// TestOperationsDocCoversEverySettingAndMetric keeps docs/OPERATIONS.md true:
// a setting or metric added without documentation fails here.
func TestOperationsDocCoversEverySettingAndMetric(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/OPERATIONS.md")
	require.NoError(t, err)
	text := string(doc)
	for _, s := range settings {
		require.Contains(t, text, "`"+s.Name+"`", "setting %s is not documented", s.Name)
	}
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

// TestProtocolDocListsEveryCloseCode keeps docs/PROTOCOL.md's close-code
// table in step with wsproto's table.
func TestProtocolDocListsEveryCloseCode(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	for c := wsproto.CauseNormal; c <= wsproto.CauseUnauthorized; c++ {
		r := wsproto.ReasonFor(c)
		row := fmt.Sprintf("| %d | ", r.Code)
		if r.Reason != "" {
			row += "`" + r.Reason + "`"
		}
		require.Contains(t, string(doc), row, "close cause %v", c)
	}
}
