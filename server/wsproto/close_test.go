package wsproto

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

var updateCloseCodes = flag.Bool("update-close-codes", false, "rewrite CLOSE_CODES.md from closeTable")

func TestReasonForEveryCause(t *testing.T) {
	t.Parallel()
	for c := Cause(1); c < numCauses; c++ {
		r := ReasonFor(c)
		require.NotEmpty(t, closeTable[c].name, "cause %d has no table entry", c)
		require.Equal(t, c.String(), closeTable[c].name)
		require.True(t, validCloseCode(r.Code), "%s: %d is not sendable", c, r.Code)
		require.NotEqual(t, ws.StatusNoStatusRcvd, r.Code)
		require.NotEqual(t, ws.StatusAbnormalClosure, r.Code)
		if c != CauseNormal {
			require.NotEqual(t, ws.StatusNormalClosure, r.Code, "%s: never 1000 for a forced close", c)
			require.NotEmpty(t, r.Reason, "%s: forced closes say why", c)
		}
		require.LessOrEqual(t, len(r.Reason), MaxCloseReasonBytes)
		require.Equal(t, r.Reason, truncateReason(r.Reason), "%s: reason needs no repair", c)
		if r.HTTPStatus != 0 {
			require.True(t, r.HTTPStatus >= 400 && r.HTTPStatus < 600, "%s: HTTP %d", c, r.HTTPStatus)
		}
	}
	require.Equal(t, ReasonFor(CauseInternal), ReasonFor(0))
	require.Equal(t, ReasonFor(CauseInternal), ReasonFor(200))
	require.Equal(t, "Cause(200)", Cause(200).String())
}

func TestCloseCodeRanges(t *testing.T) {
	t.Parallel()
	// The brief's split: 4000-4499 may reconnect, 4500-4999 must not.
	for c := Cause(1); c < numCauses; c++ {
		code := ReasonFor(c).Code
		if code >= 4000 {
			require.Equal(t, code < 4500, MayReconnect(code), c.String())
		}
	}
	require.Equal(t, ws.StatusCode(4000), ReasonFor(CauseSlowConsumer).Code)
	require.Equal(t, ws.StatusCode(4001), ReasonFor(CauseIdleTimeout).Code)
	require.Equal(t, ws.StatusCode(4002), ReasonFor(CauseOverloaded).Code)
	require.Equal(t, ws.StatusCode(4500), ReasonFor(CauseKicked).Code)
	require.Equal(t, ws.StatusCode(4501), ReasonFor(CauseUnauthorized).Code)
	require.Equal(t, ws.StatusUnsupportedData, ReasonFor(CauseTextFrame).Code)
	require.Equal(t, ws.StatusPolicyViolation, ReasonFor(CausePolicy).Code)
	require.Equal(t, ws.StatusMessageTooBig, ReasonFor(CauseTooBig).Code)
}

func TestMayReconnect(t *testing.T) {
	t.Parallel()
	yes := []ws.StatusCode{1001, 1005, 1006, 1011, 1012, 1013, 4000, 4001, 4002, 4499}
	no := []ws.StatusCode{1000, 1002, 1003, 1007, 1008, 1009, 1010, 3000, 3999, 4500, 4501, 4999, 0, 5000}
	for _, c := range yes {
		require.True(t, MayReconnect(c), "code %d", c)
	}
	for _, c := range no {
		require.False(t, MayReconnect(c), "code %d", c)
	}
}

// renderCloseCodes renders CLOSE_CODES.md from closeTable.
func renderCloseCodes() string {
	var b strings.Builder
	b.WriteString(`# tickrelay WebSocket close codes

<!-- Generated from closeTable in close.go. Do not edit by hand: edit the
table, then run
    go test ./server/wsproto -run TestCloseCodesDocInSync -update-close-codes
TestCloseCodesDocInSync fails when the two differ. -->

One table maps every internal cause to what the client sees (` + "`wsproto.ReasonFor`" + `).
A Close frame carries the code and the reason; before the upgrade no Close frame
can be sent, so a cause arising then is answered with the HTTP status instead
(always with ` + "`Connection: close`" + `).

| Cause | Code | Reason sent | HTTP before upgrade | Client may reconnect | When |
|---|---|---|---|---|---|
`)
	for c := Cause(1); c < numCauses; c++ {
		e := closeTable[c]
		reason := "*(empty)*"
		if e.reason.Reason != "" {
			reason = fmt.Sprintf("`%s`", e.reason.Reason)
		}
		httpStatus := "–"
		if e.reason.HTTPStatus != 0 {
			httpStatus = fmt.Sprint(e.reason.HTTPStatus)
		}
		reconnect := "no"
		if MayReconnect(e.reason.Code) {
			reconnect = "yes, with backoff"
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s | %s | %s |\n", e.name, e.reason.Code, reason, httpStatus, reconnect, e.when)
	}
	b.WriteString(`
## Ranges

- 1000-1015: RFC 6455 and IANA codes. tickrelay sends 1000 only when the client
  closed or ended its session cleanly, never for a close the server forces.
- 4000-4499: tickrelay causes after which a client **may reconnect**, with
  backoff (4000 slow consumer, 4001 idle/ping or handshake timeout, 4002 server
  overloaded or full).
- 4500-4999: tickrelay causes after which a client **must not reconnect**
  automatically (4500 kicked, 4501 unauthorized, reserved for authentication).

## Codes never sent

1004, 1005 and 1006 and 1015 are never put in a Close frame (` + "`AppendClose`" + ` turns
1005 into an empty payload and any other unsendable code into 1011). A client
still sees 1006 (connection dropped) and 1005 (Close without a code); for those,
and for 1012/1013 from an intermediary, ` + "`MayReconnect`" + ` says yes.

## Protocol violations found by the frame decoder

The decoder's ` + "`CloseError`" + ` carries a precise reason instead of the generic one:
1002 for an unmasked frame, RSV bits, a reserved opcode, a 64-bit length with its
top bit set, a fragmented or oversized (>125 bytes) control frame, a continuation
without a message or a new message inside a fragmented one, a Close payload of 1
byte or with an invalid code; 1007 for a close reason that is not UTF-8; 1009 for
a message over ` + "`MaxMessageBytes`" + ` (decided on the frame header) or with more than
` + "`MaxFragments`" + ` frames.
`)
	return b.String()
}

func TestCloseCodesDocInSync(t *testing.T) {
	want := renderCloseCodes()
	if *updateCloseCodes {
		require.NoError(t, os.WriteFile("CLOSE_CODES.md", []byte(want), 0o644))
	}
	got, err := os.ReadFile("CLOSE_CODES.md")
	require.NoError(t, err)
	require.Equal(t, want, string(got), "CLOSE_CODES.md is stale: run with -update-close-codes")
}
