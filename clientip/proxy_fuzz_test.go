package clientip_test

import (
	"errors"
	"testing"

	"github.com/tickrelay/tickrelay/clientip"
)

// FuzzParseProxyHeader checks the contract an event loop relies on: the
// answer for any input is either ErrNeedMore or final, and feeding the same
// bytes in pieces — every prefix — gives ErrNeedMore or exactly the answer
// for the whole input, never a different one. It also checks that waiting
// for more is bounded and that n never exceeds the input.
func FuzzParseProxyHeader(f *testing.F) {
	for _, tc := range validProxyHeaders() {
		f.Add(append(tc.in, "GET / HTTP/1.1\r\n"...))
	}
	for _, s := range []string{
		"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
		"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
		"PROXY UNKNOWN\n",
		"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
		"GET / HTTP/1.1\r\n",
		v2Sig + "\x21\x11\x00\x0b",
		v2Sig + "\x22\x11\x00\x0c",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, err := clientip.ParseProxyHeader(in)
		checkAnswer(t, in, h, n, err)
		for k := 0; k < len(in); k++ {
			ph, pn, perr := clientip.ParseProxyHeader(in[:k])
			if errors.Is(perr, clientip.ErrNeedMore) {
				continue
			}
			if pn != n || ph != h || errText(perr) != errText(err) {
				t.Fatalf("prefix of %d bytes answers (%+v, %d, %v), whole input of %d answers (%+v, %d, %v)",
					k, ph, pn, perr, len(in), h, n, err)
			}
		}
		if err == nil {
			// The header alone parses to the same header.
			hh, hn, herr := clientip.ParseProxyHeader(in[:n])
			if herr != nil || hh != h || hn != n {
				t.Fatalf("header bytes alone answer (%+v, %d, %v), want (%+v, %d)", hh, hn, herr, h, n)
			}
		}
	})
}

func checkAnswer(t *testing.T, in []byte, h clientip.Header, n int, err error) {
	t.Helper()
	switch {
	case err == nil:
		if n <= 0 || n > len(in) {
			t.Fatalf("n = %d for %d bytes of input", n, len(in))
		}
		if h.Version != 1 && h.Version != 2 {
			t.Fatalf("version %d", h.Version)
		}
		if h.Version == 1 && n > clientip.MaxProxyV1Bytes || n > clientip.MaxProxyV2Bytes {
			t.Fatalf("v%d header of %d bytes", h.Version, n)
		}
		if addr, ok := h.ClientAddr(); ok && (!addr.Addr().IsValid() || addr.Addr().Is4In6()) {
			t.Fatalf("client address %v", addr)
		}
	case errors.Is(err, clientip.ErrNeedMore):
		if n != 0 || h != (clientip.Header{}) {
			t.Fatalf("ErrNeedMore with (%+v, %d)", h, n)
		}
		if len(in) >= clientip.MaxProxyV2Bytes {
			t.Fatalf("still waiting after %d bytes", len(in))
		}
	case errors.Is(err, clientip.ErrNotProxy), errors.Is(err, clientip.ErrBadProxyHeader):
		if n != 0 || h != (clientip.Header{}) {
			t.Fatalf("%v with (%+v, %d)", err, h, n)
		}
	default:
		t.Fatalf("unexpected error %v", err)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
