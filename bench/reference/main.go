// Command reference runs the reference relay (package refrelay): a
// measuring instrument for bench/, the leanest relay of this design (gnet
// + gobwas/ws, one write per member per tick, no room logic beyond
// membership), not a server to deploy. It speaks enough of the
// tickrelay.v1 protocol for client-sim on /ws.
//
//	go run ./bench/reference -listen 127.0.0.1:7700 -tick-rate 30
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/bench/reference/refrelay"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7700", "address to listen on")
	tickRate := flag.Int("tick-rate", 30, "tick rate of every room, Hz")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file (to check the instrument itself)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatalf("reference: cpuprofile: %v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatalf("reference: cpuprofile: %v", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if err := run(*listen, *tickRate); err != nil {
		log.Printf("reference: %v", err)
		return
	}
}

func run(listen string, tickRate int) error {
	srv, err := refrelay.New(refrelay.Config{Listen: listen, TickRate: tickRate})
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := srv.Start(); err != nil {
		return err
	}
	log.Printf("reference relay (a measuring instrument): listening on %s/ws, %d Hz", srv.Addr(), tickRate)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
