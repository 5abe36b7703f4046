package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// faultProxy is the TCP proxy of -fault-cut-fraction: the clients connect
// to it, it forwards each connection to the relay, and cut resets a random
// share of the connections passing through it at once, as a network
// failure would: no WebSocket Close, no TCP FIN, just an RST to both ends.
// Client-side machinery, so a goroutine per direction is fine; the copies
// splice on Linux and cost little CPU.
type faultProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	pairs map[*proxyPair]struct{}
	cuts  atomic.Uint64
	wg    sync.WaitGroup
}

// proxyPair is one forwarded connection: the client's and the relay's side.
type proxyPair struct {
	down, up net.Conn
	once     sync.Once
}

// close ends both sides once; abort resets them (SO_LINGER 0) instead of a
// graceful close.
func (p *proxyPair) close(abort bool) bool {
	done := false
	p.once.Do(func() {
		done = true
		for _, c := range []net.Conn{p.down, p.up} {
			if tc, ok := c.(*net.TCPConn); ok && abort {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
	})
	return done
}

// startFaultProxy listens on a free loopback port and forwards to target
// (host:port).
func startFaultProxy(target string) (*faultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fault proxy: %w", err)
	}
	p := &faultProxy{ln: ln, target: target, pairs: map[*proxyPair]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is host:port to connect to instead of the target.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a client gave up during the handshake
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *faultProxy) forward(down net.Conn) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.target)
	cancel()
	if err != nil {
		_ = down.Close() // the client sees the relay refuse, as without the proxy
		return
	}
	pair := &proxyPair{down: down, up: up}
	p.mu.Lock()
	p.pairs[pair] = struct{}{}
	p.mu.Unlock()
	var both sync.WaitGroup
	both.Add(2)
	pipe := func(dst, src net.Conn) {
		defer both.Done()
		_, _ = io.Copy(dst, src)
		// One direction ended (a close or a cut): end the other, as a
		// direct connection would.
		pair.close(false)
	}
	go pipe(up, down)
	go pipe(down, up)
	both.Wait()
	p.mu.Lock()
	delete(p.pairs, pair)
	p.mu.Unlock()
}

// cut resets a random fraction of the connections open now (rounded at
// random, so that small fractions of few connections still cut at the
// right rate on average) and returns how many it cut.
func (p *faultProxy) cut(fraction float64, rng *rand.Rand) int {
	p.mu.Lock()
	open := make([]*proxyPair, 0, len(p.pairs))
	for pair := range p.pairs {
		open = append(open, pair)
	}
	p.mu.Unlock()
	k := min(len(open), int(fraction*float64(len(open))+rng.Float64()))
	n := 0
	for i := 0; i < k; i++ {
		j := i + rng.IntN(len(open)-i) // a partial Fisher-Yates shuffle
		open[i], open[j] = open[j], open[i]
		if open[i].close(true) {
			n++
		}
	}
	p.cuts.Add(uint64(n))
	return n
}

// Close stops accepting, closes every forwarded connection and waits for
// the proxy's goroutines.
func (p *faultProxy) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for pair := range p.pairs {
		pair.close(false)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// faults is the fault proxies of a run, one per relay URL.
type faults struct {
	proxies []*faultProxy
	urls    []string // the clients' URLs: each relay URL with its proxy's address
}

// startFaults puts a fault proxy in front of each URL.
func startFaults(urls []string) (*faults, error) {
	f := &faults{}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("fault proxy: url %q: %w", raw, err)
		}
		target := u.Host
		if u.Port() == "" {
			target = net.JoinHostPort(u.Hostname(), "80")
		}
		p, err := startFaultProxy(target)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.proxies = append(f.proxies, p)
		u.Host = p.Addr()
		f.urls = append(f.urls, u.String())
	}
	return f, nil
}

// run cuts fraction of the connections every interval until ctx is done.
func (f *faults) run(ctx context.Context, fraction float64, every time.Duration) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range f.proxies {
			p.cut(fraction, rng)
		}
	}
}

// cuts is the number of connections cut so far.
func (f *faults) cuts() uint64 {
	var n uint64
	for _, p := range f.proxies {
		n += p.cuts.Load()
	}
	return n
}

func (f *faults) Close() {
	for _, p := range f.proxies {
		p.Close()
	}
}
