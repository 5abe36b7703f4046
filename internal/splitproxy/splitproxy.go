// Package splitproxy is a TCP proxy for tests that makes loopback behave like
// a real network: every write, in both directions, is cut into pieces of
// random size with short pauses between some of them, so the receiver sees a
// message arrive in several reads, split at arbitrary points (inside a
// WebSocket header, a mask, a payload, between fragments).
//
// Loopback delivers a write in one read almost always; the internet does not.
// A server that is only tested on loopback loses frames that straddle two
// reads. Tests run their clients through a Proxy to see that.
//
// Every random choice comes from a seed (Config.Seed, or a random one that
// Seed reports), one stream per connection and direction, so a failing run
// can be replayed with the seed printed in the test log. Timing on a busy
// machine still varies, so a replay cuts the same pieces but the receiver
// may not see exactly the same reads.
package splitproxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Config configures a Proxy. A zero field means the default in its comment.
type Config struct {
	// Target is the address connections are forwarded to (host:port).
	Target string
	// Listen is the proxy's own address. Zero means "127.0.0.1:0".
	Listen string
	// Seed makes the cutting reproducible. Zero means a random seed
	// (reported by Proxy.Seed).
	Seed uint64
	// MaxPiece is the largest piece a write is cut into. Sizes are drawn
	// from three bands (1-16 bytes, up to 512, up to MaxPiece) with equal
	// probability, so headers are split as often as payloads. Zero means
	// 4096.
	MaxPiece int
	// MaxPause is the longest pause after a piece. Zero means 2ms.
	MaxPause time.Duration
	// PauseChance is the probability of a pause after a piece (0-1]. A pause
	// of even a millisecond makes the receiver read the pieces separately;
	// pausing after every piece would make a stream of big frames slower
	// than its sender. Zero means 0.25.
	PauseChance float64
	// Logf, if set, receives one line per connection (its seed) and errors.
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64() | 1
	}
	if c.MaxPiece <= 0 {
		c.MaxPiece = 4096
	}
	if c.MaxPause <= 0 {
		c.MaxPause = 2 * time.Millisecond
	}
	if c.PauseChance <= 0 || c.PauseChance > 1 {
		c.PauseChance = 0.25
	}
	return c
}

// Proxy forwards connections to Config.Target, cutting their bytes. It is
// safe for concurrent use.
type Proxy struct {
	cfg Config
	ln  net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	pairs  map[*pair]struct{}
	closed bool
	refuse bool   // Refuse: reset new connections at once
	next   uint64 // connection index, for per-connection seeds

	wg sync.WaitGroup
}

// Start listens and starts forwarding.
func Start(cfg Config) (*Proxy, error) {
	cfg = cfg.withDefaults()
	if cfg.Target == "" {
		return nil, errors.New("splitproxy: Config.Target is required")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("splitproxy: listen: %w", err)
	}
	p := &Proxy{cfg: cfg, ln: ln, conns: make(map[net.Conn]struct{}), pairs: make(map[*pair]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Seed is the seed of this proxy's cuts: put it in Config.Seed to replay.
func (p *Proxy) Seed() uint64 { return p.cfg.Seed }

// Close stops listening, cuts every forwarded connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.forward(client)
	}
}

// SetTarget makes new connections go to target (a load balancer moving
// clients to another server); connections already forwarded stay.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.cfg.Target = target
	p.mu.Unlock()
}

// Refuse, while on, resets every new connection as soon as it is accepted
// (the client sees its connect succeed and the connection drop at once), as
// an unreachable server behind a load balancer looks.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.refuse {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	_ = c.Close()
}

func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	if !p.track(client) {
		reset(client)
		return
	}
	defer p.untrack(client)
	p.mu.Lock()
	target := p.cfg.Target
	p.mu.Unlock()
	upstream, err := net.Dial("tcp", target)
	if err != nil {
		p.logf("splitproxy: dial %s: %v", target, err)
		return
	}
	if !p.track(upstream) {
		_ = upstream.Close()
		return
	}
	pr := &pair{client: client, upstream: upstream}
	defer func() {
		p.mu.Lock()
		halfOpen := pr.halfOpen
		p.mu.Unlock()
		if !halfOpen {
			p.untrack(upstream)
		} // else it stays open (and tracked) until Close
	}()

	p.mu.Lock()
	idx := p.next
	p.next++
	p.pairs[pr] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pairs, pr)
		p.mu.Unlock()
	}()
	p.logf("splitproxy: connection %d (%s) seed %d", idx, client.RemoteAddr(), p.cfg.Seed)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		p.pipe(pr, upstream, client, rand.New(rand.NewPCG(p.cfg.Seed, 2*idx)))
	}()
	go func() {
		defer wg.Done()
		p.pipe(pr, client, upstream, rand.New(rand.NewPCG(p.cfg.Seed, 2*idx+1)))
	}()
	wg.Wait()
}

// pair is one forwarded connection: the client's side and the target's.
type pair struct {
	client, upstream net.Conn
	// halfOpen (set under Proxy.mu before the client side is reset): the
	// target's side stays open and silent, as after a NAT or Wi-Fi drop.
	halfOpen bool
}

// Cut drops every forwarded connection at once, both sides, with a TCP
// reset: what a crashed middlebox or a lost route looks like to both ends
// (each sees its connection end without a WebSocket Close). It returns the
// number of connections cut. New connections are accepted as before.
func (p *Proxy) Cut() int { return p.cut(false) }

// CutHalfOpen drops every forwarded connection on the client's side only:
// the client sees a reset, while the target's side stays open, silent and
// unread until the proxy is closed, so the target learns of the loss only
// from its own timeouts (or when the client comes back on a new
// connection).
func (p *Proxy) CutHalfOpen() int { return p.cut(true) }

func (p *Proxy) cut(halfOpen bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for pr := range p.pairs {
		pr.halfOpen = halfOpen
		reset(pr.client)
		if !halfOpen {
			reset(pr.upstream)
		}
		n++
	}
	return n
}

// reset closes c with SO_LINGER 0, which sends a RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// pipe copies src to dst in random pieces. On EOF it half-closes dst, so a
// peer's FIN travels through; on any error it closes both.
func (p *Proxy) pipe(pr *pair, dst, src net.Conn, rng *rand.Rand) {
	buf := make([]byte, 64<<10)
	closeBoth := func() {
		p.mu.Lock()
		halfOpen := pr.halfOpen
		p.mu.Unlock()
		for _, c := range []net.Conn{src, dst} {
			if !halfOpen || c != pr.upstream {
				_ = c.Close()
			}
		}
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if werr := p.writeCut(dst, buf[:n], rng); werr != nil {
				closeBoth()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			closeBoth()
			return
		}
	}
}

func (p *Proxy) writeCut(dst net.Conn, b []byte, rng *rand.Rand) error {
	for len(b) > 0 {
		n := min(p.pieceSize(rng), len(b))
		if _, err := dst.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if rng.Float64() < p.cfg.PauseChance {
			time.Sleep(time.Duration(rng.Int64N(int64(p.cfg.MaxPause)) + 1))
		}
	}
	return nil
}

func (p *Proxy) pieceSize(rng *rand.Rand) int {
	switch max := p.cfg.MaxPiece; rng.IntN(3) {
	case 0:
		return 1 + rng.IntN(min(16, max))
	case 1:
		return 1 + rng.IntN(min(512, max))
	default:
		return 1 + rng.IntN(max)
	}
}

func (p *Proxy) logf(format string, args ...any) {
	if p.cfg.Logf != nil {
		p.cfg.Logf(format, args...)
	}
}
