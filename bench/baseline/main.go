// Command baseline runs the baseline relay (package relay): the
// net/http + gorilla/websocket server that bench/ measures the real relay
// against. It speaks the tickrelay wire protocol on /ws.
//
//	go run ./bench/baseline -listen 127.0.0.1:7600 -tick-rate 30
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/bench/baseline/relay"
)

func main() {
	listen := flag.String("listen", "0.0.0.0:7600", "address to listen on")
	tickRate := flag.Int("tick-rate", 0, "default room tick rate in Hz; 0 forwards each message at once")
	flag.Parse()
	if err := run(*listen, *tickRate); err != nil {
		log.Fatalf("baseline: %v", err)
	}
}

func run(listen string, tickRate int) error {
	srv, err := relay.New(relay.Config{TickRate: tickRate})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Printf("baseline: listening on %s/ws, tick rate %d", ln.Addr(), tickRate)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Shutdown stops the listener; hijacked WebSocket connections are not
	// tracked by net/http, so srv.Close ends them.
	if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return srv.Close()
}
