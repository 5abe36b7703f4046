package client

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tickrelay/tickrelay/internal/splitproxy"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// throughSplitProxy routes the connections to url through a proxy that
// cuts every write, both ways, into random pieces with pauses.
func throughSplitProxy(t *testing.T, url string) string {
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	return "ws://" + splitproxy.ForTest(t, addr, nil).Addr() + "/ws"
}

// seqFrame is a Frame of tick with seat sequence number seq.
func seqFrame(t *testing.T, tick, seq uint64) []byte {
	return encodeServer(t, &pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{Tick: tick, Seq: seq}}})
}

// clientMessages reads the client's binary messages from conn into a
// channel until the connection ends.
func clientMessages(t *testing.T, conn net.Conn) <-chan *pb.ClientMessage {
	msgs := make(chan *pb.ClientMessage, 100)
	go func() {
		defer close(msgs)
		for {
			h, p, err := readClientFrame(conn)
			if err != nil || h.OpCode == ws.OpClose {
				return
			}
			if h.OpCode != ws.OpBinary {
				continue
			}
			var m pb.ClientMessage
			if proto.Unmarshal(p, &m) == nil {
				msgs <- &m
			}
		}
	}()
	return msgs
}

func nextClientMessage(t *testing.T, msgs <-chan *pb.ClientMessage) *pb.ClientMessage {
	t.Helper()
	select {
	case m, ok := <-msgs:
		require.True(t, ok, "the connection ended")
		return m
	case <-time.After(waitTimeout):
		require.FailNow(t, "no message from the client")
		return nil
	}
}

// An idle player with AckInterval acknowledges the frames it got, the
// newest, in one ack-only message.
func TestAckIntervalAcknowledgesAnIdlePlayer(t *testing.T) {
	t.Parallel()
	got := make(chan *pb.ClientMessage, 1)
	url := rawServer(t, func(conn net.Conn) {
		for seq := uint64(1); seq <= 3; seq++ {
			_ = ws.WriteFrame(conn, ws.NewBinaryFrame(seqFrame(t, 10+seq, seq)))
		}
		msgs := clientMessages(t, conn)
		got <- nextClientMessage(t, msgs)
		for range msgs {
		}
	})
	p := connectWith(t, throughSplitProxy(t, url), Options{AckInterval: 20 * time.Millisecond})
	var m *pb.ClientMessage
	select {
	case m = <-got:
	case <-time.After(waitTimeout):
		require.FailNow(t, "no ack")
	}
	require.Nil(t, m.GetBody(), "an ack-only message has no body")
	require.Equal(t, uint64(3), m.GetAck(), "the newest frame is acknowledged")
	require.Equal(t, uint64(3), p.LastSeq())
}

// A player that sends carries its acknowledgements on its Sends, even when
// an ack falls due between two of them; an ack-only message goes out only
// once it stopped sending.
func TestAckIntervalRidesOnSends(t *testing.T) {
	t.Parallel()
	const interval = time.Second // wide margins: the test runs beside others under -race
	seen := make(chan []*pb.ClientMessage, 1)
	url := rawServer(t, func(conn net.Conn) {
		msgs := clientMessages(t, conn)
		var all []*pb.ClientMessage
		for seq := uint64(1); seq <= 3; seq++ {
			_ = ws.WriteFrame(conn, ws.NewBinaryFrame(seqFrame(t, seq, seq)))
			all = append(all, nextClientMessage(t, msgs))
		}
		seen <- all
		for range msgs {
		}
	})
	p := connectWith(t, throughSplitProxy(t, url), Options{AckInterval: interval})
	require.Eventually(t, func() bool { return p.LastSeq() == 1 }, waitTimeout, time.Millisecond)
	require.NoError(t, p.Send([]byte("move"), SendOptions{Kind: 1}))
	// The player pauses past the first ack due (an interval after frame 1,
	// with frame 2 unacknowledged), not past the second: its next Send
	// carries the ack.
	time.Sleep(interval * 3 / 2)
	require.NoError(t, p.Send([]byte("move"), SendOptions{Kind: 1}))
	var all []*pb.ClientMessage
	select {
	case all = <-seen:
	case <-time.After(waitTimeout):
		require.FailNow(t, "frame 3 was not acknowledged")
	}
	require.NotNil(t, all[0].GetSend())
	require.Equal(t, uint64(1), all[0].GetAck(), "the Send carries the ack of frame 1")
	require.NotNil(t, all[1].GetSend(), "no ack-only message while the player sends")
	require.Equal(t, uint64(2), all[1].GetAck(), "the next Send carries the ack of frame 2")
	require.Nil(t, all[2].GetBody(), "the player stopped: frame 3 is acknowledged alone")
	require.Equal(t, uint64(3), all[2].GetAck())
}
