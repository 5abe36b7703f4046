package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	"github.com/tickrelay/tickrelay/room"
)

// Node is this process's membership in a cluster: the owner of some rooms
// and the edge of its own connections. Create it with New, hand Hooks to
// the room.Manager's Config, then Start it with that Manager. Safe for
// concurrent use.
type Node struct {
	cfg   Config
	names names
	run   string // this start's id
	log   *slog.Logger
	rooms *room.Manager

	nc                *nats.Conn
	js                jetstream.JetStream
	leases, recs, nds jetstream.KeyValue

	// out queues everything this node publishes; one goroutine publishes
	// it, in order (per subject, order is what the sequence numbers
	// check).
	out chan outMsg
	// up and down receive the uplinks of owned rooms and the downlinks of
	// rooms with local connections, each handled by one goroutine, so
	// that every room's messages are handled in their order.
	up, down chan *nats.Msg
	// wake carries remote seats whose room says they may take a parked
	// request now, to the up loop.
	wake chan *remoteSeat
	// upDo runs functions on the up loop (work on remote seats).
	upDo chan func()
	// writes queues room records for the rooms bucket (latest per room).
	writes chan struct{}

	mu         sync.Mutex
	owned      map[string]*owned    // rooms this node owns
	edges      map[string]*edgeRoom // rooms this node has connections in
	leaseView  map[string]leaseView // every room's lease, from the watch
	nodeView   map[string]*cpb.NodeInfo
	recPending map[string]*room.RoomRecord // room records to write
	recGone    map[string]*owned           // closed rooms: their records to delete, then their leases
	lookedUp   map[string]time.Time        // rooms NATS said nobody owns, when
	upMu       sync.Mutex
	upSeqs     map[string]uint64 // the last uplink seq per room (upMu)
	takingOver map[string]bool
	stopWatch  context.CancelFunc // ends the current watches
	draining   bool
	connected  atomic.Bool // NATS is up

	// afterLease, if set (tests), runs when acquire has created a lease,
	// before the room is used.
	afterLease atomic.Pointer[func(id string)]

	nextConn atomic.Uint64
	stats    counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// leaseView is what the leases watch says of one room.
type leaseView struct {
	node, run string
	rev       uint64 // the latest revision
}

// outMsg is one message to publish.
type outMsg struct {
	subject string
	data    []byte
}

// New validates cfg and prepares a node; nothing connects until Start.
func New(cfg Config, log *slog.Logger) (*Node, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: no NATS URL", ErrConfig)
	}
	c, err := cfg.resolve(os.Hostname)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	var runID [6]byte
	_, _ = rand.Read(runID[:])
	n := &Node{
		cfg:        c,
		names:      names{prefix: c.Name},
		run:        hex.EncodeToString(runID[:]),
		log:        log.With("node", c.NodeID),
		out:        make(chan outMsg, 1<<16),
		up:         make(chan *nats.Msg, 1<<16),
		down:       make(chan *nats.Msg, 1<<16),
		wake:       make(chan *remoteSeat, 1<<12),
		upDo:       make(chan func(), 64),
		lookedUp:   make(map[string]time.Time),
		upSeqs:     make(map[string]uint64),
		takingOver: make(map[string]bool),
		writes:     make(chan struct{}, 1),
		owned:      make(map[string]*owned),
		edges:      make(map[string]*edgeRoom),
		leaseView:  make(map[string]leaseView),
		nodeView:   make(map[string]*cpb.NodeInfo),
		recPending: make(map[string]*room.RoomRecord),
		recGone:    make(map[string]*owned),
	}
	return n, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Hooks is what the room.Manager must be configured with.
func (n *Node) Hooks() room.Hooks { return (*hooks)(n) }

// Start connects to NATS, creates the cluster's buckets if needed, and
// starts the node's goroutines. ctx bounds the connect.
func (n *Node) Start(ctx context.Context, rooms *room.Manager) error {
	n.rooms = rooms
	opts := []nats.Option{
		nats.Name("tickrelay " + n.cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Publishes made while disconnected fail instead of waiting in a
		// buffer: a stale input must not reach a new owner late. The
		// sequence numbers notice what was lost.
		nats.ReconnectBufSize(-1),
		nats.PingInterval(n.cfg.LeaseTTL / 3),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			n.connected.Store(false)
			if c.IsClosed() {
				return // the node's own Close: nothing lost
			}
			n.log.Warn("cluster: lost NATS", "err", err)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			n.connected.Store(true)
			n.log.Info("cluster: NATS is back")
			// A NATS that lost its store has no buckets: make them again.
			go func() {
				ctx, cancel := context.WithTimeout(n.ctxOr(context.Background()), n.cfg.LeaseTTL)
				defer cancel()
				if err := n.ensureBuckets(ctx); err != nil {
					n.log.Warn("cluster: buckets after reconnect", "err", err)
					return
				}
				if err := n.watch(ctx); err != nil {
					n.log.Warn("cluster: watching after reconnect", "err", err)
				}
			}()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			n.stats.natsErrors.Add(1)
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			n.log.Warn("cluster: NATS error", "subject", subject, "err", err)
		}),
	}
	if n.cfg.NATSCredentials != "" {
		opts = append(opts, nats.UserCredentials(n.cfg.NATSCredentials))
	}
	nc, err := nats.Connect(n.cfg.NATSURL, opts...)
	if err != nil {
		return fmt.Errorf("cluster: connect to NATS %s: %w", n.cfg.NATSURL, err)
	}
	n.nc = nc
	n.connected.Store(true)
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("cluster: JetStream: %w", err)
	}
	n.js = js
	if n.leases, n.recs, n.nds, err = n.makeBuckets(ctx); err != nil {
		nc.Close()
		return err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if _, err := nc.ChanSubscribe(n.names.handoverAll(), n.down); err != nil {
		nc.Close()
		return fmt.Errorf("cluster: subscribe: %w", err)
	}
	for _, op := range []string{"handoff", "admin", "acquire"} {
		if _, err := nc.Subscribe(n.names.nodeCtl(n.cfg.NodeID, op), n.control); err != nil {
			nc.Close()
			return fmt.Errorf("cluster: subscribe: %w", err)
		}
	}
	if err := n.watch(ctx); err != nil {
		nc.Close()
		return err
	}
	n.heartbeat(ctx)
	for _, loop := range []func(){n.publishLoop, n.upLoop, n.downLoop, n.leaseLoop, n.recordLoop, n.heartbeatLoop} {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			loop()
		}()
	}
	n.log.Info("cluster: node up", "nats", nc.ConnectedUrlRedacted(), "run", n.run)
	return nil
}

// makeBuckets creates (or opens) the leases, rooms and nodes buckets.
func (n *Node) makeBuckets(ctx context.Context) (leases, recs, nds jetstream.KeyValue, err error) {
	mk := func(cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
		cfg.Replicas = n.cfg.Replicas
		kv, err := n.js.CreateOrUpdateKeyValue(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("cluster: bucket %s: %w", cfg.Bucket, err)
		}
		return kv, nil
	}
	// The TTL of a lease is the bucket's: every renewal is a new value
	// whose age starts at zero (a per-key TTL would be dropped by the
	// first Update). The markers tell watchers that a lease ran out.
	if leases, err = mk(jetstream.KeyValueConfig{
		Bucket:         n.names.leases(),
		Description:    "tickrelay room leases: who owns which room",
		History:        1,
		TTL:            n.cfg.LeaseTTL,
		LimitMarkerTTL: n.cfg.LeaseTTL,
		Storage:        jetstream.FileStorage,
	}); err != nil {
		return
	}
	if recs, err = mk(jetstream.KeyValueConfig{
		Bucket:      n.names.rooms(),
		Description: "tickrelay room records: options and members, for failover",
		History:     1,
		Storage:     jetstream.FileStorage,
	}); err != nil {
		return
	}
	nds, err = mk(jetstream.KeyValueConfig{
		Bucket:         n.names.nodes(),
		Description:    "tickrelay nodes: who is alive, with what load",
		History:        1,
		TTL:            n.cfg.LeaseTTL,
		LimitMarkerTTL: n.cfg.LeaseTTL,
		Storage:        jetstream.FileStorage,
	})
	return
}

// ensureBuckets makes the buckets again on a NATS that lost them (the
// handles stay valid: they are names).
func (n *Node) ensureBuckets(ctx context.Context) error {
	for _, kv := range []jetstream.KeyValue{n.leases, n.recs, n.nds} {
		st, err := kv.Status(ctx)
		if err == nil {
			continue
		}
		if !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("cluster: bucket status: %w", err)
		}
		_ = st
		_, _, _, err = n.makeBuckets(ctx)
		return err
	}
	return nil
}

// Close leaves the cluster at once: it stops renewing, so other nodes take
// the rooms over after their leases run out (Drain hands them over first),
// and closes the NATS connection. Idempotent.
func (n *Node) Close() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.nc.Close()
	n.wg.Wait()
}

// publish queues a message; false when the queue is full (the message is
// lost, which its sequence number will show).
func (n *Node) publish(subject string, m proto.Message) bool {
	b, err := proto.Marshal(m)
	if err != nil {
		n.log.Error("cluster: marshal", "err", err)
		return false
	}
	select {
	case n.out <- outMsg{subject: subject, data: b}:
		return true
	default:
		n.stats.queueFull.Add(1)
		return false
	}
}

func (n *Node) publishLoop() {
	var lastErrLog time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case m := <-n.out:
			if err := n.nc.Publish(m.subject, m.data); err != nil {
				n.stats.publishErrors.Add(1)
				// At most one line a second: disconnected, every
				// publish fails.
				if now := time.Now(); now.Sub(lastErrLog) >= time.Second {
					lastErrLog = now
					n.log.Warn("cluster: publish refused", "subject", m.subject, "bytes", len(m.data), "err", err)
				}
			}
			n.stats.published.Add(1)
			n.stats.publishedBytes.Add(uint64(len(m.data)))
		}
	}
}

// watch follows the leases and nodes buckets, until the node stops or
// the watch is replaced (after a reconnect: a watch does not survive a
// NATS that restarted). Each watch starts with the buckets' current values;
// when they are in, rooms this node has connections in but no lease for
// (deleted while the watch was not looking) are taken over.
func (n *Node) watch(ctx context.Context) error {
	wctx, cancel := context.WithCancel(n.ctx)
	lw, err := n.leases.WatchAll(wctx)
	if err != nil {
		cancel()
		return fmt.Errorf("cluster: watch leases: %w", err)
	}
	nw, err := n.nds.WatchAll(wctx)
	if err != nil {
		cancel()
		_ = lw.Stop()
		return fmt.Errorf("cluster: watch nodes: %w", err)
	}
	n.mu.Lock()
	if n.stopWatch != nil {
		n.stopWatch()
	}
	n.stopWatch = cancel
	n.mu.Unlock()
	follow := func(w jetstream.KeyWatcher, event func(jetstream.KeyValueEntry), synced func()) {
		defer n.wg.Done()
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-wctx.Done():
				return
			case e, ok := <-w.Updates():
				switch {
				case !ok:
					return
				case e == nil:
					synced()
				default:
					event(e)
				}
			}
		}
	}
	n.wg.Add(2)
	go follow(lw, n.leaseEvent, n.leasesSynced)
	go follow(nw, n.nodeEvent, func() {})
	return nil
}

// leasesSynced runs when a leases watch has delivered the current values:
// a room with local connections and no lease lost its owner unseen.
func (n *Node) leasesSynced() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for id := range n.edges {
		if _, ok := n.leaseView[id]; !ok && n.owned[id] == nil {
			n.scheduleTakeover(id)
		}
	}
}

// ctxOr is the node's context once started (watches outlive Start's ctx).
func (n *Node) ctxOr(ctx context.Context) context.Context {
	if n.ctx != nil {
		return n.ctx
	}
	return ctx
}

// leaseEvent records a lease change, and starts a takeover when a room
// this node has connections in lost its owner.
func (n *Node) leaseEvent(e jetstream.KeyValueEntry) {
	id, ok := roomOfKey(e.Key())
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		n.log.Debug("cluster: lease gone", "room", id, "edge", n.edges[id] != nil)
		delete(n.leaseView, id)
		if er := n.edges[id]; er != nil && n.owned[id] == nil {
			n.scheduleTakeover(id)
		}
		return
	}
	var l cpb.Lease
	if err := proto.Unmarshal(e.Value(), &l); err != nil {
		return
	}
	n.leaseView[id] = leaseView{node: l.GetNode(), run: l.GetRun(), rev: e.Revision()}
}

// nodeEvent records a node's heartbeat, and lets go of the seats of a node
// that is gone (or restarted).
func (n *Node) nodeEvent(e jetstream.KeyValueEntry) {
	if len(e.Key()) < 3 {
		return
	}
	id := e.Key()[2:]
	n.mu.Lock()
	prev := n.nodeView[id]
	var info *cpb.NodeInfo
	if e.Operation() == jetstream.KeyValuePut {
		info = new(cpb.NodeInfo)
		if err := proto.Unmarshal(e.Value(), info); err != nil {
			n.mu.Unlock()
			return
		}
		n.nodeView[id] = info
	} else {
		delete(n.nodeView, id)
	}
	n.mu.Unlock()
	if id == n.cfg.NodeID {
		return
	}
	if prev != nil && (info == nil || info.GetRun() != prev.GetRun()) {
		n.edgeGone(id, prev.GetRun())
	}
}

// heartbeat announces this node in the nodes bucket.
func (n *Node) heartbeat(ctx context.Context) {
	n.mu.Lock()
	info := &cpb.NodeInfo{
		Node:          n.cfg.NodeID,
		Run:           n.run,
		Advertise:     n.cfg.Advertise,
		RoomsOwned:    uint32(len(n.owned)),
		Draining:      n.draining,
		StartedUnixMs: 0,
	}
	for _, er := range n.edges {
		info.Connections += uint32(len(er.conns))
	}
	n.mu.Unlock()
	b, _ := proto.Marshal(info)
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RenewEvery)
	defer cancel()
	if _, err := n.nds.Put(ctx, nodeKey(n.cfg.NodeID), b); err != nil && !errors.Is(err, context.Canceled) {
		n.log.Warn("cluster: heartbeat", "err", err)
	}
}

func (n *Node) heartbeatLoop() {
	t := time.NewTicker(n.cfg.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.heartbeat(n.ctx)
		}
	}
}

// control answers requests addressed to this node (handoffs, admin calls).
func (n *Node) control(m *nats.Msg) {
	switch {
	case m.Subject == n.names.nodeCtl(n.cfg.NodeID, "handoff"):
		n.acceptHandoff(m)
	case m.Subject == n.names.nodeCtl(n.cfg.NodeID, "admin"):
		n.adminCall(m)
	case m.Subject == n.names.nodeCtl(n.cfg.NodeID, "acquire"):
		n.acquireFor(m)
	}
}

// Stats are the node's counters, for metrics.
type Stats struct {
	RoomsOwned, RemoteSeats, EdgeConns     int
	Published, PublishedBytes              uint64
	PublishErrors, QueueFull, NATSErrors   uint64
	UplinkGaps, DownlinkGaps, StaleDropped uint64
	Takeovers, TakeoverLosses, Handoffs    uint64
	Fenced, LeaseLosses, RenewFailures     uint64
	PlacedElsewhere                        uint64
	Connected                              bool
}

type counters struct {
	published, publishedBytes              atomic.Uint64
	publishErrors, queueFull, natsErrors   atomic.Uint64
	uplinkGaps, downlinkGaps, staleDropped atomic.Uint64
	takeovers, takeoverLosses, handoffs    atomic.Uint64
	fenced, leaseLosses, renewFailures     atomic.Uint64
	placedElsewhere                        atomic.Uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	st := Stats{RoomsOwned: len(n.owned)}
	for _, o := range n.owned {
		o.mu.Lock()
		st.RemoteSeats += len(o.seats)
		o.mu.Unlock()
	}
	for _, er := range n.edges {
		st.EdgeConns += len(er.conns)
	}
	n.mu.Unlock()
	c := &n.stats
	st.Published, st.PublishedBytes = c.published.Load(), c.publishedBytes.Load()
	st.PublishErrors, st.QueueFull, st.NATSErrors = c.publishErrors.Load(), c.queueFull.Load(), c.natsErrors.Load()
	st.UplinkGaps, st.DownlinkGaps, st.StaleDropped = c.uplinkGaps.Load(), c.downlinkGaps.Load(), c.staleDropped.Load()
	st.Takeovers, st.TakeoverLosses, st.Handoffs = c.takeovers.Load(), c.takeoverLosses.Load(), c.handoffs.Load()
	st.Fenced, st.LeaseLosses, st.RenewFailures = c.fenced.Load(), c.leaseLosses.Load(), c.renewFailures.Load()
	st.PlacedElsewhere = c.placedElsewhere.Load()
	st.Connected = n.connected.Load()
	return st
}

// PeersSeen is the number of live nodes this node knows of, itself
// included.
func (n *Node) PeersSeen() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.nodeView)
}
