// Package centrifugo is the small Centrifugo client client-sim drives a
// Centrifugo server with (-protocol centrifugo): Centrifugo's client
// protocol in its protobuf form over WebSocket (gobwas/ws), enough for a
// room-like load: connect anonymously, subscribe to one channel, publish
// to it, receive its publications.
//
// Why not github.com/centrifugal/centrifuge-go, the official Go SDK:
// client-sim shares the machine's cores with the server it measures, so its
// own cost per delivery must stay low and comparable between protocols.
// centrifuge-go runs a reader, a writer and a callback-queue goroutine per
// connection, hands every publication through that queue and allocates a
// Publication for each. This package does what tickrelay's SDK does: one
// reader goroutine per connection, publications decoded as views into the
// read buffer and handed to one callback per WebSocket message, publishes
// encoded into a reused buffer and written under a mutex, no allocation per
// message either way. The rare paths (connect and subscribe) use the
// official generated types of github.com/centrifugal/protocol; the hot ones
// are encoded and decoded by hand with protowire, and tests check them
// against the generated code.
//
// A Conn is safe for concurrent use. Callbacks run on the reader goroutine
// and must not block; the byte slices they get are valid only during the
// call.
package centrifugo

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/centrifugal/protocol"
	"github.com/gobwas/ws"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tickrelay/tickrelay/internal/wsclient"
)

// Subprotocol selects the protobuf form of Centrifugo's protocol.
const Subprotocol = "centrifuge-protobuf"

// Close codes of RFC 6455 used here.
const (
	closeNormal   = 1000
	closeProtocol = 1002
	closeNoStatus = 1005
	closeAbnormal = 1006
	closeTooBig   = 1009
)

// maxClientHeader: write buffers keep this much room in front of the
// message, so that header and message go out in one write.
const maxClientHeader = wsclient.MaxHeader

// Publication is one publication of the subscribed channel. Both slices
// borrow from the read buffer.
type Publication struct {
	Channel []byte
	Data    []byte
}

// ServerError is an Error reply of the server (Centrifugo's codes: 103
// permission denied, 102 unknown channel, 107 bad request, ...).
type ServerError struct {
	Code    uint32
	Message string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("centrifugo: server error %d: %s", e.Code, e.Message)
}

// HTTPStatusError is a handshake the server answered with a non-101 status.
type HTTPStatusError struct{ Status int }

func (e *HTTPStatusError) Error() string {
	return "centrifugo: handshake answered HTTP " + strconv.Itoa(e.Status)
}

// ErrClosed is returned by Publish after the connection has ended.
var ErrClosed = errors.New("centrifugo: connection closed")

// Options configures a connection. A zero field means the default given in
// its comment.
type Options struct {
	// OnPublications receives the publications of one WebSocket message
	// (the server batches), in order. Nil means dropped.
	OnPublications func(pubs []Publication)
	// OnError receives Error replies to publishes (which have no other
	// answer) and the codes of server-side unsubscribes. Nil means ignore.
	OnError func(err *ServerError)
	// OnClose is called once when the connection has ended, with the code
	// and reason of the server's Close frame, or 1006 and the local cause.
	OnClose func(code int, reason string)
	// Timeout bounds the handshake, connect and subscribe (with ctx), and
	// each write. Zero means 10 s.
	Timeout time.Duration
	// CloseTimeout is how long Close waits for the server's answer. Zero
	// means 2 s.
	CloseTimeout time.Duration
	// MaxMessageSize caps one server message. Zero means 1 MiB.
	MaxMessageSize int
	// ReadBufferSize is the socket read buffer. Zero means 4 KiB.
	ReadBufferSize int
	// LocalAddr, if set, is the local address to dial from.
	LocalAddr net.Addr
}

func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 2 * time.Second
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 1 << 20
	}
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 4 << 10
	}
	return o
}

// Conn is one connection, subscribed to one channel.
type Conn struct {
	conn net.Conn
	opts Options

	writeMu  sync.Mutex // guards wbuf, writeErr, deadline, nextID and writes
	wbuf     []byte
	writeErr error
	deadline wsclient.WriteDeadline
	nextID   uint32

	closing   atomic.Bool
	closeOnce sync.Once
	exited    chan struct{} // the reader goroutine has returned

	// Reader state: the dialling goroutine until Dial returns, then the
	// reader goroutine.
	br   *bufio.Reader
	hdr  [ws.MaxHeaderSize - 2]byte
	ctl  [125]byte
	buf  []byte
	frag bool
	pubs []Publication
	rv   replyView
}

// Publish ids live above this bit so that the reader can tell their
// answers from those of the handshake's commands without a lookup.
const publishIDBit = 1 << 31

// Dial connects to url (ws://HOST:PORT/connection/websocket), sends Connect
// (no token: the server must allow anonymous connections) and Subscribe to
// channel in one message, waits for both answers and starts the reader
// goroutine. Publications that arrive with the answers already go to
// OnPublications.
func Dial(ctx context.Context, url, channel string, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	local := opts.LocalAddr
	d := ws.Dialer{
		Protocols:      []string{Subprotocol},
		ReadBufferSize: opts.ReadBufferSize,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: local}
			return nd.DialContext(ctx, network, addr)
		},
	}
	conn, br, hs, err := d.Dial(ctx, url)
	if err != nil {
		var status ws.StatusError
		if errors.As(err, &status) {
			err = &HTTPStatusError{Status: int(status)}
		}
		return nil, fmt.Errorf("centrifugo: dial %s: %w", url, err)
	}
	if hs.Protocol != Subprotocol {
		_ = conn.Close()
		return nil, fmt.Errorf("centrifugo: dial %s: server chose subprotocol %q, not %s", url, hs.Protocol, Subprotocol)
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, opts.ReadBufferSize)
	}
	c := &Conn{conn: conn, opts: opts, br: br, exited: make(chan struct{}), wbuf: make([]byte, maxClientHeader, 256)}
	if err := c.handshake(ctx, channel); err != nil {
		_ = conn.Close()
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// handshake sends Connect and Subscribe and reads until both are answered.
func (c *Conn) handshake(ctx context.Context, channel string) error {
	msg := c.wbuf[:maxClientHeader]
	for _, cmd := range []*protocol.Command{
		{Id: 1, Connect: &protocol.ConnectRequest{Name: "tickrelay-client-sim"}},
		{Id: 2, Subscribe: &protocol.SubscribeRequest{Channel: channel}},
	} {
		b, err := cmd.MarshalVT()
		if err != nil {
			return fmt.Errorf("centrifugo: encode command: %w", err)
		}
		msg = protowire.AppendBytes(msg, b)
	}
	deadline, _ := ctx.Deadline()
	c.writeMu.Lock()
	c.wbuf = msg
	err := c.writeFrameLocked(ws.OpBinary, msg, time.Until(deadline))
	c.writeMu.Unlock()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Now()) })
	defer stop()
	var connected, subscribed bool
	for !connected || !subscribed {
		b, code, reason := c.readMessage()
		if b == nil {
			if ctx.Err() != nil {
				return fmt.Errorf("centrifugo: connect and subscribe: %w", ctx.Err())
			}
			return fmt.Errorf("centrifugo: connection ended during connect and subscribe: %d %s", code, reason)
		}
		err := c.dispatch(b, func(r *replyView) error {
			if r.ID != 1 && r.ID != 2 {
				return nil
			}
			if r.ErrCode != 0 {
				return &ServerError{Code: r.ErrCode, Message: string(r.ErrMsg)}
			}
			var rep protocol.Reply
			if err := rep.UnmarshalVT(r.Raw); err != nil {
				return fmt.Errorf("centrifugo: decode reply: %w", err)
			}
			switch {
			case r.ID == 1 && rep.Connect != nil:
				connected = true
			case r.ID == 2 && rep.Subscribe != nil:
				subscribed = true
			default:
				return fmt.Errorf("centrifugo: unexpected answer to command %d", r.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return c.conn.SetReadDeadline(time.Time{})
}

// Publish publishes data to channel. Its answer comes back asynchronously:
// an error goes to OnError, success is dropped.
func (c *Conn) Publish(channel string, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return c.writeErr
	}
	c.nextID++
	id := c.nextID | publishIDBit
	buf := AppendPublish(c.wbuf[:maxClientHeader], id, channel, data)
	c.wbuf = buf
	return c.writeFrameLocked(ws.OpBinary, buf, c.opts.Timeout)
}

// Close sends a Close frame (1000), waits up to CloseTimeout for the
// server's answer, drops the connection and returns once the reader
// goroutine has ended. Idempotent. Must not be called from a callback.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.writeMu.Lock()
		if c.writeErr == nil {
			_ = c.writeControlLocked(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""), c.opts.CloseTimeout)
			c.writeErr = ErrClosed
		}
		c.writeMu.Unlock()
		t := time.NewTimer(c.opts.CloseTimeout)
		select {
		case <-c.exited:
		case <-t.C:
		}
		t.Stop()
		_ = c.conn.Close()
	})
	<-c.exited
	return nil
}

func (c *Conn) readLoop() {
	defer close(c.exited)
	code, reason := 0, ""
	for {
		b, cd, why := c.readMessage()
		if b == nil {
			code, reason = cd, why
			break
		}
		if err := c.dispatch(b, c.onResult); err != nil {
			code, reason = c.fail(closeProtocol, err.Error())
			break
		}
	}
	_ = c.conn.Close()
	c.writeMu.Lock()
	if c.writeErr == nil {
		c.writeErr = ErrClosed
	}
	c.writeMu.Unlock()
	if c.opts.OnClose != nil {
		c.opts.OnClose(code, reason)
	}
}

// onResult handles an answer after the handshake: errors of publishes go
// to OnError; successes are dropped.
func (c *Conn) onResult(r *replyView) error {
	if r.ErrCode != 0 && c.opts.OnError != nil {
		c.opts.OnError(&ServerError{Code: r.ErrCode, Message: string(r.ErrMsg)})
	}
	return nil
}

// dispatch handles every Reply of one message: pings are answered,
// publications batched into one OnPublications call, unsubscribes reported,
// answers passed to onResult.
func (c *Conn) dispatch(b []byte, onResult func(*replyView) error) error {
	c.pubs = c.pubs[:0]
	r := &c.rv
	pings := 0
	for len(b) > 0 {
		rest, err := nextReply(b, r)
		if err != nil {
			return err
		}
		b = rest
		switch r.Kind {
		case replyPing:
			pings++
		case replyPublication:
			c.pubs = append(c.pubs, Publication{Channel: r.Channel, Data: r.Data})
		case replyUnsubscribe, replyDisconnect:
			if c.opts.OnError != nil {
				c.opts.OnError(&ServerError{Code: r.Code, Message: "unsubscribed by the server: " + string(r.Reason)})
			}
		case replyResult:
			if err := onResult(r); err != nil {
				return err
			}
		}
	}
	if len(c.pubs) > 0 && c.opts.OnPublications != nil {
		c.opts.OnPublications(c.pubs)
	}
	if pings > 0 {
		// The answer to the server's ping is an empty Command.
		c.writeMu.Lock()
		if c.writeErr == nil {
			buf := append(c.wbuf[:maxClientHeader], 0)
			c.wbuf = buf
			_ = c.writeFrameLocked(ws.OpBinary, buf, c.opts.Timeout)
		}
		c.writeMu.Unlock()
	}
	return nil
}

// readMessage reads the next complete binary message, answering control
// frames on the way. At the end of the connection it returns nil and the
// close code and reason.
func (c *Conn) readMessage() ([]byte, int, string) {
	for {
		h, err := ws.ReadHeaderBuffer(c.br, c.hdr[:])
		if err != nil {
			code, reason := c.lost(err)
			return nil, code, reason
		}
		if h.Masked || h.Rsv != 0 {
			code, reason := c.fail(closeProtocol, "masked frame or rsv bits from server")
			return nil, code, reason
		}
		if h.OpCode.IsControl() {
			if !h.Fin || h.Length > int64(len(c.ctl)) {
				code, reason := c.fail(closeProtocol, "invalid control frame")
				return nil, code, reason
			}
			p := c.ctl[:h.Length]
			if _, err := io.ReadFull(c.br, p); err != nil {
				code, reason := c.lost(err)
				return nil, code, reason
			}
			switch h.OpCode {
			case ws.OpPing:
				c.writeMu.Lock()
				if c.writeErr == nil {
					_ = c.writeControlLocked(ws.OpPong, p, c.opts.Timeout)
				}
				c.writeMu.Unlock()
			case ws.OpClose:
				code, reason := c.closeReceived(p)
				return nil, code, reason
			}
			continue
		}
		switch {
		case h.OpCode == ws.OpBinary && !c.frag:
			c.buf = c.buf[:0]
		case h.OpCode == ws.OpContinuation && c.frag:
		default:
			code, reason := c.fail(closeProtocol, "unexpected data frame (text, or out of sequence)")
			return nil, code, reason
		}
		n := len(c.buf)
		if h.Length > int64(c.opts.MaxMessageSize-n) {
			code, reason := c.fail(closeTooBig, "message too big")
			return nil, code, reason
		}
		need := n + int(h.Length)
		if cap(c.buf) < need {
			grown := make([]byte, n, max(need, 2*cap(c.buf), 512))
			copy(grown, c.buf)
			c.buf = grown
		}
		c.buf = c.buf[:need]
		if _, err := io.ReadFull(c.br, c.buf[n:]); err != nil {
			code, reason := c.lost(err)
			return nil, code, reason
		}
		c.frag = !h.Fin
		if h.Fin {
			return c.buf, 0, ""
		}
	}
}

func (c *Conn) lost(err error) (int, string) {
	if c.closing.Load() {
		return closeAbnormal, "closed by client before the server answered"
	}
	return closeAbnormal, "connection lost: " + err.Error()
}

// fail sends a Close frame with code and gives up on the connection.
func (c *Conn) fail(code int, reason string) (int, string) {
	c.writeMu.Lock()
	if c.writeErr == nil {
		_ = c.writeControlLocked(ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(code), reason), c.opts.CloseTimeout)
		c.writeErr = ErrClosed
	}
	c.writeMu.Unlock()
	return code, reason
}

// closeReceived answers the server's Close frame (echoing its code) unless
// we started the close, and returns its code and reason.
func (c *Conn) closeReceived(p []byte) (int, string) {
	code, reason := closeNoStatus, ""
	switch {
	case len(p) == 1:
		return c.fail(closeProtocol, "close frame of one byte")
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		if utf8.Valid(p[2:]) {
			reason = string(p[2:])
		}
	}
	c.writeMu.Lock()
	if c.writeErr == nil {
		var body []byte
		if code != closeNoStatus {
			body = p[:2]
		}
		_ = c.writeControlLocked(ws.OpClose, body, c.opts.CloseTimeout)
		c.writeErr = ErrClosed
	}
	c.writeMu.Unlock()
	return code, reason
}

// writeControlLocked writes one control frame. writeMu must be held.
func (c *Conn) writeControlLocked(op ws.OpCode, payload []byte, timeout time.Duration) error {
	buf := append(c.wbuf[:maxClientHeader], payload...)
	c.wbuf = buf
	return c.writeFrameLocked(op, buf, timeout)
}

// writeFrameLocked masks buf[maxClientHeader:] and writes it as one final
// frame, header and payload in one write; buf's first maxClientHeader
// bytes are scratch for the header. A failed write is sticky and closes the
// socket. writeMu must be held.
func (c *Conn) writeFrameLocked(op ws.OpCode, buf []byte, timeout time.Duration) error {
	frame := wsclient.Frame(op, buf)
	if err := c.deadline.Refresh(c.conn, timeout); err != nil {
		c.writeErr = fmt.Errorf("centrifugo: set write deadline: %w", err)
		_ = c.conn.Close()
		return c.writeErr
	}
	if _, err := c.conn.Write(frame); err != nil {
		c.writeErr = fmt.Errorf("centrifugo: write: %w", err)
		_ = c.conn.Close()
		return c.writeErr
	}
	return nil
}
