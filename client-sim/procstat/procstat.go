// Package procstat reads the figures tickrelay's load tools report about a
// process and its machine from Linux /proc: CPU time split into user and
// kernel, resident memory and its high-water mark, the open-file limit,
// the kernel's slab memory, load average and CPU model. client-sim samples
// the server it drives with it (-server-pid) and bench/harness reads the
// same figures on its own, to cross-check client-sim and for runs that
// spread clients over several processes.
//
// The parsing is github.com/prometheus/procfs's; this package only picks
// the fields and puts them in the units the reports use (KiB,
// time.Duration). A Reader is goroutine-safe.
package procstat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"
)

// clockTick is the unit of /proc/<pid>/stat times (USER_HZ): 100 per second
// on every Linux architecture Go supports, which is also what procfs
// assumes.
const clockTick = 10 * time.Millisecond

// ErrNoValue is returned (wrapped) when /proc does not have a figure (a
// kernel without the field).
var ErrNoValue = errors.New("procstat: no such value")

// Reader reads one /proc mount.
type Reader struct{ fs procfs.FS }

// New reads the system's /proc.
func New() (Reader, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return Reader{}, fmt.Errorf("procstat: %w", err)
	}
	return Reader{fs: fs}, nil
}

// NewAt reads a /proc tree mounted (or copied, for tests) at mount.
func NewAt(mount string) (Reader, error) {
	fs, err := procfs.NewFS(mount)
	if err != nil {
		return Reader{}, fmt.Errorf("procstat: %w", err)
	}
	return Reader{fs: fs}, nil
}

// CPU is a process's CPU time so far.
type CPU struct {
	User   time.Duration // utime
	System time.Duration // stime: the kernel working for the process
}

// Total is user + system.
func (c CPU) Total() time.Duration { return c.User + c.System }

// Sub is the CPU used between an earlier sample and c.
func (c CPU) Sub(earlier CPU) CPU {
	return CPU{User: c.User - earlier.User, System: c.System - earlier.System}
}

func (r Reader) proc(pid int) (procfs.Proc, error) {
	p, err := r.fs.Proc(pid)
	if err != nil {
		return p, fmt.Errorf("procstat: process %d: %w", pid, err)
	}
	return p, nil
}

// CPU is pid's utime and stime from /proc/<pid>/stat.
func (r Reader) CPU(pid int) (CPU, error) {
	p, err := r.proc(pid)
	if err != nil {
		return CPU{}, err
	}
	s, err := p.Stat()
	if err != nil {
		return CPU{}, fmt.Errorf("procstat: cpu of %d: %w", pid, err)
	}
	return CPU{User: time.Duration(s.UTime) * clockTick, System: time.Duration(s.STime) * clockTick}, nil
}

// Memory is a process's resident set and its high-water mark, in KiB.
type Memory struct {
	RSSKiB int64 // VmRSS
	HWMKiB int64 // VmHWM
}

// Memory reads VmRSS and VmHWM of pid from /proc/<pid>/status.
func (r Reader) Memory(pid int) (Memory, error) {
	p, err := r.proc(pid)
	if err != nil {
		return Memory{}, err
	}
	s, err := p.NewStatus()
	if err != nil {
		return Memory{}, fmt.Errorf("procstat: memory of %d: %w", pid, err)
	}
	if s.VmRSS == 0 {
		return Memory{}, fmt.Errorf("procstat: memory of %d: VmRSS: %w", pid, ErrNoValue)
	}
	return Memory{RSSKiB: int64(s.VmRSS / 1024), HWMKiB: int64(s.VmHWM / 1024)}, nil
}

// SelfMemory is Memory of the calling process.
func (r Reader) SelfMemory() (Memory, error) {
	p, err := r.fs.Self()
	if err != nil {
		return Memory{}, fmt.Errorf("procstat: self: %w", err)
	}
	return r.Memory(p.PID)
}

// OpenFileLimit is pid's soft RLIMIT_NOFILE from /proc/<pid>/limits (read
// from the running process: the relay raises its own at start).
func (r Reader) OpenFileLimit(pid int) (int, error) {
	p, err := r.proc(pid)
	if err != nil {
		return 0, err
	}
	l, err := p.Limits()
	if err != nil {
		return 0, fmt.Errorf("procstat: limits of %d: %w", pid, err)
	}
	return int(l.OpenFiles), nil
}

// Meminfo holds the machine-wide figures of /proc/meminfo the reports use,
// in KiB.
type Meminfo struct {
	TotalKiB int64 // MemTotal
	SlabKiB  int64 // Slab: kernel objects, socket structures among them
}

// Meminfo reads /proc/meminfo.
func (r Reader) Meminfo() (Meminfo, error) {
	m, err := r.fs.Meminfo()
	if err != nil {
		return Meminfo{}, fmt.Errorf("procstat: meminfo: %w", err)
	}
	if m.MemTotal == nil || m.Slab == nil {
		return Meminfo{}, fmt.Errorf("procstat: meminfo: MemTotal or Slab: %w", ErrNoValue)
	}
	return Meminfo{TotalKiB: int64(*m.MemTotal), SlabKiB: int64(*m.Slab)}, nil
}

// SlabObjectSize is the object size in bytes of one cache of
// /proc/slabinfo ("TCP", "sock_inode_cache"...); 0 when absent or
// unreadable (slabinfo is root-only).
func (r Reader) SlabObjectSize(cache string) int {
	s, err := r.fs.SlabInfo()
	if err != nil {
		return 0
	}
	for _, sl := range s.Slabs {
		if sl.Name == cache {
			return int(sl.ObjSize)
		}
	}
	return 0
}

// MachineCPU is the CPU time of the whole machine so far, over all CPUs:
// Busy is everything but idle and iowait.
type MachineCPU struct {
	Busy, Total time.Duration
}

// Sub is the machine CPU used between an earlier sample and m.
func (m MachineCPU) Sub(earlier MachineCPU) MachineCPU {
	return MachineCPU{Busy: m.Busy - earlier.Busy, Total: m.Total - earlier.Total}
}

// MachineCPU reads the "cpu" line of /proc/stat.
func (r Reader) MachineCPU() (MachineCPU, error) {
	st, err := r.fs.Stat()
	if err != nil {
		return MachineCPU{}, fmt.Errorf("procstat: stat: %w", err)
	}
	c := st.CPUTotal
	total := c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	busy := total - c.Idle - c.Iowait
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	return MachineCPU{Busy: sec(busy), Total: sec(total)}, nil
}

// LoadAvg is "1min 5min 15min" from /proc/loadavg, "unknown" when
// unreadable.
func (r Reader) LoadAvg() string {
	l, err := r.fs.LoadAvg()
	if err != nil {
		return "unknown"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	return strings.Join([]string{f(l.Load1), f(l.Load5), f(l.Load15)}, " ")
}

// CPUModel is the first "model name" of /proc/cpuinfo, "unknown" when
// unreadable.
func (r Reader) CPUModel() string {
	c, err := r.fs.CPUInfo()
	if err != nil || len(c) == 0 || c[0].ModelName == "" {
		return "unknown"
	}
	return c[0].ModelName
}
