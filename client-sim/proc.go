package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfRSS is this process's resident set in KiB, 0 when unknown.
func selfRSS() int64 {
	rss, _ := procStatusKiB("self", "VmRSS:")
	return rss
}

// procStatusKiB reads one "Name:   1234 kB" line of /proc/<pid>/status.
func procStatusKiB(pid, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if rest, ok := bytes.CutPrefix(line, []byte(field)); ok {
			f := strings.Fields(string(rest))
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%s/status: no %s", pid, field)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) without cgo).
const clockTicks = 100

// procCPU reads utime+stime of a process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// serverProbe samples the relay process named by -server-pid: CPU over the
// measured window and memory at each phase, the figures scenarios.md asks
// for. With pid 0 every sample is a no-op.
type serverProbe struct {
	pid                          int
	cpuStart, cpuEnd             time.Duration
	rssBefore, rssJoined, rssEnd int64
	hwm                          int64
	failed                       bool
}

func newServerProbe(pid int) *serverProbe { return &serverProbe{pid: pid} }

func (p *serverProbe) sampleCPU(dst *time.Duration) {
	if p.pid == 0 {
		return
	}
	v, err := procCPU(p.pid)
	if err != nil {
		p.failed = true
		return
	}
	*dst = v
}

func (p *serverProbe) sampleRSS(dst *int64) {
	if p.pid == 0 {
		return
	}
	v, err := procStatusKiB(strconv.Itoa(p.pid), "VmRSS:")
	if err != nil {
		p.failed = true
		return
	}
	*dst = v
}

func (p *serverProbe) sampleHWM() {
	if p.pid == 0 {
		return
	}
	v, err := procStatusKiB(strconv.Itoa(p.pid), "VmHWM:")
	if err != nil {
		p.failed = true
		return
	}
	p.hwm = v
}
