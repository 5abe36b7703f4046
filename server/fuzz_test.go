package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/panjf2000/gnet/v2"
	"github.com/stretchr/testify/require"

	ws "github.com/tickrelay/tickrelay/internal/wstest"
	"github.com/tickrelay/tickrelay/room"
)

// fakeConn stands in for a gnet connection in the read-path fuzz target,
// which must run far faster than real sockets allow. It models what the
// relay relies on, gnet's traps included: Peek(-1) returns everything
// buffered, and Discard(n) with n <= 0 discards everything (gnet v2.9.7
// connection_unix.go).
type fakeConn struct {
	gnet.Conn // unused methods panic: the read path must not call them
	ctx       any
	in        []byte
	out       bytes.Buffer
	woken     atomic.Bool // set by room workers (Deliver wakes the loop)
	closed    bool
}

func (f *fakeConn) Context() any                  { return f.ctx }
func (f *fakeConn) SetContext(c any)              { f.ctx = c }
func (f *fakeConn) Fd() int                       { return -1 }
func (f *fakeConn) EventLoop() gnet.EventLoop     { return nil } // one loop: the scratch keyed by nil
func (f *fakeConn) RemoteAddr() net.Addr          { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (f *fakeConn) InboundBuffered() int          { return len(f.in) }
func (f *fakeConn) OutboundBuffered() int         { return 0 }
func (f *fakeConn) Peek(n int) ([]byte, error)    { return f.in, nil }
func (f *fakeConn) Write(b []byte) (int, error)   { return f.out.Write(b) }
func (f *fakeConn) Wake(gnet.AsyncCallback) error { f.woken.Store(true); return nil }
func (f *fakeConn) Close() error                  { f.closed = true; return nil }
func (f *fakeConn) AsyncWrite(b []byte, _ gnet.AsyncCallback) error {
	_, err := f.out.Write(b)
	return err
}

func (f *fakeConn) Writev(bs [][]byte) (int, error) {
	n := 0
	for _, b := range bs {
		k, _ := f.out.Write(b)
		n += k
	}
	return n, nil
}

func (f *fakeConn) Discard(n int) (int, error) {
	if n <= 0 || n >= len(f.in) {
		k := len(f.in)
		f.in = f.in[:0]
		return k, nil
	}
	f.in = append(f.in[:0], f.in[n:]...)
	return n, nil
}

// loopServer is a Server with rooms but no sockets, for driving OnTraffic
// directly.
func loopServer(t testing.TB) *Server {
	srv, err := New(Config{Logger: quietLogger(), EchoPath: "/echo", AdminListen: AdminOff, MaxMessageBytes: 1 << 16})
	require.NoError(t, err)
	rooms, err := room.New(srv.cfg.Room)
	require.NoError(t, err)
	srv.rooms = rooms
	t.Cleanup(rooms.Close)
	return srv
}

// feed runs input through a connection's read path, delivering it in the
// chunks cuts gives (each byte a chunk length 1-64; the rest whole), as
// gnet would after each read, and returns everything the relay wrote.
func feed(srv *Server, input, cuts []byte) []byte {
	fc := &fakeConn{}
	srv.OnOpen(fc)
	deliver := func(chunk []byte) bool {
		fc.in = append(fc.in, chunk...)
		for {
			fc.woken.Store(false)
			if srv.OnTraffic(fc) != gnet.None || fc.closed {
				srv.OnClose(fc, nil)
				return false
			}
			if !fc.woken.Load() {
				return true
			}
		}
	}
	for _, c := range cuts {
		n := min(int(c%64)+1, len(input))
		if n == 0 {
			break
		}
		if !deliver(input[:n]) {
			return fc.out.Bytes()
		}
		input = input[n:]
	}
	if len(input) > 0 && !deliver(input) {
		return fc.out.Bytes()
	}
	srv.OnClose(fc, nil)
	return fc.out.Bytes()
}

var echoUpgrade = strings.Replace(upgradeRequest, "GET /ws", "GET /echo", 1)

// FuzzReadPathChunked drives the connection read path (OnTraffic, the frame
// loop, the echo endpoint) with input delivered in fuzzer-chosen chunks:
// whatever the chunks, the relay must answer exactly as it answers the whole
// input at once, and never panic.
func FuzzReadPathChunked(f *testing.F) {
	f.Add([]byte(ws.Stream(ws.Data(ws.OpPing, []byte("p")), ws.Data(ws.OpText, []byte("hello")), ws.Close(1000, ""))), []byte{7, 1, 3})
	f.Add([]byte(ws.Stream(ws.Fragment(false, ws.OpBinary, []byte("ab")), ws.Data(ws.OpPing, nil), ws.Fragment(true, ws.OpCont, []byte("cd")))), []byte{1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte(ws.Stream(ws.Data(ws.OpBinary, bytesOf(300, 1)))), []byte{2, 60, 60})
	f.Add([]byte{0x82, 0xfe}, []byte{0})
	srv := loopServer(f)
	f.Fuzz(func(t *testing.T, frames, cuts []byte) {
		input := append([]byte(echoUpgrade), frames...)
		whole := feed(srv, input, nil)
		chunked := feed(srv, input, cuts)
		if !bytes.Equal(whole, chunked) {
			t.Fatalf("answers differ when the input arrives in chunks %v:\nwhole   %q\nchunked %q", cuts, whole, chunked)
		}
	})
}

// The relay endpoint's read path, chunked: no panic, and every answer is a
// well-formed server frame.
func FuzzRelayReadPathChunked(f *testing.F) {
	f.Add([]byte(ws.Stream(ws.Data(ws.OpBinary, []byte{0x2a, 0x02, 0x08, 0x01}), ws.Data(ws.OpPing, nil))), []byte{3, 3})
	f.Add([]byte(ws.Stream(ws.Data(ws.OpBinary, []byte{0x12, 0x06, 0x0a, 0x04, 0x72, 0x6f, 0x6f, 0x6d, 0x10, 0x01}))), []byte{1})
	srv := loopServer(f)
	f.Fuzz(func(t *testing.T, frames, cuts []byte) {
		out := feed(srv, append([]byte(upgradeRequest), frames...), cuts)
		i := bytes.Index(out, []byte("\r\n\r\n"))
		if i < 0 {
			return // not upgraded
		}
		br := bufio.NewReader(bytes.NewReader(out[i+4:]))
		for {
			_, err := ws.ReadFrame(br)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("malformed server output: %v", err)
			}
		}
	})
}
