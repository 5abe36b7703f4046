package wsproto

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

// Allocation budgets of the hot paths, as tests (testing.AllocsPerRun
// cannot run in parallel tests, hence one serial test).
func TestAllocationBudgets(t *testing.T) {
	t.Run("Decoder.Next 64-byte frame", func(t *testing.T) {
		in := frame(ws.OpBinary, bytes.Repeat([]byte{0x42}, 64)).bytes()
		buf := make([]byte, len(in))
		d := NewDecoder(Limits{})
		allocs := testing.AllocsPerRun(1000, func() {
			copy(buf, in)
			_, _, ok, err := d.Next(buf)
			if !ok || err != nil {
				panic("decode failed")
			}
		})
		require.Zero(t, allocs)
	})
	t.Run("Decoder.Next fragmented, warm pool", func(t *testing.T) {
		frag := cat(
			frame(ws.OpBinary, bytes.Repeat([]byte{1}, 100)).more().bytes(),
			frame(ws.OpPing, nil).bytes(),
			frame(ws.OpContinuation, bytes.Repeat([]byte{2}, 100)).bytes(),
		)
		buf := make([]byte, len(frag))
		d := NewDecoder(Limits{})
		allocs := testing.AllocsPerRun(1000, func() {
			copy(buf, frag)
			off := 0
			for {
				_, n, ok, err := d.Next(buf[off:])
				if err != nil {
					panic(err)
				}
				off += n
				if !ok {
					break
				}
			}
		})
		// sync.Pool may drop the buffer at a GC; allow for that.
		require.Less(t, allocs, 0.1)
	})
	t.Run("PutHeader and AppendFrame", func(t *testing.T) {
		dst := make([]byte, 0, 128)
		payload := make([]byte, 64)
		allocs := testing.AllocsPerRun(1000, func() {
			dst = AppendFrame(dst[:0], ws.OpBinary, payload)
			PutHeader(dst, ws.OpBinary, len(payload))
			dst = AppendClose(dst[:0], ws.StatusCode(4000), "slow consumer")
		})
		require.Zero(t, allocs)
	})
	t.Run("declared 10 MB is not allocated", func(t *testing.T) {
		hdr := frame(ws.OpBinary, nil).declare(10 << 20).bytes()
		var d Decoder
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		allocs := testing.AllocsPerRun(100, func() {
			d.Reset()
			if _, _, _, err := d.Next(hdr); err == nil {
				panic("no error")
			}
		})
		runtime.ReadMemStats(&after)
		require.LessOrEqual(t, allocs, 1.0, "only the *CloseError")
		require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(101*64), "bytes for 101 runs")
	})
}
