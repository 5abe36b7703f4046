package room

import (
	"context"
	"errors"
	"fmt"
)

// policy is the current reloadable configuration. Goroutine-safe.
func (m *Manager) policy() *Config { return m.pol.Load() }

// Reconfigure applies a new configuration to a running Manager (a config
// reload). The reloadable fields — DefaultTickRate, MinTickRate,
// MaxTickRate, AllowImmediate, TickPresets, DefaultMaxPlayers,
// MaxPlayersPerRoom and MaxMetadataBytes — apply to joins and rooms created
// from now on; MaxRooms, KeepAliveInterval, SenderTickMessages and
// SenderTickBytes apply at once to every room; the others (Workers, Clock,
// InboxCapacity, InboxPerSeat, MaxFrameBytes, MaxBacklogBytes, Headroom,
// Observer) are fixed at New and ignored here. With moveExisting, every ticked room whose rate differs from
// the new default is moved to it at its next tick, as UpdateRoom would. An
// invalid cfg is rejected (ErrInvalidArgument) and nothing changes.
// Goroutine-safe; it waits for the workers when moveExisting is set.
func (m *Manager) Reconfigure(ctx context.Context, cfg Config, moveExisting bool) error {
	if m.closed.Load() {
		return ErrClosed
	}
	fixed := m.cfg
	cfg.Workers, cfg.Clock, cfg.InboxCapacity = fixed.Workers, fixed.Clock, fixed.InboxCapacity
	cfg.MaxFrameBytes, cfg.MaxBacklogBytes, cfg.Headroom, cfg.Observer = fixed.MaxFrameBytes, fixed.MaxBacklogBytes, fixed.Headroom, fixed.Observer
	cfg.InboxPerSeat = fixed.InboxPerSeat
	next, err := cfg.resolve()
	if err != nil {
		return err
	}
	m.pol.Store(&next)
	if !moveExisting {
		return nil
	}
	rooms, err := m.Rooms(ctx)
	if err != nil {
		return fmt.Errorf("room: reconfigure: listing rooms: %w", err)
	}
	rate := next.DefaultTickRate
	for _, r := range rooms {
		if r.Immediate || r.Lockstep || r.TickRate == rate {
			continue
		}
		// A room that closed meanwhile is not an error.
		if err := m.UpdateRoom(ctx, r.ID, RoomUpdate{TickRate: &rate}); err != nil && !errors.Is(err, ErrRoomNotFound) {
			return fmt.Errorf("room: reconfigure: room %q: %w", r.ID, err)
		}
	}
	return nil
}
