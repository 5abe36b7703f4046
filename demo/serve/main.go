// Command serve serves the demo's static files and tells the page where the
// relay is (/config.json), for `make demo`:
//
//	go run ./demo/serve -listen 127.0.0.1:8080 -dir demo/public -relay ws://127.0.0.1:7600/ws
//
// It is a development server for one person opening a few tabs, not a web
// server for production: put the files behind nginx or a CDN for that (see
// docs/OPERATIONS.md).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	dir := flag.String("dir", "demo/public", "the static files")
	relay := flag.String("relay", "ws://127.0.0.1:7600/ws", "the relay's WebSocket URL, given to the page")
	flag.Parse()
	if err := run(*listen, *dir, *relay); err != nil {
		fmt.Fprintln(os.Stderr, "serve:", err)
		os.Exit(1)
	}
}

func run(listen, dir, relay string) error {
	if _, err := os.Stat(dir + "/app.js"); err != nil {
		return fmt.Errorf("no %s/app.js: build the demo first (make demo-build): %w", dir, err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: handler(dir, relay), ReadHeaderTimeout: 5 * time.Second}
	slog.Info("demo: open this in two tabs", "url", "http://"+ln.Addr().String()+"/", "relay", relay)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// handler serves dir, and /config.json with the relay's URL.
func handler(dir, relay string) http.Handler {
	config, _ := json.Marshal(struct {
		RelayURL string `json:"relayUrl"`
	}{relay})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(config)
	})
	files := http.FileServer(http.Dir(dir))
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A page that changes while you work on it: never from cache.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return mux
}
