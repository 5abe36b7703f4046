package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tickrelay/tickrelay/client-sim/procstat"
)

// build compiles the relay, the baseline and client-sim into dir: the
// harness runs binaries, never `go run`, so that the pid client-sim samples
// is the server itself and not the go command.
func build(ctx context.Context, root, dir string) (bins, []string, error) {
	b := bins{
		relay:    filepath.Join(dir, "tickrelay"),
		baseline: filepath.Join(dir, "baseline"),
		sim:      filepath.Join(dir, "client-sim"),
	}
	var cmds []string
	for _, t := range []struct{ out, pkg string }{
		{b.relay, "."}, {b.baseline, "./bench/baseline"}, {b.sim, "./client-sim"},
	} {
		args := []string{"build", "-o", t.out, t.pkg}
		rel, _ := filepath.Rel(root, t.out)
		cmds = append(cmds, "go build -o "+rel+" "+t.pkg)
		if _, err := runCapture(ctx, root, "go", args...); err != nil {
			return b, cmds, fmt.Errorf("build %s: %w", t.pkg, err)
		}
	}
	return b, cmds, nil
}

// findRoot walks up from dir to the tickrelay module's go.mod.
func findRoot(dir string) (string, error) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/tickrelay/tickrelay\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the tickrelay repository (no go.mod of github.com/tickrelay/tickrelay above the working directory)")
		}
		dir = parent
	}
}

// environment describes the machine and the code; read-only git commands
// only.
func environment(ctx context.Context, root string, proc procstat.Reader) Env {
	e := Env{NProc: runtime.NumCPU(), CPUModel: proc.CPUModel(), Sysctl: map[string]string{}}
	if out, err := runCapture(ctx, root, "nproc"); err == nil {
		fmt.Sscan(out, &e.NProc)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.Kernel = strings.TrimSpace(string(b))
	}
	if mi, err := proc.Meminfo(); err == nil {
		e.MemTotalKiB = mi.TotalKiB
	}
	if out, err := runCapture(ctx, root, "sh", "-c", "ulimit -Hn"); err == nil {
		e.OpenFileLimit = strings.TrimSpace(out)
	}
	if out, err := runCapture(ctx, root, "go", "version"); err == nil {
		e.GoVersion = strings.TrimPrefix(strings.TrimSpace(out), "go version ")
	} else {
		e.GoVersion = runtime.Version()
	}
	e.Commit = commit(ctx, root)
	for _, k := range []string{"fs.nr_open", "fs.file-max", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem", "net.ipv4.tcp_mem", "net.ipv4.ip_local_port_range", "net.core.somaxconn"} {
		if b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/")); err == nil {
			e.Sysctl[k] = strings.Join(strings.Fields(string(b)), " ")
		}
	}
	return e
}

// commit is the short HEAD, with "+dirty" when the working tree has
// changes (the figures then belong to uncommitted code).
func commit(ctx context.Context, root string) string {
	head, err := runCapture(ctx, root, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(head)
	if st, err := runCapture(ctx, root, "git", "status", "--porcelain"); err == nil && strings.TrimSpace(st) != "" {
		c += "+dirty"
	}
	return c
}
