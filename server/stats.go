package server

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"

	"github.com/tickrelay/tickrelay/proto/closes"
)

// counters are the server's event counts. Every one of them moves on a rare
// event (a connection opening or closing, a handshake, an error), never per
// relayed message; per-message counts live in the rooms' per-worker stats.
type counters struct {
	connsOpened     atomic.Uint64
	connsClosed     atomic.Uint64
	upgrades        atomic.Uint64
	plainHTTP       atomic.Uint64
	slowConsumers   atomic.Uint64
	idleTimeouts    atomic.Uint64
	badMessages     atomic.Uint64
	protocolErrors  atomic.Uint64
	rateLimited     atomic.Uint64 // messages dropped by the per-connection rate limits
	slowMessages    atomic.Uint64 // connections closed for message-read-timeout
	addressRefusals atomic.Uint64 // joins refused by the per-address limits
	closesByCause   [len(closes.Table)]atomic.Uint64

	mu             sync.Mutex
	handshakeFails map[string]uint64
	closesByCode   map[closeKey]uint64
}

type closeKey struct {
	Code     ws.StatusCode
	ByClient bool
}

// Handshake failure reasons, as reported in metrics.
const (
	failServerFull   = "server_full"
	failBadRequest   = "bad_request"
	failTimeout      = "timeout"
	failOrigin       = "origin_refused"
	failAddressLimit = "address_limited"
	failUnauthorized = "unauthorized"
	failProxyHeader  = "proxy_header"
	failClientClosed = "client_closed"
)

func newCounters() *counters {
	return &counters{handshakeFails: map[string]uint64{}, closesByCode: map[closeKey]uint64{}}
}

func (c *counters) handshakeFailed(reason string) {
	c.mu.Lock()
	c.handshakeFails[reason]++
	c.mu.Unlock()
}

// closedFor counts a server-initiated close by its cause.
func (c *counters) closedFor(cause closes.Cause) {
	if int(cause) < len(c.closesByCause) {
		c.closesByCause[cause].Add(1)
	}
}

func (c *counters) closedBy(code ws.StatusCode, byClient bool) {
	c.mu.Lock()
	c.closesByCode[closeKey{code, byClient}]++
	c.mu.Unlock()
}
