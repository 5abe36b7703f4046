// Package cluster runs tickrelay on several nodes over NATS: clients connect
// to any node (its edge), every room is ticked by exactly one node (its
// owner), and losing a node costs only the clients connected to it a
// resume.
//
// Ownership is a lease in a JetStream key-value bucket: created with a
// compare-and-set, renewed by the owner every third of its TTL, its
// revision at creation the fencing epoch. An owner that cannot renew stops
// serving its rooms before the lease can have passed to another node
// (self-fencing). Edges forward their clients' requests to the owner on
// the room's "in" subject; the owner sends what its room builds, one
// message per room per tick, on the room's "out" subject; both carry
// sequence numbers, so a lost message is noticed and repaired by a resume.
// When an owner dies, an edge with players in the room takes the lease,
// gathers what every edge saw and acknowledged, and goes on with the room:
// players on the other nodes keep their connections and lose nothing they
// were sent. docs/ARCHITECTURE.md, "Cluster", gives the argument.
package cluster

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Config configures a node. A zero field means the default in its comment.
type Config struct {
	// NATSURL is the NATS server (or comma-separated servers) to use. Empty
	// means the cluster is off.
	NATSURL string
	// NATSCredentials, if set, is a NATS credentials file (JWT and seed).
	NATSCredentials string
	// Name is the cluster's name: nodes with the same name (and NATS) form
	// one cluster; it prefixes subjects and buckets. Zero means "tickrelay".
	Name string
	// NodeID names this node; unique in the cluster. Zero means the host
	// name.
	NodeID string
	// Advertise is the WebSocket URL clients use to reach this node, shown
	// to operators and used for placement. Zero means none.
	Advertise string
	// LeaseTTL is how long a room's lease lasts without renewal: after an
	// owner dies, its rooms wait about this long before another node takes
	// them over. Zero means 3s.
	LeaseTTL time.Duration
	// RenewEvery is how often an owner renews its leases. Zero means a
	// third of LeaseTTL.
	RenewEvery time.Duration
	// FenceMargin: an owner stops serving a room when its last successful
	// renewal was sent more than LeaseTTL minus this long ago, so that it
	// never ticks a room another node may own. Zero means 500ms.
	FenceMargin time.Duration
	// HandoverWait bounds how long a new owner waits for the other nodes'
	// reports on a room it takes over. Zero means 500ms.
	HandoverWait time.Duration
	// Replicas is the replication of the cluster's buckets in a clustered
	// JetStream. Zero means 1.
	Replicas int
	// MaxOwnedRooms: a node that owns this many rooms places a room a Join
	// creates on the live, not draining node that owns the fewest, when
	// that one owns fewer (and creates it itself when that node does not
	// take it). Zero means no limit: a room is owned by the node of the
	// Join that created it.
	MaxOwnedRooms int
	// ResendInputs is how many unacknowledged inputs an edge keeps per
	// connection for a new owner (older ones are dropped). Zero means 256.
	ResendInputs int
}

const (
	defaultName         = "tickrelay"
	defaultLeaseTTL     = 3 * time.Second
	defaultFenceMargin  = 500 * time.Millisecond
	defaultHandoverWait = 500 * time.Millisecond
	defaultResendInputs = 256
)

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("cluster: invalid configuration")

// namePattern is what may go into subject tokens and bucket names.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Enabled reports whether the configuration turns the cluster on.
func (c Config) Enabled() bool { return c.NATSURL != "" }

// resolve applies defaults and validates.
func (c Config) resolve(hostname func() (string, error)) (Config, error) {
	if c.Name == "" {
		c.Name = defaultName
	}
	if c.NodeID == "" {
		h, err := hostname()
		if err != nil {
			return c, fmt.Errorf("%w: no node id and no host name: %v", ErrConfig, err)
		}
		c.NodeID = sanitize(h)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = defaultLeaseTTL
	}
	if c.RenewEvery == 0 {
		c.RenewEvery = c.LeaseTTL / 3
	}
	if c.FenceMargin == 0 {
		c.FenceMargin = defaultFenceMargin
	}
	if c.HandoverWait == 0 {
		c.HandoverWait = defaultHandoverWait
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.ResendInputs == 0 {
		c.ResendInputs = defaultResendInputs
	}
	switch {
	case !namePattern.MatchString(c.Name):
		return c, fmt.Errorf("%w: cluster name %q: use 1-64 of [A-Za-z0-9_-]", ErrConfig, c.Name)
	case !namePattern.MatchString(c.NodeID):
		return c, fmt.Errorf("%w: node id %q: use 1-64 of [A-Za-z0-9_-]", ErrConfig, c.NodeID)
	case c.LeaseTTL < 500*time.Millisecond:
		return c, fmt.Errorf("%w: lease TTL %v is below 500ms", ErrConfig, c.LeaseTTL)
	case c.RenewEvery <= 0 || c.RenewEvery > c.LeaseTTL/2:
		return c, fmt.Errorf("%w: renew interval %v must be positive and at most half the lease TTL %v", ErrConfig, c.RenewEvery, c.LeaseTTL)
	case c.FenceMargin <= 0 || c.FenceMargin >= c.LeaseTTL-c.RenewEvery:
		return c, fmt.Errorf("%w: fence margin %v must be positive and below the lease TTL minus the renew interval (%v)", ErrConfig, c.FenceMargin, c.LeaseTTL-c.RenewEvery)
	case c.HandoverWait <= 0:
		return c, fmt.Errorf("%w: handover wait %v must be positive", ErrConfig, c.HandoverWait)
	case c.Replicas < 1 || c.Replicas > 5:
		return c, fmt.Errorf("%w: replicas %d: use 1 to 5", ErrConfig, c.Replicas)
	case c.ResendInputs < 1:
		return c, fmt.Errorf("%w: resend inputs %d must be positive", ErrConfig, c.ResendInputs)
	}
	return c, nil
}

// sanitize turns a host name into a node id.
func sanitize(h string) string {
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
