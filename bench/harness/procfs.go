package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// The harness reads the servers' figures from /proc itself as well as
// through client-sim's -server-pid: it needs them for multi-process runs
// (S4), and two independent readers let it check each other.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo).
const clockTicks = 100

// parseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
func parseStatCPU(b []byte) (time.Duration, error) {
	user, sys, err := parseStatTimes(b)
	return user + sys, err
}

// parseStatTimes returns utime and stime (user and kernel CPU) from the
// contents of /proc/<pid>/stat.
func parseStatTimes(b []byte) (user, sys time.Duration, err error) {
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses: count fields from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("stat: %d fields after the name, want at least 13", len(f))
	}
	ut, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat: utime: %w", err)
	}
	st, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("stat: stime: %w", err)
	}
	return time.Duration(ut) * time.Second / clockTicks, time.Duration(st) * time.Second / clockTicks, nil
}

// parseStatusKiB returns one "Name:   1234 kB" field of /proc/<pid>/status
// (or a /proc/meminfo line, which has the same shape).
func parseStatusKiB(b []byte, field string) (int64, error) {
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte(field+":"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) == 0 {
			break
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", field, err)
		}
		return v, nil
	}
	return 0, fmt.Errorf("no %s line", field)
}

// parseOpenFileLimit returns the soft "Max open files" of /proc/<pid>/limits.
func parseOpenFileLimit(b []byte) (int, error) {
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			break
		}
		return strconv.Atoi(f[0])
	}
	return 0, fmt.Errorf("limits: no Max open files line")
}

// procCPU is utime+stime of pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	d, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	return d, nil
}

// procTimes is utime and stime of pid.
func procTimes(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("cpu of %d: %w", pid, err)
	}
	return parseStatTimes(b)
}

// procStatus reads one KiB field (VmRSS, VmHWM) of pid.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("%s of %d: %w", field, pid, err)
	}
	v, err := parseStatusKiB(b, field)
	if err != nil {
		return 0, fmt.Errorf("%s of %d: %w", field, pid, err)
	}
	return v, nil
}

// procOpenFileLimit is pid's soft open-file limit (the relay raises its own
// to the hard limit at start, so read it from the running process).
func procOpenFileLimit(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, fmt.Errorf("limits of %d: %w", pid, err)
	}
	n, err := parseOpenFileLimit(b)
	if err != nil {
		return 0, fmt.Errorf("limits of %d: %w", pid, err)
	}
	return n, nil
}

// meminfoKiB reads one field of /proc/meminfo (the kernel's Slab, for the
// kernel side of idle sockets in S4).
func meminfoKiB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	return parseStatusKiB(b, field)
}

// parseSlabObjSize returns the object size in bytes of one cache of
// /proc/slabinfo ("TCP", "sock_inode_cache"...); 0 when absent.
func parseSlabObjSize(b []byte, cache string) int {
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == cache {
			n, err := strconv.Atoi(f[3])
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// parseGauge finds an unlabelled sample "name value" in a Prometheus text
// exposition; ok is false when absent.
func parseGauge(body, name string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, found := strings.CutPrefix(line, name+" ")
		if !found {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, false
		}
		return v, true
	}
	return 0, false
}
