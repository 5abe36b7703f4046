package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a process gets to exit after SIGINT before SIGKILL.
// The relay closes every connection with 1001 on SIGINT, which at ~20,000
// connections takes a moment.
const stopGrace = 15 * time.Second

// procSet is every child process the harness has running, so that a signal,
// an error or a panic anywhere still ends them all (see killAll in main).
type procSet struct {
	dir string // working directory of every child: the repository root
	mu  sync.Mutex
	m   map[*proc]struct{}
}

func newProcSet(dir string) *procSet { return &procSet{dir: dir, m: map[*proc]struct{}{}} }

// proc is one child process; Wait runs in its own goroutine from the start
// so that done closes whenever it exits.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result; read after done
	set  *procSet
	log  *tailBuffer
}

// spawn starts path with args. Its stdout and stderr go to logPath and,
// line by line, to onLine (may be nil; called from one goroutine). The
// process gets SIGINT when ctx ends, SIGKILL stopGrace later; with
// Pdeathsig it gets SIGKILL if the harness itself dies without cleaning up.
func (ps *procSet) spawn(ctx context.Context, name, path string, args []string, logPath string, onLine func(string)) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	p := &proc{name: name, done: make(chan struct{}), set: ps, log: &tailBuffer{max: 4096}}
	w := &lineWriter{w: io.MultiWriter(logf, p.log), onLine: onLine}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = ps.dir
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = stopGrace
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	ps.mu.Lock()
	ps.m[p] = struct{}{}
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		w.flush()
		logf.Close()
		ps.mu.Lock()
		delete(ps.m, p)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit by itself, or for ctx (then stops it).
func (p *proc) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.exitErr()
	case <-ctx.Done():
		p.stop()
		return fmt.Errorf("%s: %w", p.name, ctx.Err())
	}
}

func (p *proc) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w; last output:\n%s", p.name, p.err, p.log.String())
	}
	return nil
}

// stop sends SIGINT, waits up to stopGrace, then SIGKILLs, and returns once
// the process is gone. A non-zero exit caused by the signal is not an error.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
		return
	case <-time.After(stopGrace):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// killAll stops every process still running, all at once.
func (ps *procSet) killAll() {
	ps.mu.Lock()
	var live []*proc
	for p := range ps.m {
		live = append(live, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop()
		}()
	}
	wg.Wait()
}

// lineWriter passes bytes through to w and complete lines to onLine.
type lineWriter struct {
	w      io.Writer
	onLine func(string)
	buf    []byte
}

func (l *lineWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	if l.onLine == nil {
		return n, err
	}
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.onLine(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return n, err
}

func (l *lineWriter) flush() {
	if l.onLine != nil && len(l.buf) > 0 {
		l.onLine(string(l.buf))
		l.buf = nil
	}
}

// tailBuffer keeps the last max bytes written, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the server binds; the server then fails to start and the
// harness says so (it does not retry silently).
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP polls addr until it accepts a connection, p exits, or timeout.
func waitTCP(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s: %w", p.name, addr, errors.Join(p.exitErr(), errors.New(p.log.String())))
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %s: %w", p.name, addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// runCapture runs a short command (go version, git, go tool pprof) in dir
// and returns its stdout.
func runCapture(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// scanLines calls f for each line of s.
func scanLines(s string, f func(string)) {
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f(sc.Text())
	}
}
