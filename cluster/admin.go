package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	"github.com/tickrelay/tickrelay/room"
)

// The admin API across the cluster: the same operations as room.Manager's,
// for rooms on any node. An operation on a room owned elsewhere runs on
// its owner (a NATS request); listings merge this node's rooms with the
// records of the others.

// RoomOwner is a room and the node that owns it.
type RoomOwner struct {
	room.RoomInfo
	Node string
}

// Rooms lists every room of the cluster, sorted by id: this node's with
// their live figures, the others' from their records (players, options).
func (n *Node) Rooms(ctx context.Context) ([]RoomOwner, error) {
	local, err := n.rooms.Rooms(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]RoomOwner, 0, len(local))
	seen := make(map[string]bool, len(local))
	for _, r := range local {
		out = append(out, RoomOwner{RoomInfo: r, Node: n.cfg.NodeID})
		seen[r.ID] = true
	}
	lister, err := n.recs.ListKeys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, fmt.Errorf("cluster: listing rooms: %w", err)
	}
	if lister != nil {
		for key := range lister.Keys() {
			id, ok := roomOfKey(key)
			if !ok || seen[id] {
				continue
			}
			e, err := n.recs.Get(ctx, key)
			if err != nil {
				continue // gone meanwhile
			}
			var st cpb.RoomState
			if proto.Unmarshal(e.Value(), &st) != nil {
				continue
			}
			out = append(out, RoomOwner{Node: st.GetOwner(), RoomInfo: room.RoomInfo{
				ID:         id,
				Players:    len(st.GetMembers()),
				MaxPlayers: int(st.GetMaxPlayers()),
				TickRate:   int(st.GetTickRate()),
				Immediate:  st.GetImmediate(),
				CreatedAt:  fromUnixMs(st.GetCreatedUnixMs()),
				Metadata:   st.GetMetadata(),
			}})
		}
	}
	slices.SortFunc(out, func(a, b RoomOwner) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Owner is the node owning room id, as this node knows ("" when none).
func (n *Node) Owner(id string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.owned[id] != nil {
		return n.cfg.NodeID
	}
	return n.leaseView[id].node
}

// Room describes room id, wherever it is.
func (n *Node) Room(ctx context.Context, id string) (room.RoomDetail, error) {
	var d room.RoomDetail
	err := n.onOwner(ctx, &cpb.AdminCall{Op: "get", Room: id}, func() error {
		var err error
		d, err = n.rooms.Room(ctx, id)
		return err
	}, &d)
	return d, err
}

// UpdateRoom changes room id, wherever it is.
func (n *Node) UpdateRoom(ctx context.Context, id string, u room.RoomUpdate) error {
	call := &cpb.AdminCall{Op: "update", Room: id}
	if u.TickRate != nil {
		call.TickRate = uint32(*u.TickRate)
	}
	if u.MaxPlayers != nil {
		call.MaxPlayers = uint32(*u.MaxPlayers)
	}
	return n.onOwner(ctx, call, func() error { return n.rooms.UpdateRoom(ctx, id, u) }, nil)
}

// CloseRoom closes room id, wherever it is.
func (n *Node) CloseRoom(ctx context.Context, id, reason string) error {
	return n.onOwner(ctx, &cpb.AdminCall{Op: "close", Room: id, Reason: reason},
		func() error { return n.rooms.CloseRoom(ctx, id, reason) }, nil)
}

// Kick removes a player of room id, wherever it is.
func (n *Node) Kick(ctx context.Context, id string, player uint32, reason string) error {
	return n.onOwner(ctx, &cpb.AdminCall{Op: "kick", Room: id, Player: player, Reason: reason},
		func() error { return n.rooms.Kick(ctx, id, player, reason) }, nil)
}

// onOwner runs local when this node owns the room, else asks the owner,
// decoding a "get" answer into detail.
func (n *Node) onOwner(ctx context.Context, call *cpb.AdminCall, local func() error, detail *room.RoomDetail) error {
	owner := n.Owner(call.GetRoom())
	if owner == "" || owner == n.cfg.NodeID {
		return local()
	}
	b, _ := proto.Marshal(call)
	m, err := n.nc.RequestWithContext(ctx, n.names.nodeCtl(owner, "admin"), b)
	if err != nil {
		return fmt.Errorf("cluster: asking node %s: %w", owner, err)
	}
	var a cpb.AdminAnswer
	if err := proto.Unmarshal(m.Data, &a); err != nil {
		return fmt.Errorf("cluster: answer of node %s: %w", owner, err)
	}
	if a.GetError() != "" {
		return fmt.Errorf("%w (on node %s): %s", kindError(a.GetKind()), owner, a.GetError())
	}
	if detail != nil {
		if err := json.Unmarshal(a.GetJson(), detail); err != nil {
			return fmt.Errorf("cluster: answer of node %s: %w", owner, err)
		}
	}
	return nil
}

// The room package's errors by name, so that a remote refusal keeps its
// meaning (and HTTP status) here.
var kinds = map[string]error{
	"room_not_found":   room.ErrRoomNotFound,
	"player_not_found": room.ErrPlayerNotFound,
	"invalid_argument": room.ErrInvalidArgument,
	"closed":           room.ErrClosed,
}

func kindOf(err error) string {
	for k, e := range kinds {
		if errors.Is(err, e) {
			return k
		}
	}
	return "internal"
}

func kindError(kind string) error {
	if e := kinds[kind]; e != nil {
		return e
	}
	return errors.New("cluster: remote admin call failed")
}

// adminCall runs an admin call from another node on this one.
func (n *Node) adminCall(m *nats.Msg) {
	var call cpb.AdminCall
	answer := &cpb.AdminAnswer{}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.LeaseTTL)
	defer cancel()
	err := proto.Unmarshal(m.Data, &call)
	if err == nil {
		id := call.GetRoom()
		switch call.GetOp() {
		case "get":
			var d room.RoomDetail
			if d, err = n.rooms.Room(ctx, id); err == nil {
				answer.Json, err = json.Marshal(d)
			}
		case "update":
			var u room.RoomUpdate
			if call.GetTickRate() != 0 {
				v := int(call.GetTickRate())
				u.TickRate = &v
			}
			if call.GetMaxPlayers() != 0 {
				v := int(call.GetMaxPlayers())
				u.MaxPlayers = &v
			}
			err = n.rooms.UpdateRoom(ctx, id, u)
		case "close":
			err = n.rooms.CloseRoom(ctx, id, call.GetReason())
		case "kick":
			err = n.rooms.Kick(ctx, id, call.GetPlayer(), call.GetReason())
		default:
			err = fmt.Errorf("%w: unknown admin operation %q", room.ErrInvalidArgument, call.GetOp())
		}
	}
	if err != nil {
		answer.Error, answer.Kind = err.Error(), kindOf(err)
	}
	b, _ := proto.Marshal(answer)
	_ = m.Respond(b)
}
