package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Subprotocol is the one the relay selects (client.Subprotocol; not
// imported, so that this package depends on the wire protocol only).
const subprotocol = "tickrelay.v1"

// dialTimeout bounds one TCP connect and one WebSocket upgrade.
const dialTimeout = 10 * time.Second

// target is where the chaos connections go: the relay's address and its
// WebSocket URL.
type target struct {
	addr string // host:port
	url  *url.URL
}

func parseTarget(raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("chaos: url %q: %w", raw, err)
	}
	if u.Scheme != "ws" {
		return target{}, fmt.Errorf("chaos: url %q: only ws:// is supported", raw)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	return target{addr: host, url: u}, nil
}

// sockOpts are socket options set before connecting (SO_RCVBUF must be set
// before the handshake to shape the window the peer sees).
type sockOpts struct {
	rcvbuf int // SO_RCVBUF in bytes; 0: the kernel's default
}

// dialTCP opens a TCP connection to t from local (nil: the kernel's
// choice). The connection's deadlines follow ctx: when ctx ends, every
// blocked read and write returns at once (the run is over).
func dialTCP(ctx context.Context, t target, local net.Addr, o sockOpts) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: dialTimeout, LocalAddr: local}
	if o.rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	return nc.(*net.TCPConn), nil
}

// abort drops a connection with a TCP reset (SO_LINGER 0) instead of a FIN:
// an abrupt end, and no TIME_WAIT left on client-sim's side (a connection
// flood would otherwise use up the ephemeral ports).
func abort(nc *net.TCPConn) {
	_ = nc.SetLinger(0)
	_ = nc.Close()
}

// upgrade performs the WebSocket handshake on nc (the caller sets its
// deadlines). It returns the reader to go on with (holding any bytes the
// relay sent right after its answer) or the HTTP status of a refusal as a
// ws.StatusError.
func upgrade(nc net.Conn, t target) (*bufio.Reader, error) {
	d := ws.Dialer{Protocols: []string{subprotocol}}
	br, _, err := d.Upgrade(nc, t.url)
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(nc, 16<<10)
	}
	return br, nil
}

// watch makes ctx's end unblock nc: every read and write fails at once
// afterwards. The returned stop undoes the watch (call it before closing
// nc).
func watch(ctx context.Context, nc net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
}

// Frames a client sends, masked as RFC 6455 requires (gobwas/ws's client
// side helpers).

func binaryFrame(payload []byte) []byte {
	return ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame(payload)))
}

func pingFrame(payload []byte) []byte {
	return ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame(payload)))
}

func closeFrame(code ws.StatusCode) []byte {
	return ws.MustCompileFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(code, ""))))
}

func envelope(m *pb.ClientMessage) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("chaos: marshal %v: %v", m, err)) // only invalid UTF-8 can fail, and ids are ASCII
	}
	return b
}

func joinFrame(rid uint32, room string, opts *pb.RoomOptions) []byte {
	return binaryFrame(envelope(&pb.ClientMessage{RequestId: rid, Body: &pb.ClientMessage_Join{Join: &pb.Join{
		RoomId: room, CreateIfMissing: true, Options: opts,
	}}}))
}

func leaveFrame(rid uint32) []byte {
	return binaryFrame(envelope(&pb.ClientMessage{RequestId: rid, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}}))
}

func sendFrame(rid uint32, s *wire.SendView) []byte {
	return binaryFrame(wire.AppendSend(nil, rid, 0, s))
}

// reader reads a chaos connection's input, records what matters on rec and
// hands answers to whoever waits for them. Frames (relayed deliveries) are
// parsed with the allocation-free decoder and only counted.
type reader struct {
	br  *bufio.Reader
	rec *Conn

	mu      sync.Mutex
	waiters []func(*pb.ServerMessage) bool // each returns true when satisfied
	done    chan struct{}                  // closed when run returns
	msg     wire.ServerMessage
	frame   []byte // the frame being read, reused
	buf     []byte // a fragmented message being reassembled, reused
}

func newReader(br *bufio.Reader, rec *Conn) *reader {
	return &reader{br: br, rec: rec, done: make(chan struct{})}
}

// wait registers fn for every non-Frame message until it returns true. fn
// runs on the reader's goroutine and must not block.
func (r *reader) wait(fn func(*pb.ServerMessage) bool) {
	r.mu.Lock()
	r.waiters = append(r.waiters, fn)
	r.mu.Unlock()
}

// run reads until the connection ends (a Close frame, end of stream, an
// error, or a deadline) and records how, handing every non-Frame message
// to the waiters. Run it on its own goroutine; done is closed when it
// returns.
func (r *reader) run() {
	defer close(r.done)
	for {
		m, ended := r.next()
		if ended {
			return
		}
		if m == nil {
			continue
		}
		r.mu.Lock()
		kept := r.waiters[:0]
		for _, w := range r.waiters {
			if !w(m) {
				kept = append(kept, w)
			}
		}
		r.waiters = kept
		r.mu.Unlock()
	}
}

// until reads (on the caller's goroutine) until pred accepts a message or
// the connection ends; it reports whether pred was satisfied.
func (r *reader) until(pred func(*pb.ServerMessage) bool) bool {
	for {
		m, ended := r.next()
		if ended {
			return false
		}
		if m != nil && pred(m) {
			return true
		}
	}
}

// next reads one message or control frame and records it. It returns the
// message when it is not a Frame (nil otherwise), and ended when the
// connection ended (a Close frame, or a read error recorded on rec).
func (r *reader) next() (m *pb.ServerMessage, ended bool) {
	for {
		h, err := ws.ReadHeader(r.br)
		if err != nil {
			r.rec.endedBy(err)
			return nil, true
		}
		if h.Length > maxServerFrame {
			r.rec.fail("a %d-byte frame from the relay (max-frame-bytes is far smaller)", h.Length)
			r.rec.endedBy(errFrameTooLarge)
			return nil, true
		}
		if cap(r.frame) < int(h.Length) {
			r.frame = make([]byte, h.Length)
		}
		payload := r.frame[:h.Length]
		if _, err := io.ReadFull(r.br, payload); err != nil {
			r.rec.endedBy(err)
			return nil, true
		}
		if h.Masked {
			r.rec.fail("masked frame from the relay (RFC 6455: a server must not mask)")
			ws.Cipher(payload, h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(payload)
			if len(payload) == 0 {
				code = 1005 // no status: recorded as such
			}
			r.rec.closed(int(code), reason)
			return nil, true
		case ws.OpPing, ws.OpPong:
			r.rec.countControl(h.OpCode)
			continue
		case ws.OpText, ws.OpBinary:
			if h.Fin {
				return r.message(payload), false // the usual case: no copy
			}
			r.buf = append(r.buf[:0], payload...)
		case ws.OpContinuation:
			r.buf = append(r.buf, payload...)
		}
		if !h.Fin {
			continue
		}
		return r.message(r.buf), false
	}
}

// maxServerFrame bounds a frame the reader accepts: far above the relay's
// largest (max-frame-bytes, 256 KiB by default), so that a corrupt length
// cannot make it allocate gigabytes.
const maxServerFrame = 16 << 20

var errFrameTooLarge = errors.New("chaos: frame too large")

func (r *reader) message(b []byte) *pb.ServerMessage {
	if err := wire.ParseServerMessage(b, &r.msg); err != nil {
		r.rec.fail("undecodable server message: %v", err)
		return nil
	}
	if r.msg.Body == wire.BodyFrame {
		r.rec.countFrame(len(r.msg.Deliveries))
		return nil
	}
	var m pb.ServerMessage
	if err := proto.Unmarshal(b, &m); err != nil {
		r.rec.fail("undecodable server message: %v", err)
		return nil
	}
	r.rec.answer(&m)
	return &m
}

// readAvailable reads what the relay sent a connection that did not read
// during its attack, once the attack is over: everything buffered, up to
// the end of the stream (a Close, end of file, a reset) or for at most d
// when the relay sends nothing more.
func readAvailable(nc net.Conn, br *bufio.Reader, rec *Conn, d time.Duration) {
	_ = nc.SetReadDeadline(time.Now().Add(d))
	r := newReader(br, rec)
	for {
		if _, ended := r.next(); ended {
			return
		}
	}
}

// isTimeout says whether err is a deadline expiring.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// isReset says whether err means the peer reset or closed the connection
// under a writer.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
