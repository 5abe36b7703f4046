package server

import (
	"fmt"
	"math/rand/v2"
	"testing"

	ws "github.com/tickrelay/tickrelay/internal/wstest"
)

// randomStream builds a random valid client stream: data messages of sizes
// from 0 to about 70 KB, text or binary, some in fragments with pings and
// pongs between them, ending with a Close. It returns the stream and the
// frames a correct server answers on the echo endpoint.
func randomStream(rng *rand.Rand) (frames []ws.Frame, want []ws.ServerFrame) {
	size := func() int {
		switch rng.IntN(10) {
		case 0:
			return 0
		case 1, 2:
			return 126 + rng.IntN(65536-126) // 16-bit length form
		case 3:
			return 65536 + rng.IntN(5000) // 64-bit length form
		default:
			return 1 + rng.IntN(125)
		}
	}
	control := func() {
		p := make([]byte, rng.IntN(126))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		if rng.IntN(3) == 0 {
			frames = append(frames, ws.Data(ws.OpPong, p))
			return
		}
		frames = append(frames, ws.Data(ws.OpPing, p))
		want = append(want, pong(p))
	}
	messages := 1 + rng.IntN(12)
	for range messages {
		op := ws.OpBinary
		payload := make([]byte, size())
		if rng.IntN(2) == 0 {
			op = ws.OpText // ASCII: valid UTF-8 wherever it is cut
			for i := range payload {
				payload[i] = 'a' + byte(rng.IntN(26))
			}
		} else {
			for i := range payload {
				payload[i] = byte(rng.Uint32())
			}
		}
		if rng.IntN(3) == 0 {
			control()
		}
		parts := 1
		if rng.IntN(3) == 0 {
			parts = 2 + rng.IntN(20)
		}
		rest := payload
		for p := range parts {
			n := len(rest)
			if p < parts-1 {
				n = rng.IntN(len(rest) + 1)
			}
			fop := ws.OpCont
			if p == 0 {
				fop = op
			}
			frames = append(frames, ws.Fragment(p == parts-1, fop, rest[:n]))
			rest = rest[n:]
			if p < parts-1 && rng.IntN(2) == 0 {
				control() // control frames may come between fragments
			}
		}
		want = append(want, echoOf(op, payload))
	}
	frames = append(frames, ws.Close(1000, "done"))
	want = append(want, closed(1000))
	return frames, want
}

// Any stream of valid frames yields exactly the same messages and answers
// whether it arrives whole or cut at random points with pauses between the
// pieces.
func TestPropertySameAnswersWholeOrCut(t *testing.T) {
	t.Parallel()
	srv := echoServer(t)
	seed := rand.Uint64()
	t.Logf("streams from seed %d", seed)
	for i := range 24 {
		t.Run(fmt.Sprint("stream ", i), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			frames, want := randomStream(rng)
			stream := ws.Stream(frames...)
			whole := runEcho(t, srv, stream, nil)
			sameFrames(t, want, whole, fmt.Sprintf("whole (seed %d, stream %d)", seed, i))
			cut := runEcho(t, srv, stream, rng)
			sameFrames(t, whole, cut, fmt.Sprintf("cut (seed %d, stream %d)", seed, i))
		})
	}
}
