// Command client-sim is tickrelay's load simulator: it connects many
// clients to a relay, groups them into rooms, has each send timestamped,
// sequenced messages at a fixed rate, and measures at every receiver the
// latency, loss, duplicates and order of what the relay delivers. It speaks
// only the wire protocol (through package client), so it drives the real
// relay and the baseline alike. See README.md for flags and the report.
//
//	go run ./client-sim -clients 1000 -room-size 8 -rate 20 -duration 30s -warmup 5s -json -
//
// Exit status: 0 success, 1 the run failed, 2 bad flags, 3 the loss ratio
// exceeded -max-loss.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	os.Exit(mainWithArgs(os.Args[1:], os.Stdout, os.Stderr))
}

// mainWithArgs is main without the process: flags in, exit status out.
func mainWithArgs(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "client-sim: %v\n", err)
		}
		return 2
	}
	// Before any socket: one descriptor per connection. run does it too
	// (for tests), but a failure is only worth a warning here.
	if _, err := raiseOpenFileLimit(); err != nil {
		fmt.Fprintf(stderr, "client-sim: warning: %v\n", err)
	}
	cfg.Progress = stderr

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintf(stderr, "client-sim: cpuprofile: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "client-sim: cpuprofile: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "client-sim: %v\n", err)
		return 1
	}
	return finish(cfg, rep, stdout, stderr)
}

// finish writes the summary, the JSON report and the plot, and turns the
// loss check into the exit status.
func finish(cfg Config, rep result, stdout, stderr io.Writer) int {
	writeSummary(stderr, rep.Report)
	if cfg.JSON != "" {
		if err := writeJSON(rep.Report, cfg.JSON, stdout); err != nil {
			fmt.Fprintf(stderr, "client-sim: %v\n", err)
			return 1
		}
	}
	if cfg.Plot != "" {
		if err := writePlot(rep, cfg.Plot); err != nil {
			fmt.Fprintf(stderr, "client-sim: %v\n", err)
			return 1
		}
	}
	if cfg.MaxLoss >= 0 && rep.LossRatio > cfg.MaxLoss {
		fmt.Fprintf(stderr, "client-sim: loss ratio %.6f exceeds -max-loss %g\n", rep.LossRatio, cfg.MaxLoss)
		return 3
	}
	return 0
}
