package server

import (
	"context"
	"fmt"
	"reflect"
)

// Reload applies a new configuration to the running server (SIGHUP). Room
// policy — tick rate default and bounds, immediate mode, frame size, room
// limits, keep-alive — applies to new rooms, and to existing ones when
// next.ReloadExistingRooms is set; the drain timeout applies at once.
// Settings that need a restart (listeners, limits baked into connections)
// are logged as ignored. An invalid config is rejected whole and nothing
// changes.
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
	for _, name := range restartOnlyChanges(s.cfg, next) {
		s.log.Warn("config reload: setting needs a restart, change ignored", "setting", name)
	}
	return nil
}

// restartOnlyChanges names the changed settings that Reload cannot apply.
func restartOnlyChanges(old, next Config) []string {
	var changed []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			changed = append(changed, name)
		}
	}
	check("listen", old.Listen, next.Listen)
	check("path", old.Path, next.Path)
	check("health-path", old.HealthPath, next.HealthPath)
	check("echo-path", old.EchoPath, next.EchoPath)
	check("allowed-origins", old.AllowedOrigins, next.AllowedOrigins)
	check("event-loops", old.EventLoops, next.EventLoops)
	check("max-connections", old.MaxConnections, next.MaxConnections)
	check("max-message-bytes", old.MaxMessageBytes, next.MaxMessageBytes)
	check("handshake-timeout", old.HandshakeTimeout, next.HandshakeTimeout)
	check("ping-interval", old.PingInterval, next.PingInterval)
	check("idle-timeout", old.IdleTimeout, next.IdleTimeout)
	check("outbound-soft-bytes", old.OutboundSoftBytes, next.OutboundSoftBytes)
	check("outbound-hard-bytes", old.OutboundHardBytes, next.OutboundHardBytes)
	check("socket-send-buffer", old.SocketSendBuffer, next.SocketSendBuffer)
	check("socket-recv-buffer", old.SocketRecvBuffer, next.SocketRecvBuffer)
	check("admin-listen", old.AdminListen, next.AdminListen)
	check("admin-token", old.AdminToken, next.AdminToken)
	check("room-workers", old.Room.Workers, next.Room.Workers)
	return changed
}
