package room

import (
	"context"
	"fmt"
	"slices"
	"strings"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// The admin API runs functions on the workers through their inboxes (as
// control commands, never refused) and waits for them, bounded by ctx. If ctx
// ends first the call returns ctx.Err(), but the function may still run
// later: an UpdateRoom, CloseRoom or Kick that timed out may have happened.
// They must not be called from Peer methods, which run on the workers they
// would wait for.

// call runs fn on w and waits until it has run (and the batch it ran in has
// been flushed, so its effects on immediate rooms are out).
func (m *Manager) call(ctx context.Context, w *worker, fn func(*worker)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan struct{})
	if !w.in.pushControl(command{kind: cmdCall, fn: fn, done: done}) {
		return ErrClosed
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.done:
		return ErrClosed
	}
}

// Rooms lists every room, sorted by ID. Goroutine-safe.
func (m *Manager) Rooms(ctx context.Context) ([]RoomInfo, error) {
	// One call per worker, all queued before waiting, so the listing costs
	// the slowest worker's latency rather than the sum.
	parts := make([][]RoomInfo, len(m.workers))
	dones := make([]chan struct{}, len(m.workers))
	for i, w := range m.workers {
		dones[i] = make(chan struct{})
		fn := func(w *worker) {
			infos := make([]RoomInfo, 0, len(w.rooms))
			for _, r := range w.rooms {
				infos = append(infos, r.info())
			}
			parts[i] = infos
		}
		if !w.in.pushControl(command{kind: cmdCall, fn: fn, done: dones[i]}) {
			return nil, ErrClosed
		}
	}
	var all []RoomInfo
	for i := range m.workers {
		select {
		case <-dones[i]:
			all = append(all, parts[i]...)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-m.done:
			return nil, ErrClosed
		}
	}
	slices.SortFunc(all, func(a, b RoomInfo) int { return strings.Compare(a.ID, b.ID) })
	return all, nil
}

// Room describes room id and its members; ErrRoomNotFound. Goroutine-safe.
func (m *Manager) Room(ctx context.Context, id string) (RoomDetail, error) {
	if !validRoomID(id) {
		return RoomDetail{}, fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	var d RoomDetail
	found := false
	err := m.call(ctx, m.workerFor(id), func(w *worker) {
		if r := w.rooms[id]; r != nil {
			d, found = r.detail(), true
		}
	})
	if err != nil {
		return RoomDetail{}, err
	}
	if !found {
		return RoomDetail{}, fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	return d, nil
}

// UpdateRoom changes a live room. Values are checked against the Config
// bounds (ErrInvalidArgument): a tick rate within MinTickRate..MaxTickRate,
// or zero for immediate mode if AllowImmediate; max players within
// 1..MaxPlayersPerRoom (lowering it below the current count removes no
// one). A tick rate change takes effect at the room's next tick and is
// announced to the members with TICK_RATE_CHANGED. Goroutine-safe.
func (m *Manager) UpdateRoom(ctx context.Context, id string, u RoomUpdate) error {
	if u.TickRate != nil {
		rate := *u.TickRate
		switch {
		case rate == 0 && !m.policy().AllowImmediate:
			return fmt.Errorf("%w: immediate rooms are not allowed", ErrInvalidArgument)
		case rate != 0 && (rate < m.policy().MinTickRate || rate > m.policy().MaxTickRate):
			return fmt.Errorf("%w: tick rate %d outside %d..%d", ErrInvalidArgument, rate, m.policy().MinTickRate, m.policy().MaxTickRate)
		}
	}
	if u.MaxPlayers != nil && (*u.MaxPlayers < 1 || *u.MaxPlayers > m.policy().MaxPlayersPerRoom) {
		return fmt.Errorf("%w: max players %d outside 1..%d", ErrInvalidArgument, *u.MaxPlayers, m.policy().MaxPlayersPerRoom)
	}
	if !validRoomID(id) {
		return fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	found, lockstep := false, false
	err := m.call(ctx, m.workerFor(id), func(w *worker) {
		r := w.rooms[id]
		if r == nil {
			return
		}
		found = true
		if u.TickRate != nil && r.ls != nil && *u.TickRate != r.rate {
			// A fixed tick is part of a deterministic game's contract.
			lockstep = true
			return
		}
		if u.MaxPlayers != nil {
			r.maxPlayers = *u.MaxPlayers
		}
		if u.TickRate != nil {
			w.setTickRate(r, *u.TickRate)
		}
	})
	if err != nil {
		return err
	}
	if lockstep {
		return fmt.Errorf("%w: the tick rate of LOCKSTEP room %q cannot change", ErrInvalidArgument, id)
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	return nil
}

// CloseRoom closes room id: every member gets what was already addressed to
// it, then Left{ROOM_CLOSED, message: reason}. Connections stay open; the
// seats are free to join again. ErrRoomNotFound. Goroutine-safe.
func (m *Manager) CloseRoom(ctx context.Context, id, reason string) error {
	if !validRoomID(id) {
		return fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	found := false
	err := m.call(ctx, m.workerFor(id), func(w *worker) {
		if r := w.rooms[id]; r != nil {
			found = true
			w.closeRoom(r, reason)
		}
	})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	return nil
}

// Kick removes player from room id: it gets what was already addressed to
// it, then Left{KICKED, message: reason}, then Peer.Evict(EvictKicked); the
// others see PLAYER_LEFT{KICKED}. ErrRoomNotFound, ErrPlayerNotFound.
// Goroutine-safe.
func (m *Manager) Kick(ctx context.Context, id string, player uint32, reason string) error {
	if !validRoomID(id) {
		return fmt.Errorf("%w: %q", ErrRoomNotFound, id)
	}
	var result error
	err := m.call(ctx, m.workerFor(id), func(w *worker) {
		r := w.rooms[id]
		if r == nil {
			result = fmt.Errorf("%w: %q", ErrRoomNotFound, id)
			return
		}
		mem := r.member(player)
		if mem == nil {
			result = fmt.Errorf("%w: player %d in room %q", ErrPlayerNotFound, player, id)
			return
		}
		s := mem.seat
		removing := s.state.CompareAndSwap(stateInRoom, stateLeaving)
		w.flushLeaver(mem)
		w.removeMember(mem, pb.LeaveReason_LEAVE_REASON_KICKED)
		w.sendLeft(s, 0, id, pb.LeaveReason_LEAVE_REASON_KICKED, reason)
		w.evict(s, EvictKicked, reason)
		if removing {
			s.settle(stateLeaving, stateIdle)
		}
	})
	if err != nil {
		return err
	}
	return result
}
