// Command tickrelay runs the relay: a WebSocket game relay that batches each
// room's traffic at a fixed tick rate. `tickrelay -h` lists every setting.
// Configuration comes from, in increasing precedence: embedded defaults, a
// YAML file (-config), TICKRELAY_* environment variables, and flags.
//
// Signals: SIGTERM drains (no new joins, rooms run on until empty or the
// drain timeout, then 1001), SIGINT shuts down at once (1001 to everyone);
// a second SIGINT/SIGTERM stops without waiting. SIGHUP reloads the config
// file.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tickrelay/tickrelay/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "tickrelay:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var logLevel, logFormat string
	extra := func(fs *flag.FlagSet) {
		fs.StringVar(&logLevel, "log-level", envOr("TICKRELAY_LOG_LEVEL", "info"), "debug, info, warn or error (env TICKRELAY_LOG_LEVEL)")
		fs.StringVar(&logFormat, "log-format", envOr("TICKRELAY_LOG_FORMAT", "text"), "text or json (env TICKRELAY_LOG_FORMAT)")
	}
	cfg, configPath, err := server.LoadConfig(args, os.Getenv, extra)
	if err == flag.ErrHelp {
		return nil
	}
	if err != nil {
		return err
	}
	logger, err := newLogger(logLevel, logFormat)
	if err != nil {
		return err
	}
	cfg.Logger = logger

	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	// Signals are caught before Start announces the relay as listening: a
	// SIGTERM sent as soon as it is (a supervisor, a test) must drain, not
	// meet Go's default action and end the process without a word.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if err := srv.Start(); err != nil {
		return err
	}
	stopping := false
	for {
		select {
		case <-srv.Done():
			if err := srv.Err(); err != nil {
				return fmt.Errorf("stopped: %w", err) // exit non-zero: the supervisor restarts it
			}
			logger.Info("stopped")
			return nil
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				reload(srv, configPath, args, extra, logger)
			case stopping:
				logger.Info("second signal: closing now", "signal", sig.String())
				srv.Kill()
			case sig == syscall.SIGTERM:
				stopping = true
				srv.Drain(0)
			default:
				stopping = true
				logger.Info("shutting down", "signal", sig.String())
				go srv.Kill()
			}
		}
	}
}

// reload re-reads the whole configuration and applies what can change live;
// a bad file is reported and the running configuration kept.
func reload(srv *server.Server, path string, args []string, extra func(*flag.FlagSet), logger *slog.Logger) {
	if path == "" {
		logger.Warn("SIGHUP: no config file to reload (start with -config FILE)")
		return
	}
	cfg, _, err := server.LoadConfig(args, os.Getenv, extra)
	if err != nil {
		logger.Error("SIGHUP: config rejected, keeping the running one", "file", path, "err", err)
		return
	}
	if err := srv.Reload(cfg); err != nil {
		logger.Error("SIGHUP: config rejected, keeping the running one", "file", path, "err", err)
		return
	}
	logger.Info("SIGHUP: config reloaded", "file", path)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log-format: %q is not text or json", format)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
