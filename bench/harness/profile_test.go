package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

const pprofTop = `File: tickrelay
Type: cpu
Time: 2026-11-25 04:08:05 UTC
Duration: 3s, Total samples = 1.29s (42.97%)
Showing nodes accounting for 1.15s, 89.15% of 1.29s total
Showing top 20 nodes out of 143
      flat  flat%   sum%        cum   cum%
     0.92s 71.32% 71.32%      0.92s 71.32%  internal/runtime/syscall/linux.Syscall6
     0.02s  1.55% 72.87%      0.02s  1.55%  github.com/tickrelay/tickrelay/room.(*worker).route
         0     0% 72.87%      0.71s 55.04%  golang.org/x/sys/unix.Write (inline)
`

func TestParsePprofTop(t *testing.T) {
	t.Parallel()
	header, rows := parsePprofTop(pprofTop)
	require.Equal(t, []string{
		"Type: cpu",
		"Duration: 3s, Total samples = 1.29s (42.97%)",
		"Showing nodes accounting for 1.15s, 89.15% of 1.29s total",
	}, header)
	require.Len(t, rows, 3)
	require.Equal(t, ProfileRow{Flat: "0.92s", FlatPct: "71.32%", SumPct: "71.32%", Cum: "0.92s", CumPct: "71.32%", Name: "internal/runtime/syscall/linux.Syscall6"}, rows[0])
	require.Equal(t, "golang.org/x/sys/unix.Write (inline)", rows[2].Name)
	require.Equal(t, "0", rows[2].Flat)

	header, rows = parsePprofTop("")
	require.Empty(t, header)
	require.Empty(t, rows)
}

func TestShareSummary(t *testing.T) {
	t.Parallel()
	_, cum := parsePprofTop(`      flat  flat%   sum%        cum   cum%
         0     0%     0%      4.76s 85.00%  github.com/panjf2000/gnet/v2.(*eventloop).orbit
         0     0% 74.82%      3.39s 60.54%  golang.org/x/sys/unix.write
         0     0% 76.79%      0.64s 11.43%  github.com/tickrelay/tickrelay/room.(*worker).run
     0.03s  0.54% 77.86%      0.44s  7.86%  golang.org/x/sys/unix.EpollWait
`)
	require.Equal(t, "write(2) 60.54%, epoll_wait(2) 7.86%, room workers (routing, tick build) 11.43%", shareSummary(cum))
	require.Empty(t, shareSummary(nil))
}
