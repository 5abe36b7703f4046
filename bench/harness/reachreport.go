package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// reachFig reads a figure of the S4 extras; NaN without them.
func reachFig(f func(*ReachFigures) float64) func(Run) float64 {
	return func(r Run) float64 {
		if r.Reach == nil {
			return math.NaN()
		}
		return f(r.Reach)
	}
}

func writeReach(b *strings.Builder, r *Results, sc Scenario) {
	b.WriteString("\nReach figures (read by the harness from /proc; medians over rounds):\n\n")
	var rows [][]string
	for _, sys := range sc.Systems {
		med := func(f func(*ReachFigures) float64) float64 { return median(r.byRound(sc.ID, sys, reachFig(f))) }
		minHeld := math.NaN()
		drops := int64(0)
		for _, run := range r.runsOf(sc.ID, sys) {
			if run.ok() && run.Reach != nil {
				if math.IsNaN(minHeld) || float64(run.Reach.Held) < minHeld {
					minHeld = float64(run.Reach.Held)
				}
				drops += run.Reach.HoldDrops
			}
		}
		rows = append(rows, []string{"`" + sys + "`",
			commas(minHeld, 0) + " / " + commas(float64(sc.HoldClients), 0),
			f2(med(func(x *ReachFigures) float64 { return x.JoinS })),
			commas(med(func(x *ReachFigures) float64 { return x.JoinRate }), 0),
			f2(med(func(x *ReachFigures) float64 { return x.KiBPerConn })),
			f2(med(func(x *ReachFigures) float64 { return x.KiBPerConnSettled })),
			f3(med(func(x *ReachFigures) float64 { return x.IdleCores })),
			mib(med(func(x *ReachFigures) float64 { return float64(x.HWMKiB) })),
			f2(med(func(x *ReachFigures) float64 { return x.KernelKiBPerSocket })),
			strconv.FormatInt(drops, 10),
		})
	}
	b.WriteString(table([]string{"system", "held (worst round) / asked", "join s", "joins/s", "KiB/conn after join", "KiB/conn after settle", "idle server cores", "HWM MiB", "kernel slab KiB/socket (approx.)", "held connections lost"},
		"llrrrrrrrr", rows))
	b.WriteString("\n*Join time: from starting the client-sim processes to the last one reporting every client joined (dial, WebSocket upgrade, Join and its answer), 256 handshakes in flight per process. Kernel slab per socket: /proc/meminfo Slab after the joins minus before, over 2 × held (both ends of each loopback connection are on this host): an estimate that includes anything else the machine allocated meanwhile.*\n")

	var orows [][]string
	for _, run := range r.runsOf(sc.ID, refRelay) {
		if !run.ok() || run.Reach == nil || run.Reach.Over == nil {
			continue
		}
		x, o := run.Reach, run.Reach.Over
		gauge := dash
		if o.ConnsOpen >= 0 {
			gauge = commas(o.ConnsOpen, 0)
		}
		orows = append(orows, []string{strconv.Itoa(run.Round), commas(float64(x.OpenFileLimit), 0),
			fmt.Sprintf("%s (limit − %d)", commas(float64(x.MaxConnections), 0), x.OpenFileLimit-x.MaxConnections),
			commas(float64(x.Held), 0), commas(float64(o.Attempted), 0), commas(float64(o.Accepted), 0),
			commas(float64(o.Refused503), 0), fmt.Sprintf("%s (%s after their Error)", commas(float64(o.Refused4002), 0), commas(float64(o.ServerFull), 0)), errorText(o.OtherErrors), gauge, strconv.FormatInt(x.HoldDrops, 10)})
	}
	if len(orows) > 0 {
		b.WriteString("\nPast the limit (`relay-30hz` with its default `-max-connections`, a reserve below the open-file limit): while the hold processes kept their connections, one more client-sim process dialled (open-file limit − held) + a few hundred at 1,000/s, more than the relay may take whatever its reserve. Limit reached = held + accepted:\n\n")
		b.WriteString(table([]string{"round", "open-file limit", "limit reached", "held", "extra dialled", "accepted", "refused with 503", "upgraded, Error{SERVER_FULL}, closed 4002", "other errors", "relay's connections_open gauge then", "held connections lost"},
			"rrrrrrrrlrr", orows))
		b.WriteString("\n")
	}
	writeProjection(b, r)
}

// writeProjection extrapolates the relay's S4 figures to 1,000,000
// connections, saying which numbers are measured and which are projected.
func writeProjection(b *strings.Builder, r *Results) {
	med := func(f func(*ReachFigures) float64) float64 { return median(r.byRound("s4", refRelay, reachFig(f))) }
	kib := med(func(x *ReachFigures) float64 { return x.KiBPerConn })
	if math.IsNaN(kib) {
		return
	}
	settled := med(func(x *ReachFigures) float64 { return x.KiBPerConnSettled })
	base := med(func(x *ReachFigures) float64 { return float64(x.RSSBeforeKiB) })
	held := med(func(x *ReachFigures) float64 { return float64(x.Held) })
	kern := med(func(x *ReachFigures) float64 { return x.KernelKiBPerSocket })
	rate := med(func(x *ReachFigures) float64 { return x.JoinRate })
	idle := med(func(x *ReachFigures) float64 { return x.IdleCores })
	var tcpObj, inodeObj int
	reserve := 128.0 // the relay's documented default, unless measured below
	for _, run := range r.runsOf("s4", refRelay) {
		if run.Reach != nil && run.Reach.TCPSlabObjBytes > 0 {
			tcpObj, inodeObj = run.Reach.TCPSlabObjBytes, run.Reach.SockInodeObjBytes
		}
		if run.Reach != nil && run.Reach.MaxConnections > 0 {
			reserve = float64(run.Reach.OpenFileLimit - run.Reach.MaxConnections)
		}
	}
	const n = 1_000_000
	gibOf := func(kib float64) string { return fp(kib/(1<<20), 1) + " GiB" }
	sys := r.Env.Sysctl
	b.WriteString("\n#### Projection to 1,000,000 connections\n\n")
	fmt.Fprintf(b, "Measured here (relay, %s idle connections, medians): **%s KiB** of relay RSS per connection after joining (%s KiB after settling), idle server CPU %s cores, %s joins/s, kernel slab ≈ %s KiB per socket.\n\n",
		commas(held, 0), f2(kib), f2(settled), f3(idle), commas(rate, 0), f2(kern))
	rows := [][]string{
		{"relay RSS", "projected", fmt.Sprintf("%s + %s KiB × 10⁶ ≈ **%s**", mib(base)+" MiB base", f2(kib), gibOf(base+kib*n)), "linear in connections: per-connection state is a seat, a registry entry and gnet's connection; no per-connection goroutine or buffer while idle"},
		{"kernel memory, server sockets", "projected from an estimate", fmt.Sprintf("≈ %s KiB × 10⁶ ≈ **%s**", f2(kern), gibOf(kern*n)), kernelNote(tcpObj, inodeObj)},
		{"socket buffers while idle", "not measured (kernel behaviour)", "≈ 0: an idle TCP socket holds no queued data", "buffers are allocated only for unsent or unread data; keep-alive pings are a few bytes"},
		{"socket buffers, worst case", "projected", bufferWorstCase(sys), "set `-socket-send-buffer`/`-socket-recv-buffer` (SO_SNDBUF/SO_RCVBUF; the kernel doubles the value) to bound it per socket; `net.ipv4.tcp_mem` bounds it for the host"},
		{"file descriptors", "projected", fmt.Sprintf("10⁶ + the relay's reserve (%s here) ≈ **%s** (RLIMIT_NOFILE)", commas(reserve, 0), commas(1e6+reserve, 0)), fmt.Sprintf("here the hard limit is %s; the hard limit can be raised up to `fs.nr_open` (%s here, %s) and the host-wide `fs.file-max` is %s (%s)", r.Env.OpenFileLimit,
			orUnknown(sys["fs.nr_open"]), enough(sys["fs.nr_open"], 1e6+reserve), orUnknown(sys["fs.file-max"]), enough(sys["fs.file-max"], 1e6+reserve))},
		{"idle CPU", "projected", fmt.Sprintf("%s × 10⁶ / %s ≈ **%s cores**", f3(idle), commas(held, 0), f2(idle*n/held)), "keep-alive pings (every 15 s per quiet connection) and the sweeper; linear"},
		{"time to connect everyone", "projected", fmt.Sprintf("10⁶ / %s per s ≈ **%s s**", commas(rate, 0), fp(n/rate, 0)), "at this host's measured join rate (clients and relay sharing 2 cores)"},
		{"load generator", "projected", fmt.Sprintf("≈ %d source addresses per server port", int(math.Ceil(n/ephemeralPorts(sys["net.ipv4.ip_local_port_range"])))), "one source address has " + orUnknown(sys["net.ipv4.ip_local_port_range"]) + " ephemeral ports towards one server address"},
	}
	b.WriteString(table([]string{"resource", "kind", "for 1,000,000", "notes"}, "llll", rows))
}

func kernelNote(tcpObj, inodeObj int) string {
	s := "Slab growth over both ends of the loopback connections, halved"
	if tcpObj > 0 {
		s += fmt.Sprintf("; its floor is the `TCP` slab object (%d B) + `sock_inode_cache` (%d B) + file, epoll and dentry entries", tcpObj, inodeObj)
	}
	return s
}

func bufferWorstCase(sys map[string]string) string {
	wmem := strings.Fields(sys["net.ipv4.tcp_wmem"])
	rmem := strings.Fields(sys["net.ipv4.tcp_rmem"])
	tcpMem := strings.Fields(sys["net.ipv4.tcp_mem"])
	if len(wmem) < 2 || len(rmem) < 2 {
		return "unknown (tcp_wmem/tcp_rmem not readable)"
	}
	w, _ := strconv.ParseFloat(wmem[1], 64)
	rr, _ := strconv.ParseFloat(rmem[1], 64)
	s := fmt.Sprintf("at the default initial sizes (tcp_wmem %s B + tcp_rmem %s B) × 10⁶ ≈ %s GiB if every buffer filled", wmem[1], rmem[1], fp((w+rr)*1e6/(1<<30), 0))
	if len(tcpMem) == 3 {
		if p, err := strconv.ParseFloat(tcpMem[2], 64); err == nil {
			s += fmt.Sprintf("; capped host-wide by tcp_mem max %s pages = %s GiB", tcpMem[2], fp(p*4096/(1<<30), 1))
		}
	}
	return s
}

// ephemeralPorts is the size of ip_local_port_range ("lo hi"); 28,232 (the
// Linux default) when unknown.
func ephemeralPorts(rng string) float64 {
	f := strings.Fields(rng)
	if len(f) == 2 {
		lo, err1 := strconv.Atoi(f[0])
		hi, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil && hi > lo {
			return float64(hi - lo + 1)
		}
	}
	return 28232
}

// enough says whether a sysctl's value reaches need.
func enough(v string, need float64) string {
	n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	switch {
	case err != nil:
		return "unknown"
	case n >= need:
		return "enough"
	default:
		return "too low"
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
