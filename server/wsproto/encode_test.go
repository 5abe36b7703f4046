package wsproto

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

func TestHeaderLen(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]int{0: 2, 1: 2, 125: 2, 126: 4, 65535: 4, 65536: 10, 1 << 30: 10} {
		require.Equal(t, want, HeaderLen(n), "payload %d", n)
		require.Equal(t, ws.HeaderSize(ws.Header{Length: int64(n)}), HeaderLen(n), "agrees with gobwas for %d", n)
	}
	require.Panics(t, func() { HeaderLen(-1) })
}

func TestPutHeaderMatchesGobwas(t *testing.T) {
	t.Parallel()
	for _, op := range []ws.OpCode{ws.OpBinary, ws.OpText, ws.OpPing, ws.OpPong, ws.OpClose} {
		for _, n := range []int{0, 5, 125, 126, 300, 65535, 65536, 1 << 24} {
			var want bytes.Buffer
			require.NoError(t, ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: op, Length: int64(n)}))
			got := make([]byte, HeaderLen(n))
			PutHeader(got, op, n)
			require.Equal(t, want.Bytes(), got, "op %d length %d", op, n)
		}
	}
	require.Panics(t, func() { PutHeader(make([]byte, 3), ws.OpBinary, 200) }, "short headroom")
}

// readServerFrame parses one server frame the way a client does.
func readServerFrame(t *testing.T, b []byte) (ws.Header, []byte, []byte) {
	t.Helper()
	r := bytes.NewReader(b)
	h, err := ws.ReadHeader(r)
	require.NoError(t, err)
	require.NoError(t, ws.CheckHeader(h, ws.StateClientSide), "a client accepts the header")
	p := make([]byte, h.Length)
	_, err = r.Read(p)
	if h.Length > 0 {
		require.NoError(t, err)
	}
	rest := b[len(b)-r.Len():]
	return h, p, rest
}

func TestAppendFrame(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 64, 125, 126, 65535, 65536, 100000} {
		payload := bytes.Repeat([]byte{0xab}, n)
		out := AppendFrame([]byte("prefix"), ws.OpBinary, payload)
		require.Equal(t, "prefix", string(out[:6]))
		require.Len(t, out, 6+HeaderLen(n)+n)
		h, p, rest := readServerFrame(t, out[6:])
		require.True(t, h.Fin)
		require.False(t, h.Masked, "server frames are never masked")
		require.Equal(t, ws.OpBinary, h.OpCode)
		require.Equal(t, payload, p)
		require.Empty(t, rest)
	}
}

func TestAppendClose(t *testing.T) {
	t.Parallel()
	parse := func(b []byte) (ws.StatusCode, string, int) {
		h, p, rest := readServerFrame(t, b)
		require.Empty(t, rest)
		require.Equal(t, ws.OpClose, h.OpCode)
		require.LessOrEqual(t, len(p), 125)
		if len(p) == 0 {
			return 0, "", 0
		}
		require.GreaterOrEqual(t, len(p), 2)
		return ws.StatusCode(binary.BigEndian.Uint16(p)), string(p[2:]), len(p)
	}

	code, reason, _ := parse(AppendClose(nil, ws.StatusGoingAway, "server going away"))
	require.Equal(t, ws.StatusGoingAway, code)
	require.Equal(t, "server going away", reason)

	code, reason, _ = parse(AppendClose(nil, ws.StatusCode(4000), ""))
	require.Equal(t, ws.StatusCode(4000), code)
	require.Empty(t, reason)

	// "No status" is an empty payload, never the code 1005 itself.
	_, _, n := parse(AppendClose(nil, ws.StatusNoStatusRcvd, "ignored"))
	require.Zero(t, n)
	_, _, n = parse(AppendClose(nil, 0, ""))
	require.Zero(t, n)

	// Codes that must not be sent become 1011 rather than a 1002 from the client.
	for _, bad := range []ws.StatusCode{ws.StatusAbnormalClosure, ws.StatusTLSHandshake, 1004, 999, 2000, 5000} {
		code, _, _ = parse(AppendClose(nil, bad, "x"))
		require.Equal(t, ws.StatusInternalServerError, code, "code %d", bad)
	}

	// Long reasons are cut to 123 bytes on a rune boundary.
	long := strings.Repeat("a", 122) + "€€€" // the first € straddles byte 123
	_, reason, n = parse(AppendClose(nil, ws.StatusPolicyViolation, long))
	require.Equal(t, strings.Repeat("a", 122), reason)
	require.Equal(t, 124, n)
	require.True(t, utf8.ValidString(reason))

	exact := strings.Repeat("b", 123)
	_, reason, n = parse(AppendClose(nil, ws.StatusPolicyViolation, exact))
	require.Equal(t, exact, reason)
	require.Equal(t, 125, n)

	// Invalid UTF-8 would make the client fail with 1007; it is repaired.
	_, reason, _ = parse(AppendClose(nil, ws.StatusPolicyViolation, "bad\xffbyte"))
	require.True(t, utf8.ValidString(reason))
	require.Equal(t, "bad\uFFFDbyte", reason)

	// Appends to what is there.
	out := AppendClose([]byte{1, 2}, ws.StatusNormalClosure, "")
	require.Equal(t, []byte{1, 2, 0x88, 2, 0x03, 0xe8}, out)

	// Our close frames decode with our own decoder's rules (after masking,
	// as a client would send them back).
	for _, r := range []struct {
		Code   ws.StatusCode
		Reason string
	}{{1000, ""}, {1001, "server going away"}, {1009, "message too big"}, {4500, "kicked"}} {
		_, p, _ := readServerFrame(t, AppendClose(nil, r.Code, r.Reason))
		out := decodeWhole(Limits{}, frame(ws.OpClose, p).bytes())
		require.Zero(t, out.ErrCode, "%d", r.Code)
		require.Equal(t, r.Code, out.Msgs[0].CloseCode)
		require.Equal(t, r.Reason, out.Msgs[0].CloseReason)
	}
}

func TestTruncateReasonNeverSplitsRunes(t *testing.T) {
	t.Parallel()
	for pad := 0; pad < 8; pad++ {
		for _, r := range []string{"é", "€", "𝄞"} {
			s := strings.Repeat("x", pad) + strings.Repeat(r, 80)
			got := truncateReason(s)
			require.LessOrEqual(t, len(got), MaxCloseReasonBytes)
			require.Greater(t, len(got), MaxCloseReasonBytes-4)
			require.True(t, utf8.ValidString(got))
			require.True(t, strings.HasPrefix(s, got))
		}
	}
}
