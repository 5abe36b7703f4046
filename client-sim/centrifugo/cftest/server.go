// Package cftest is a small in-process server speaking the part of
// Centrifugo's client protocol (protobuf form) that client-sim uses, on a
// real loopback socket, for tests: anonymous Connect, Subscribe, Publish
// fanned out to every subscriber of the channel (the publisher included,
// as Centrifugo does), Publish refused (code 103) on a channel the client
// has not subscribed to (as allow_publish_for_subscriber), and the server's
// empty-reply pings. Commands and replies go through the official codec
// (github.com/centrifugal/protocol), so it checks client-sim's hand-written
// one; with SplitWrites every server message is written in pieces with
// pauses, so that clients meet frames split across reads.
//
// It is not Centrifugo: the harness runs the real server (bench/harness).
// A Server is safe for concurrent use.
package cftest

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/protocol"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// Config configures a Server. A zero field means the default in its
// comment.
type Config struct {
	// PingInterval sends an empty Reply (Centrifugo's ping) to every
	// connected client this often. Zero means no pings.
	PingInterval time.Duration
	// SplitWrites writes each server message in pieces of a few bytes with
	// a pause between them.
	SplitWrites bool
}

// Server is a running test server.
type Server struct {
	cfg   Config
	ln    net.Listener
	mu    sync.Mutex
	subs  map[string]map[*sconn]struct{}
	conns map[*sconn]struct{}
	wg    sync.WaitGroup
	done  chan struct{}

	pongs     atomic.Int64
	published atomic.Int64
}

type sconn struct {
	net.Conn
	srv  *Server
	wmu  sync.Mutex
	subs map[string]bool // guarded by srv.mu
}

// Start listens on 127.0.0.1:0 and serves until Close.
func Start(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cftest: listen: %w", err)
	}
	s := &Server{cfg: cfg, ln: ln, subs: map[string]map[*sconn]struct{}{}, conns: map[*sconn]struct{}{}, done: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	if cfg.PingInterval > 0 {
		s.wg.Add(1)
		go s.pinger()
	}
	return s, nil
}

// URL is the WebSocket URL to dial.
func (s *Server) URL() string { return "ws://" + s.ln.Addr().String() + "/connection/websocket" }

// Pongs counts the empty commands (answers to pings) received.
func (s *Server) Pongs() int64 { return s.pongs.Load() }

// Published counts the publications accepted.
func (s *Server) Published() int64 { return s.published.Load() }

// Close stops the server, closes every connection and waits for its
// goroutines.
func (s *Server) Close() {
	close(s.done)
	_ = s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &sconn{Conn: nc, srv: s, subs: map[string]bool{}}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go c.serve()
	}
}

func (s *Server) pinger() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var all []*sconn
		for c := range s.conns {
			all = append(all, c)
		}
		s.mu.Unlock()
		for _, c := range all {
			_ = c.write([]byte{0}) // one empty Reply
		}
	}
}

func (c *sconn) serve() {
	s := c.srv
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		for ch := range c.subs {
			delete(s.subs[ch], c)
		}
		s.mu.Unlock()
		_ = c.Close()
	}()
	u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == "centrifuge-protobuf" }}
	if _, err := u.Upgrade(c); err != nil {
		return
	}
	for {
		data, op, err := wsutil.ReadClientData(c)
		if err != nil || op == ws.OpClose {
			return
		}
		if op != ws.OpBinary {
			continue
		}
		dec := protocol.NewProtobufCommandDecoder(data)
		for {
			cmd, derr := dec.Decode()
			if cmd != nil {
				if err := c.handle(cmd); err != nil {
					return
				}
			}
			if derr != nil {
				break
			}
		}
	}
}

func (c *sconn) handle(cmd *protocol.Command) error {
	s := c.srv
	switch {
	case cmd.Id == 0:
		s.pongs.Add(1)
		return nil
	case cmd.Connect != nil:
		return c.reply(&protocol.Reply{Id: cmd.Id, Connect: &protocol.ConnectResult{Client: "c" + strconv.Itoa(int(cmd.Id)), Ping: 25, Pong: true}})
	case cmd.Subscribe != nil:
		ch := cmd.Subscribe.Channel
		s.mu.Lock()
		if s.subs[ch] == nil {
			s.subs[ch] = map[*sconn]struct{}{}
		}
		s.subs[ch][c] = struct{}{}
		c.subs[ch] = true
		s.mu.Unlock()
		return c.reply(&protocol.Reply{Id: cmd.Id, Subscribe: &protocol.SubscribeResult{}})
	case cmd.Publish != nil:
		ch := cmd.Publish.Channel
		s.mu.Lock()
		allowed := c.subs[ch]
		var to []*sconn
		for m := range s.subs[ch] {
			to = append(to, m)
		}
		s.mu.Unlock()
		if !allowed {
			return c.reply(&protocol.Reply{Id: cmd.Id, Error: &protocol.Error{Code: 103, Message: "permission denied"}})
		}
		s.published.Add(1)
		push, err := encode(&protocol.Reply{Push: &protocol.Push{Channel: ch, Pub: &protocol.Publication{Data: cmd.Publish.Data}}})
		if err != nil {
			return err
		}
		for _, m := range to {
			_ = m.write(push)
		}
		return c.reply(&protocol.Reply{Id: cmd.Id, Publish: &protocol.PublishResult{}})
	default:
		return c.reply(&protocol.Reply{Id: cmd.Id, Error: &protocol.Error{Code: 104, Message: "method not found"}})
	}
}

// encode is one length-prefixed Reply.
func encode(r *protocol.Reply) ([]byte, error) {
	b, err := r.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("cftest: %w", err)
	}
	return append(binary.AppendUvarint(nil, uint64(len(b))), b...), nil
}

func (c *sconn) reply(r *protocol.Reply) error {
	b, err := encode(r)
	if err != nil {
		return err
	}
	return c.write(b)
}

// write sends one binary message.
func (c *sconn) write(msg []byte) error {
	frame, err := ws.CompileFrame(ws.NewBinaryFrame(msg))
	if err != nil {
		return fmt.Errorf("cftest: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.srv.cfg.SplitWrites {
		_, err = c.Write(frame)
		return err
	}
	for len(frame) > 0 {
		n := min(len(frame), 3)
		if _, err := c.Write(frame[:n]); err != nil {
			return err
		}
		frame = frame[n:]
		// The pause makes the pieces separate TCP reads: the condition
		// under test.
		time.Sleep(200 * time.Microsecond)
	}
	return nil
}
