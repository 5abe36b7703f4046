package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// server is one running server process of a system.
type server struct {
	*proc
	sys       System
	addr      string // WebSocket listener, 127.0.0.1:port
	adminAddr string // relay admin API; "" when off
	url       string // ws://addr/ws
	args      []string
	// A cluster system (Nodes > 1): the other relay nodes (this one is
	// node 1) and the NATS server they share; nil otherwise.
	peers    []*server
	nats     *proc
	natsArgs []string
	natsDir  string // its JetStream store, removed after it stopped
}

// stop ends the server: a cluster's nodes first, then its NATS server.
func (s *server) stop() {
	for _, p := range s.peers {
		p.proc.stop()
	}
	s.proc.stop()
	if s.nats != nil {
		stopNATS(s.nats, s.natsDir)
	}
}

// stopNATS stops a cluster's NATS server and removes its store.
func stopNATS(p *proc, dir string) {
	p.stop()
	_ = os.RemoveAll(dir)
}

// nodes are the relay processes of the system: this one, then its peers.
func (s *server) nodes() []*server { return append([]*server{s}, s.peers...) }

// pids are the relay processes' ids, node 1 first.
func (s *server) pids() []int {
	var out []int
	for _, n := range s.nodes() {
		out = append(out, n.pid())
	}
	return out
}

// urls is every node's WebSocket URL, comma-separated (client-sim's -url
// list: clients are given to them round-robin).
func (s *server) urls() string {
	var out []string
	for _, n := range s.nodes() {
		out = append(out, n.url)
	}
	return strings.Join(out, ",")
}

// adminAddrs are the nodes' admin API addresses (none when off).
func (s *server) adminAddrs() []string {
	var out []string
	for _, n := range s.nodes() {
		if n.adminAddr != "" {
			out = append(out, n.adminAddr)
		}
	}
	return out
}

// natsServerArgs is the command line of the cluster's NATS server: one
// node, loopback only, JetStream on (the cluster's leases and room
// directory are JetStream key-value buckets) with its store in dir.
func natsServerArgs(port int, dir string) []string {
	return []string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir}
}

// clusterNodeArgs are the flags that make relay node i (from 1) a node of
// the cluster on natsURL.
func clusterNodeArgs(natsURL string, i int) []string {
	return []string{"-cluster-nats-url", natsURL, "-cluster-node-id", "node-" + strconv.Itoa(i)}
}

// centrifugoConfig is the Centrifugo configuration of the centrifugo
// system, relative to the repository root (see bench/centrifugo/README.md).
const centrifugoConfig = "bench/centrifugo/config.json"

// serverArgs is the command line of sys listening on port (and adminPort
// when the system has its admin API on), then the scenario's extra flags.
func serverArgs(sys System, port, adminPort int, extra ...string) []string {
	listen := "127.0.0.1:" + strconv.Itoa(port)
	var args []string
	switch sys.Kind {
	case kindRelay:
		args = []string{"-listen", listen, "-log-level", "warn"}
		if sys.Admin {
			args = append(args, "-admin-listen", "127.0.0.1:"+strconv.Itoa(adminPort))
		}
	case kindBaseline, kindReference:
		args = []string{"-listen", listen}
	case kindCentrifugo:
		// The port on the command line wins over the file's.
		args = []string{"--config", centrifugoConfig, "--http_server.port", strconv.Itoa(port)}
	}
	args = append(args, sys.ServerArgs...)
	return append(args, extra...)
}

// wsURL is the WebSocket endpoint of sys at addr.
func wsURL(sys System, addr string) string {
	if sys.Kind == kindCentrifugo {
		return "ws://" + addr + "/connection/websocket"
	}
	return "ws://" + addr + "/ws"
}

// healthURL is the readiness check of sys at addr; "" when accepting TCP
// is all there is to check.
func healthURL(sys System, addr string) string {
	switch sys.Kind {
	case kindRelay, kindReference:
		return "http://" + addr + "/healthz"
	case kindCentrifugo:
		return "http://" + addr + "/health"
	}
	return ""
}

// startServer starts sys on free ports with the scenario's extra flags
// and returns once it accepts connections (and, for the relay, answers its
// health check on the WebSocket port).
func (h *harness) startServer(ctx context.Context, sys System, tag string, extra []string) (*server, error) {
	if sys.Nodes > 1 {
		return h.startCluster(ctx, sys, tag, extra)
	}
	return h.startNode(ctx, sys, tag, "server", extra)
}

// startCluster starts a NATS server with JetStream on a fresh store, then
// sys.Nodes relays on it, each on its own ports; the returned server is
// node 1, the others its peers.
func (h *harness) startCluster(ctx context.Context, sys System, tag string, extra []string) (*server, error) {
	if h.bins.nats == "" {
		return nil, fmt.Errorf("%s: no nats-server binary: %s", sys.Name, h.bins.missing[kindNATS])
	}
	natsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tickrelay-bench-nats-")
	if err != nil {
		return nil, fmt.Errorf("nats store: %w", err)
	}
	natsArgs := natsServerArgs(natsPort, dir)
	np, err := h.procs.spawn(ctx, sys.Name+" nats-server", h.bins.nats, natsArgs, filepath.Join(h.logDir, tag+"-nats.log"), nil)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := waitTCP(ctx, np, "127.0.0.1:"+strconv.Itoa(natsPort), 15*time.Second); err != nil {
		stopNATS(np, dir)
		return nil, err
	}
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(natsPort)
	var first *server
	for i := 1; i <= sys.Nodes; i++ {
		args := append(slices.Clone(extra), clusterNodeArgs(natsURL, i)...)
		n, err := h.startNode(ctx, sys, tag, "node"+strconv.Itoa(i), args)
		if err != nil {
			if first != nil {
				first.stop()
			} else {
				stopNATS(np, dir)
			}
			return nil, fmt.Errorf("%s node %d: %w", sys.Name, i, err)
		}
		if first == nil {
			first = n
			first.nats, first.natsArgs, first.natsDir = np, natsArgs, dir
		} else {
			first.peers = append(first.peers, n)
		}
	}
	return first, nil
}

// startNode starts one server process of sys.
func (h *harness) startNode(ctx context.Context, sys System, tag, role string, extra []string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort := 0
	if sys.Kind == kindRelay && sys.Admin {
		if adminPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	bin := h.bins.binOf(sys)
	if bin == "" {
		return nil, fmt.Errorf("%s: no binary: %s", sys.Name, h.bins.missing[sys.Kind])
	}
	args := serverArgs(sys, port, adminPort, extra...)
	name := sys.Name
	if role != "server" {
		name += " " + role
	}
	p, err := h.procs.spawn(ctx, name, bin, args, filepath.Join(h.logDir, tag+"-"+role+".log"), nil)
	if err != nil {
		return nil, err
	}
	s := &server{proc: p, sys: sys, addr: "127.0.0.1:" + strconv.Itoa(port), args: args}
	s.url = wsURL(sys, s.addr)
	if adminPort != 0 {
		s.adminAddr = "127.0.0.1:" + strconv.Itoa(adminPort)
	}
	if err := waitTCP(ctx, p, s.addr, 15*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	if u := healthURL(sys, s.addr); u != "" {
		if err := waitHTTPOK(ctx, u, 10*time.Second); err != nil {
			p.stop()
			return nil, fmt.Errorf("%s health check: %w", sys.Name, err)
		}
	}
	if s.adminAddr != "" {
		if err := waitTCP(ctx, p, s.adminAddr, 5*time.Second); err != nil {
			p.stop()
			return nil, err
		}
	}
	return s, nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func httpGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// waitHTTPOK polls url until it answers 200 (a server may accept TCP a
// moment before it serves), or timeout.
func waitHTTPOK(ctx context.Context, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := httpGet(ctx, url)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// scraper GETs a relay's /metrics once a second, as Prometheus would (more
// often than a usual 15 s scrape interval, so that the metrics cost
// measured in S1 is an upper bound).
type scraper struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	last       string // last body; mu guards it
	stopOnce   sync.Once
	cancel     context.CancelFunc
	done       chan struct{}
}

// startScraper scrapes every one of adminAddrs (a cluster's nodes) each
// period; last is the first address's body.
func startScraper(ctx context.Context, every time.Duration, adminAddrs ...string) *scraper {
	ctx, cancel := context.WithCancel(ctx)
	s := &scraper{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for i, addr := range adminAddrs {
				body, err := httpGet(ctx, "http://"+addr+"/metrics")
				if err != nil {
					if ctx.Err() == nil {
						s.failed.Add(1)
					}
					continue
				}
				s.ok.Add(1)
				if i == 0 {
					s.mu.Lock()
					s.last = body
					s.mu.Unlock()
				}
			}
		}
	}()
	return s
}

// scrapeNow fetches /metrics once, outside the schedule.
func scrapeNow(ctx context.Context, adminAddr string) (string, error) {
	return httpGet(ctx, "http://"+adminAddr+"/metrics")
}

func (s *scraper) stop() {
	if s == nil {
		return
	}
	s.stopOnce.Do(func() {
		s.cancel()
		<-s.done
	})
}

// portPlaceholder replaces the port of a loopback address or URL with
// PORT.
func portPlaceholder(a string) string {
	if !strings.HasPrefix(a, "127.0.0.1:") && !strings.HasPrefix(a, "ws://127.0.0.1:") && !strings.HasPrefix(a, "nats://127.0.0.1:") {
		return a
	}
	i := strings.LastIndexByte(a, ':')
	rest := a[i+1:]
	suffix := ""
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		suffix = rest[j:]
	}
	return a[:i+1] + "PORT" + suffix
}

// commandLine renders a command for the report, with the binary's base name
// and the per-run ports replaced by placeholders.
func commandLine(bin string, args []string) string {
	parts := []string{filepath.Base(bin)}
	for i, a := range args {
		if i > 0 {
			switch args[i-1] {
			case "-server-pid":
				a = "$SERVER_PID"
			case "-json":
				a = "REPORT.json"
			case "--http_server.port", "-p":
				a = "PORT"
			case "-sd":
				a = "STORE_DIR"
			case "-server-pids":
				a = "$OTHER_NODE_PIDS"
			case "-broker-pid":
				a = "$NATS_PID"
			}
		}
		// A -url list (a cluster's nodes): each address's port.
		list := strings.Split(a, ",")
		for k, item := range list {
			list[k] = portPlaceholder(item)
		}
		a = strings.Join(list, ",")
		if strings.ContainsAny(a, " \t'\"") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}
