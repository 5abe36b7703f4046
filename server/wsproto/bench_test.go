package wsproto

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkDecoderNext(b *testing.B) {
	for _, size := range []int{64, 1024, 16384} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			in := frame(ws.OpBinary, bytes.Repeat([]byte{0x42}, size)).bytes()
			buf := make([]byte, len(in))
			d := NewDecoder(Limits{})
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, in) // Next unmasks in place; start from masked bytes
				_, _, ok, err := d.Next(buf)
				if !ok || err != nil {
					b.Fatal("decode failed")
				}
			}
		})
	}
	// What one OnTraffic sees under load: many small frames in one read.
	b.Run("batch=16x64", func(b *testing.B) {
		var in []byte
		for range 16 {
			in = append(in, frame(ws.OpBinary, bytes.Repeat([]byte{0x42}, 64)).bytes()...)
		}
		buf := make([]byte, len(in))
		d := NewDecoder(Limits{})
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			copy(buf, in)
			off := 0
			for {
				_, n, ok, err := d.Next(buf[off:])
				if err != nil {
					b.Fatal(err)
				}
				off += n
				if !ok {
					break
				}
			}
		}
	})
	b.Run("fragmented=4x256", func(b *testing.B) {
		p := bytes.Repeat([]byte{1}, 256)
		in := cat(
			frame(ws.OpBinary, p).more().bytes(),
			frame(ws.OpContinuation, p).more().bytes(),
			frame(ws.OpContinuation, p).more().bytes(),
			frame(ws.OpContinuation, p).bytes(),
		)
		buf := make([]byte, len(in))
		d := NewDecoder(Limits{})
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for b.Loop() {
			copy(buf, in)
			_, _, ok, err := d.Next(buf)
			if !ok || err != nil {
				b.Fatal("decode failed")
			}
		}
	})
}

func BenchmarkPutHeader(b *testing.B) {
	dst := make([]byte, 10)
	b.ReportAllocs()
	for b.Loop() {
		PutHeader(dst, ws.OpBinary, 300)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			payload := make([]byte, size)
			dst := make([]byte, 0, size+10)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendFrame(dst[:0], ws.OpBinary, payload)
			}
		})
	}
}

func BenchmarkAppendClose(b *testing.B) {
	dst := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendClose(dst[:0], ws.StatusCode(4000), "slow consumer")
	}
}

func BenchmarkHandshake(b *testing.B) {
	cfg := testConfig()
	b.Run("browser-upgrade", func(b *testing.B) {
		b.SetBytes(int64(len(browserRequest)))
		b.ReportAllocs()
		for b.Loop() {
			res, err := Handshake(browserRequest, io.Discard, cfg)
			if err != nil || !res.Upgraded {
				b.Fatal(res, err)
			}
		}
	})
	b.Run("incomplete", func(b *testing.B) {
		half := browserRequest[:len(browserRequest)/2]
		b.ReportAllocs()
		for b.Loop() {
			res, _ := Handshake(half, io.Discard, cfg)
			if !res.NeedMore {
				b.Fatal(res)
			}
		}
	})
	b.Run("healthz", func(b *testing.B) {
		req := []byte("GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n")
		b.ReportAllocs()
		for b.Loop() {
			res, _ := Handshake(req, io.Discard, cfg)
			if res.Status != 200 {
				b.Fatal(res)
			}
		}
	})
}
