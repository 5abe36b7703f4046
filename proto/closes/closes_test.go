package closes

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the close-code table in docs/PROTOCOL.md from Table")

func TestTableIsComplete(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, c := range All() {
		info := Of(c)
		require.NotEmpty(t, info.Name, "cause %d has no entry", c)
		require.False(t, names[info.Name], "name %s twice", info.Name)
		names[info.Name] = true
		require.Equal(t, info.Name, c.String())
		require.True(t, sendable(info.Code), "%s: %d cannot be sent", c, info.Code)
		if c != Normal {
			require.NotEqual(t, uint16(1000), info.Code, "%s: never 1000 for a forced close", c)
			require.NotEmpty(t, info.Reason, "%s: forced closes say why", c)
		}
		require.LessOrEqual(t, len(info.Reason), MaxReasonBytes)
		for i := 0; i < len(info.Reason); i++ {
			require.Less(t, info.Reason[i], byte(0x80), "%s: reasons are ASCII", c)
		}
		if info.Code >= 4000 {
			require.Equal(t, info.Code < 4500, info.Reconnect, "%s: the 4000-4499 / 4500-4999 split", c)
		}
		require.Equal(t, info.Reconnect, MayReconnect(int(info.Code)), "%s: Reconnect and MayReconnect agree", c)
		if info.HTTPStatus != 0 {
			require.True(t, info.HTTPStatus >= 400 && info.HTTPStatus < 600, "%s: HTTP %d", c, info.HTTPStatus)
		}
		require.NotEmpty(t, info.When)
	}
	require.Equal(t, Of(Internal), Of(0))
	require.Equal(t, Of(Internal), Of(200))
	require.Equal(t, "Cause(200)", Cause(200).String())
}

func sendable(code uint16) bool {
	return code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
}

func TestMayReconnect(t *testing.T) {
	t.Parallel()
	for _, c := range []int{1001, 1005, 1006, 1011, 1012, 1013, 1014, 4000, 4003, 4499} {
		require.True(t, MayReconnect(c), "code %d", c)
	}
	for _, c := range []int{1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 3999, 4500, 4501, 4999, 0, 5000} {
		require.False(t, MayReconnect(c), "code %d", c)
	}
}

// renderTable is the close-code table of docs/PROTOCOL.md.
func renderTable() string {
	var b strings.Builder
	b.WriteString("| Code | Reason sent | Error sent before | HTTP before upgrade | Client may reconnect | Seat kept | The relay | When |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, c := range All() {
		info := Of(c)
		reason := "*(empty)*"
		if info.Reason != "" {
			reason = "`" + info.Reason + "`"
		}
		errCode := "–"
		if info.Error != 0 {
			errCode = "`" + strings.TrimPrefix(info.Error.String(), "ERROR_CODE_") + "`"
		}
		httpStatus := "–"
		if info.HTTPStatus != 0 {
			httpStatus = fmt.Sprint(info.HTTPStatus)
		}
		reconnect := "no"
		if info.Reconnect {
			reconnect = "yes, with backoff"
			if c == Restart || c == Draining {
				reconnect = "yes, and resume"
			}
		}
		seat := "no"
		if info.KeepsSeat {
			seat = "for the seat grace"
		}
		how := "waits for the client's Close"
		if info.Fail {
			how = "fails the connection"
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s |\n", info.Code, reason, errCode, httpStatus, reconnect, seat, how, info.When)
	}
	return b.String()
}

const (
	beginMarker = "<!-- closes:begin (generated from proto/closes; go test ./proto/closes -update) -->\n"
	endMarker   = "<!-- closes:end -->"
)

func TestProtocolDocTableInSync(t *testing.T) {
	path := "../../docs/PROTOCOL.md"
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	text := string(doc)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	require.True(t, i >= 0 && j > i, "docs/PROTOCOL.md lacks the close-code markers")
	want := text[:i+len(beginMarker)] + renderTable() + text[j:]
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	require.Equal(t, want, text, "docs/PROTOCOL.md's close-code table is stale: go test ./proto/closes -update")
}
