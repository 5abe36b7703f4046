package iplimit_test

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/tickrelay/tickrelay/iplimit"
)

// addrN returns the n-th address of 10.0.0.0/8.
func addrN(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

func BenchmarkOpenCloseConn(b *testing.B) {
	l := newLimiter(b, iplimit.Config{})
	a := ip("203.0.113.5")
	b.ReportAllocs()
	for b.Loop() {
		l.OpenConn(a)
		l.CloseConn(a)
	}
}

func BenchmarkAllowHandshake(b *testing.B) {
	l := newLimiter(b, iplimit.Config{HandshakesPerSecond: 1e9})
	a := ip("2001:db8:1:2::5")
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Microsecond)
		l.AllowHandshake(a, now)
	}
}

func BenchmarkAllowJoinParallel(b *testing.B) {
	l := newLimiter(b, iplimit.Config{JoinsPerSecond: 1e9})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			l.AllowJoin(addrN(i%4096), t0.Add(time.Duration(i)))
		}
	})
}

// BenchmarkNewAddress is the cost of the first handshake of an address not
// yet in the table (entry and bucket created), with a Sweep per 64k.
func BenchmarkNewAddress(b *testing.B) {
	l := newLimiter(b, iplimit.Config{})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if i%iplimit.DefaultMaxTracked == 0 {
			l.Sweep(t0.Add(time.Hour))
		}
		l.AllowHandshake(addrN(i), t0)
	}
}

func BenchmarkSweep(b *testing.B) {
	l := newLimiter(b, iplimit.Config{})
	for i := range iplimit.DefaultMaxTracked {
		l.OpenConn(addrN(i)) // kept: connections stay open
		l.AllowHandshake(addrN(i), t0)
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Sweep(t0)
	}
	b.ReportMetric(float64(iplimit.DefaultMaxTracked), "entries")
}

// BenchmarkMemoryPerAddress reports the heap held per tracked address,
// worst case (every bucket created), as B/addr.
func BenchmarkMemoryPerAddress(b *testing.B) {
	const n = 50_000
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := newLimiter(b, iplimit.Config{MaxTracked: n})
		for i := range n {
			a := addrN(i)
			l.OpenConn(a)
			l.AllowHandshake(a, t0)
			l.AllowJoin(a, t0)
			l.JoinFailed(a, t0)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/addr")
		runtime.KeepAlive(l)
	}
}
