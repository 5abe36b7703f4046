package procstat

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeProc writes a small /proc tree: process 4242 and the machine files.
func fakeProc(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	// A command name with spaces and a parenthesis must not shift fields.
	write("4242/stat", "4242 (evil ) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 100 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
	write("4242/status", "Name:\ttickrelay\nVmPeak:\t  900000 kB\nVmHWM:\t   48600 kB\nVmRSS:\t   41800 kB\n")
	write("4242/limits", "Limit                     Soft Limit           Hard Limit           Units     \n"+
		"Max processes             95000                95000                processes \n"+
		"Max open files            20000                20000                files     \n")
	write("meminfo", "MemTotal:       24636316 kB\nMemFree:         1000000 kB\nSlab:             167756 kB\n")
	write("slabinfo", "slabinfo - version: 2.1\n"+
		"# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n"+
		"TCPv6                 26     26   2496   13    8 : tunables    0    0    0 : slabdata      2      2      0\n"+
		"TCP                38040  38064   2368   13    8 : tunables    0    0    0 : slabdata   2928   2928      0\n")
	write("loadavg", "0.59 0.68 1.23 2/345 6789\n")
	// user nice system idle iowait irq softirq steal (USER_HZ ticks)
	write("stat", "cpu  1000 0 500 8000 100 0 50 0 0 0\ncpu0 500 0 250 4000 50 0 25 0 0 0\ncpu1 500 0 250 4000 50 0 25 0 0 0\n"+
		"intr 0\nctxt 0\nbtime 1700000000\nprocesses 1\nprocs_running 1\nprocs_blocked 0\n")
	write("cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu\n\n")
	require.NoError(t, os.Symlink("4242", filepath.Join(dir, "self")))
	return dir
}

func TestReader(t *testing.T) {
	t.Parallel()
	r, err := NewAt(fakeProc(t))
	require.NoError(t, err)

	c, err := r.CPU(4242)
	require.NoError(t, err)
	require.Equal(t, CPU{User: 2500 * time.Millisecond, System: 750 * time.Millisecond}, c) // 250 and 75 ticks of 10 ms
	require.Equal(t, 3250*time.Millisecond, c.Total())
	require.Equal(t, CPU{User: 500 * time.Millisecond, System: 250 * time.Millisecond},
		c.Sub(CPU{User: 2 * time.Second, System: 500 * time.Millisecond}))

	m, err := r.Memory(4242)
	require.NoError(t, err)
	require.Equal(t, Memory{RSSKiB: 41800, HWMKiB: 48600}, m)
	self, err := r.SelfMemory()
	require.NoError(t, err)
	require.Equal(t, m, self)

	n, err := r.OpenFileLimit(4242)
	require.NoError(t, err)
	require.Equal(t, 20000, n)

	mi, err := r.Meminfo()
	require.NoError(t, err)
	require.Equal(t, Meminfo{TotalKiB: 24636316, SlabKiB: 167756}, mi)

	require.Equal(t, 2368, r.SlabObjectSize("TCP"))
	require.Equal(t, 2496, r.SlabObjectSize("TCPv6"))
	require.Equal(t, 0, r.SlabObjectSize("sock_inode_cache"))
	require.Equal(t, "0.59 0.68 1.23", r.LoadAvg())
	require.Equal(t, "AMD EPYC", r.CPUModel())
	mc, err := r.MachineCPU()
	require.NoError(t, err)
	require.Equal(t, MachineCPU{Busy: 15500 * time.Millisecond, Total: 96500 * time.Millisecond}, mc)
	require.Equal(t, MachineCPU{Busy: 500 * time.Millisecond, Total: 1500 * time.Millisecond},
		mc.Sub(MachineCPU{Busy: 15 * time.Second, Total: 95 * time.Second}))

	_, err = r.CPU(1)
	require.Error(t, err, "no such process")
	_, err = r.Memory(1)
	require.Error(t, err)
}

func TestReaderMissingFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "7"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "7", "status"), []byte("Name:\tx\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "meminfo"), []byte("MemFree: 1 kB\n"), 0o644))
	r, err := NewAt(dir)
	require.NoError(t, err)
	_, err = r.Memory(7)
	require.ErrorIs(t, err, ErrNoValue, "a status without VmRSS (a kernel thread, a zombie)")
	_, err = r.Meminfo()
	require.ErrorIs(t, err, ErrNoValue)
	require.Equal(t, "unknown", r.LoadAvg())
	require.Equal(t, "unknown", r.CPUModel())
	require.Equal(t, 0, r.SlabObjectSize("TCP"))
}

// The real /proc, for the calling process: the figures exist and are sane.
func TestReaderSelf(t *testing.T) {
	t.Parallel()
	r, err := New()
	require.NoError(t, err)
	m, err := r.SelfMemory()
	require.NoError(t, err)
	require.Positive(t, m.RSSKiB)
	require.GreaterOrEqual(t, m.HWMKiB, m.RSSKiB)
	c, err := r.CPU(os.Getpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, c.Total(), time.Duration(0))
}
