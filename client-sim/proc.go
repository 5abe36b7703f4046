package main

import (
	"fmt"
	"syscall"
	"time"

	"github.com/tickrelay/tickrelay/client-sim/procstat"
)

// raiseOpenFileLimit raises the soft RLIMIT_NOFILE to the hard limit (one
// descriptor per connection) and returns the limit now in force.
func raiseOpenFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return lim.Cur, nil
}

// selfCPU is this process's user+system CPU time so far (getrusage: finer
// than /proc's 10 ms ticks).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfRSS is this process's resident set in KiB, 0 when unknown.
func selfRSS() int64 {
	r, err := procstat.New()
	if err != nil {
		return 0
	}
	m, err := r.SelfMemory()
	if err != nil {
		return 0
	}
	return m.RSSKiB
}

// serverProbe samples the server process named by -server-pid (and those
// of -server-pids, summed: a cluster's nodes): CPU over the measured window
// and memory at each phase, the figures scenarios.md asks for. With no pid
// every sample is a no-op; a failed sample marks the figures incomplete
// (the report says so) instead of failing the run.
type serverProbe struct {
	pid                          int   // the first of pids; 0: off
	pids                         []int // every process summed
	proc                         procstat.Reader
	cpuStart, cpuEnd             time.Duration
	rssBefore, rssJoined, rssEnd int64
	hwm                          int64
	failed                       bool
}

func newServerProbe(pids ...int) *serverProbe {
	if len(pids) == 0 || pids[0] == 0 {
		return &serverProbe{}
	}
	p := &serverProbe{pid: pids[0], pids: pids}
	r, err := procstat.New()
	if err != nil {
		p.pid, p.pids, p.failed = 0, nil, true
		return p
	}
	p.proc = r
	return p
}

func (p *serverProbe) sampleCPU(dst *time.Duration) {
	if p.pid == 0 {
		return
	}
	var sum time.Duration
	for _, pid := range p.pids {
		c, err := p.proc.CPU(pid)
		if err != nil {
			p.failed = true
			return
		}
		sum += c.Total()
	}
	*dst = sum
}

// memory is the sum of the processes' RSS and VmHWM (each process's own
// peak: their sum bounds the peak of the sum from above).
func (p *serverProbe) memory() (rss, hwm int64, ok bool) {
	for _, pid := range p.pids {
		m, err := p.proc.Memory(pid)
		if err != nil {
			p.failed = true
			return 0, 0, false
		}
		rss += m.RSSKiB
		hwm += m.HWMKiB
	}
	return rss, hwm, true
}

func (p *serverProbe) sampleRSS(dst *int64) {
	if p.pid == 0 {
		return
	}
	if rss, _, ok := p.memory(); ok {
		*dst = rss
	}
}

func (p *serverProbe) sampleHWM() {
	if p.pid == 0 {
		return
	}
	if _, hwm, ok := p.memory(); ok {
		p.hwm = hwm
	}
}
