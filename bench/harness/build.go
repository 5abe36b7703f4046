package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/tickrelay/tickrelay/client-sim/procstat"
)

// The pinned Centrifugo the centrifugo system runs (issue 17).
const (
	centrifugoModule  = "github.com/centrifugal/centrifugo/v6"
	centrifugoVersion = "v6.9.1"
)

// The pinned NATS server the cluster systems run (issue 14): the version
// go.mod has for the cluster's tests.
const (
	natsModule  = "github.com/nats-io/nats-server/v2"
	natsVersion = "v2.15.3"
)

// build compiles the relay, the baseline, the reference relay and
// client-sim into dir, Centrifugo when withCentrifugo and the NATS server
// when withNATS: the harness runs
// binaries, never `go run`, so that the pid client-sim samples is the
// server itself and not the go command. A Centrifugo that fails to build
// is not an error: bins says why, and the other systems run.
func build(ctx context.Context, root, dir string, withCentrifugo, withNATS bool) (bins, []string, error) {
	b := bins{
		relay:     filepath.Join(dir, "tickrelay"),
		baseline:  filepath.Join(dir, "baseline"),
		reference: filepath.Join(dir, "reference"),
		sim:       filepath.Join(dir, "client-sim"),
		missing:   map[string]string{},
	}
	var cmds []string
	for _, t := range []struct{ out, pkg string }{
		{b.relay, "."}, {b.baseline, "./bench/baseline"}, {b.reference, "./bench/reference"}, {b.sim, "./client-sim"},
	} {
		args := []string{"build", "-o", t.out, t.pkg}
		rel, _ := filepath.Rel(root, t.out)
		cmds = append(cmds, "go build -o "+rel+" "+t.pkg)
		if _, err := runCapture(ctx, root, "go", args...); err != nil {
			return b, cmds, fmt.Errorf("build %s: %w", t.pkg, err)
		}
	}
	rel, _ := filepath.Rel(root, dir)
	if withNATS {
		// Like Centrifugo: a failed build fails only the cluster's runs.
		cmds = append(cmds, "GOBIN="+rel+" go install "+natsModule+"@"+natsVersion)
		if err := goInstall(ctx, root, dir, natsModule+"@"+natsVersion); err != nil {
			b.missing[kindNATS] = "nats-server " + natsVersion + " failed to build: " + firstLine(err.Error())
		} else {
			b.nats = filepath.Join(dir, "nats-server")
		}
	} else {
		b.missing[kindNATS] = "not built (no cluster system in this plan)"
	}
	if !withCentrifugo {
		b.missing[kindCentrifugo] = "not built (no centrifugo system in this plan)"
		return b, cmds, nil
	}
	cmds = append(cmds, "GOBIN="+rel+" go install "+centrifugoModule+"@"+centrifugoVersion)
	if err := goInstall(ctx, root, dir, centrifugoModule+"@"+centrifugoVersion); err != nil {
		b.missing[kindCentrifugo] = "Centrifugo " + centrifugoVersion + " failed to build: " + firstLine(err.Error())
		return b, cmds, nil
	}
	b.centrifugo = filepath.Join(dir, "centrifugo")
	return b, cmds, nil
}

// goInstall runs `go install pkg@version` with GOBIN=dir: module-aware,
// outside the tickrelay module (its go.mod does not take the package's
// dependencies).
func goInstall(ctx context.Context, root, dir, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "install", pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go install %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return nil
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
		_, _ = fmt.Sscan(out, &e.NProc) // on a parse error the Go runtime's count stays
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
