package server

import (
	"context"
	"fmt"
)

// Reload applies a new configuration to the running server (SIGHUP). What
// each setting does on reload is its Reload field in the settings table:
// live settings (rate limits, tick budgets, room limit, keep-alive, drain
// timeout) apply at once, new-rooms settings (tick rates, capacities) to
// rooms created from now on (and to existing ones' tick rate when
// next.ReloadExistingRooms is set); restart settings are logged as ignored.
// An invalid config is rejected whole and nothing changes.
func (s *Server) Reload(next Config) error {
	next.Logger = s.cfg.Logger
	next = next.withDefaults()
	if err := next.validate(); err != nil {
		return fmt.Errorf("server: invalid config: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminRequestTimeout)
	defer cancel()
	roomCfg := next.Room
	roomCfg.Observer = s.cfg.Room.Observer
	roomCfg.Clock = s.cfg.Room.Clock
	if err := s.rooms.Reconfigure(ctx, roomCfg, next.ReloadExistingRooms); err != nil {
		return fmt.Errorf("server: rooms: %w", err)
	}
	s.drainTimeout.Store(int64(next.DrainTimeout))
	if s.access.verifier != nil && next.Auth.JWKSFile != "" {
		// New keys (a rotation): a bad file keeps the old ones.
		if err := s.access.verifier.Reload(); err != nil {
			return fmt.Errorf("server: auth keys: %w", err)
		}
	}
	prev := s.policy()
	s.pol.Store(&livePolicy{gen: prev.gen + 1, rate: next.RateLimits, prev: &livePolicy{gen: prev.gen, rate: prev.rate}})
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	for _, name := range changedSettings(&s.applied, &next)[reloadRestart] {
		s.log.Warn("config reload: setting needs a restart, change ignored", "setting", name)
	}
	s.applied = next
	return nil
}
