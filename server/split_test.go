package server

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// writeSplit writes b in pieces cut at the given offsets, pausing between
// them so that the relay reads each piece separately. The pause is the
// condition under test (a frame arriving in two TCP reads), not a
// synchronisation.
func (r *rawConn) writeSplit(b []byte, pause time.Duration, cuts ...int) {
	r.t.Helper()
	prev := 0
	for _, c := range cuts {
		r.write(b[prev:c])
		prev = c
		time.Sleep(pause)
	}
	r.write(b[prev:])
}

func TestSplitPingHeaderAcrossReadsIsAnswered(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	ping := clientFrame(true, opPing, []byte("split ping"), false)
	// 7 bytes: the 2-byte header, the 4-byte mask and one payload byte.
	r.writeSplit(ping, 50*time.Millisecond, 7)
	op, payload := r.readFrame()
	require.Equal(t, byte(opPong), op)
	require.Equal(t, "split ping", string(payload))
}

func TestSplitLargeFrameAcrossSegmentsIsDelivered(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	join := marshal(t, &pb.ClientMessage{RequestId: 9, Body: &pb.ClientMessage_Join{Join: &pb.Join{
		RoomId: "segments", CreateIfMissing: true,
		PlayerMetadata: map[string]string{"bio": strings.Repeat("x", 1990)},
	}}})
	frame := clientFrame(true, opBinary, join, false)
	require.Greater(t, len(frame), 2000)
	// One TCP segment of a typical 1,500-byte MTU path, then the rest.
	r.writeSplit(frame, 5*time.Millisecond, 1448)
	m := r.readServerMessage()
	require.Equal(t, uint32(9), m.GetRequestId())
	require.Equal(t, "segments", m.GetJoined().GetRoomId(), "got %v", m)
}

func TestSplitEveryOffsetOfAFrame(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	r := dialRaw(t, srv)
	r.upgrade()
	ping := marshal(t, &pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 7}}})
	frame := clientFrame(true, opBinary, ping, false)
	for cut := 1; cut < len(frame); cut++ {
		r.writeSplit(frame, 2*time.Millisecond, cut)
		m := r.readServerMessage()
		require.Equal(t, int64(7), m.GetPong().GetClientTime(), "cut at %d: %v", cut, m)
	}
}
