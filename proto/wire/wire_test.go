package wire

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func fieldNumber(t *testing.T, m proto.Message, name string) protoreflect.FieldNumber {
	t.Helper()
	fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	require.NotNil(t, fd, "field %s", name)
	return fd.Number()
}

func TestFieldNumbersMatchDescriptors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		msg  proto.Message
		name string
		want int
	}{
		{&pb.ClientMessage{}, "request_id", int(clientRequestID)},
		{&pb.ClientMessage{}, "join", int(clientJoin)},
		{&pb.ClientMessage{}, "leave", int(clientLeave)},
		{&pb.ClientMessage{}, "send", int(clientSend)},
		{&pb.ClientMessage{}, "ping", int(clientPing)},
		{&pb.ClientMessage{}, "authenticate", int(clientAuthenticate)},
		{&pb.ClientMessage{}, "resume", int(clientResume)},
		{&pb.ClientMessage{}, "input", int(clientInput)},
		{&pb.ClientMessage{}, "snapshot", int(clientSnapshot)},
		{&pb.ClientMessage{}, "ack", int(clientAck)},
		{&pb.Send{}, "seq", int(sendSeq)},
		{&pb.ServerMessage{}, "authenticated", int(serverAuthenticated)},
		{&pb.ServerMessage{}, "resumed", int(serverResumed)},
		{&pb.Send{}, "payload", int(sendPayload)},
		{&pb.Send{}, "kind", int(sendKind)},
		{&pb.Send{}, "targets", int(sendTargets)},
		{&pb.Send{}, "echo", int(sendEcho)},
		{&pb.Send{}, "latest_only", int(sendLatestOnly)},
		{&pb.ServerMessage{}, "request_id", int(serverRequestID)},
		{&pb.ServerMessage{}, "joined", int(serverJoined)},
		{&pb.ServerMessage{}, "frame", int(serverFrame)},
		{&pb.ServerMessage{}, "pong", int(serverPong)},
		{&pb.ServerMessage{}, "error", int(serverError)},
		{&pb.ServerMessage{}, "left", int(serverLeft)},
		{&pb.Frame{}, "tick", int(frameTick)},
		{&pb.Frame{}, "deliveries", int(frameDeliveries)},
		{&pb.Frame{}, "events", int(frameEvents)},
		{&pb.Delivery{}, "sender", int(deliverySender)},
		{&pb.Delivery{}, "kind", int(deliveryKind)},
		{&pb.Delivery{}, "payload", int(deliveryPayload)},
	}
	for _, c := range cases {
		require.EqualValues(t, c.want, fieldNumber(t, c.msg, c.name), "%T.%s", c.msg, c.name)
	}
}

func TestAppendSendMatchesGenerated(t *testing.T) {
	t.Parallel()
	views := []SendView{
		{},
		{Payload: []byte("hello"), Kind: 7},
		{Payload: make([]byte, 300), Kind: 1 << 30, Targets: []uint32{1, 2, 300, 1 << 31}, Echo: true, LatestOnly: true},
		{Payload: []byte("x"), Seq: 1 << 40},
	}
	for _, v := range views {
		for _, rid := range []uint32{0, 1, 99999} {
			for _, ack := range []uint64{0, 7, 1 << 50} {
				got := AppendSend(nil, rid, ack, &v)
				want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.ClientMessage{
					RequestId: rid,
					Ack:       ack,
					Body: &pb.ClientMessage_Send{Send: &pb.Send{
						Payload: v.Payload, Kind: v.Kind, Targets: v.Targets, Echo: v.Echo, LatestOnly: v.LatestOnly, Seq: v.Seq,
					}},
				})
				require.NoError(t, err)
				require.Equal(t, want, got)

				var m ClientMessage
				require.NoError(t, ParseClientMessage(got, &m))
				require.Equal(t, BodySend, m.Body)
				require.Equal(t, rid, m.RequestID)
				require.Equal(t, ack, m.Ack)
				require.Equal(t, v.Seq, m.Send.Seq)
				require.Equal(t, len(v.Payload), len(m.Send.Payload))
				require.Equal(t, v.Kind, m.Send.Kind)
				require.Equal(t, len(v.Targets), len(m.Send.Targets))
				require.Equal(t, v.Echo, m.Send.Echo)
				require.Equal(t, v.LatestOnly, m.Send.LatestOnly)
			}
		}
	}
}

func TestParseClientMessageOtherBodies(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		msg  *pb.ClientMessage
		want Body
	}{
		{&pb.ClientMessage{RequestId: 3, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "abc"}}}, BodyJoin},
		{&pb.ClientMessage{Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}}, BodyLeave},
		{&pb.ClientMessage{Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 42}}}, BodyPing},
		{&pb.ClientMessage{Body: &pb.ClientMessage_Authenticate{Authenticate: &pb.Authenticate{Token: "t"}}}, BodyAuthenticate},
		{&pb.ClientMessage{Ack: 9, Body: &pb.ClientMessage_Resume{Resume: &pb.Resume{RoomId: "r", Token: []byte{1}}}}, BodyResume},
		{&pb.ClientMessage{Body: &pb.ClientMessage_Input{Input: &pb.Input{TargetTick: 3}}}, BodyInput},
		{&pb.ClientMessage{Body: &pb.ClientMessage_Snapshot{Snapshot: &pb.Snapshot{Tick: 3}}}, BodySnapshot},
		{&pb.ClientMessage{RequestId: 5}, BodyNone},
	} {
		b, err := proto.Marshal(c.msg)
		require.NoError(t, err)
		var m ClientMessage
		require.NoError(t, ParseClientMessage(b, &m))
		require.Equal(t, c.want, m.Body)
		require.Equal(t, c.msg.GetRequestId(), m.RequestID)
	}
}

// Rare is a rare body's encoding when it is the envelope's only body field,
// and decodes to what proto.Unmarshal makes of the envelope; with two body
// fields (the generated code merges or replaces them) it is nil.
func TestParseClientMessageRareBody(t *testing.T) {
	t.Parallel()
	join := &pb.Join{RoomId: "abc", CreateIfMissing: true, PlayerMetadata: map[string]string{"name": "ann"}}
	b, err := proto.Marshal(&pb.ClientMessage{RequestId: 3, Ack: 2, Body: &pb.ClientMessage_Join{Join: join}})
	require.NoError(t, err)
	var m ClientMessage
	require.NoError(t, ParseClientMessage(b, &m))
	require.Equal(t, BodyJoin, m.Body)
	var got pb.Join
	require.NoError(t, proto.Unmarshal(m.Rare, &got))
	require.True(t, proto.Equal(join, &got), "%v", &got)

	send, err := proto.Marshal(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("x")}}})
	require.NoError(t, err)
	leave, err := proto.Marshal(&pb.ClientMessage{Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	require.NoError(t, err)
	for name, env := range map[string][]byte{
		"two joins":      append(append([]byte(nil), b...), b...),
		"send and join":  append(append([]byte(nil), send...), b...),
		"join and send":  append(append([]byte(nil), b...), send...),
		"join and leave": append(append([]byte(nil), b...), leave...),
	} {
		require.NoError(t, ParseClientMessage(env, &m), name)
		require.Nil(t, m.Rare, name)
	}
	require.NoError(t, ParseClientMessage(send, &m))
	require.Nil(t, m.Rare, "a Send is no rare body")
	require.NoError(t, ParseClientMessage(leave, &m))
	require.NotNil(t, m.Rare, "an empty Leave is still a body")
	require.Empty(t, m.Rare)
}

func TestParseClientMessageRejectsMalformed(t *testing.T) {
	t.Parallel()
	var m ClientMessage
	for _, b := range [][]byte{
		{0x22},             // send tag without length
		{0x22, 0x05, 0x0a}, // send longer than the input
		{0x08},             // request id without varint
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // bad tag
	} {
		require.ErrorIs(t, ParseClientMessage(b, &m), ErrMalformed, "%x", b)
	}
	targets := make([]uint32, MaxTargets+1)
	b := AppendSend(nil, 0, 0, &SendView{Targets: targets})
	require.ErrorIs(t, ParseClientMessage(b, &m), ErrTooManyTargets)
}

// The header the relay writes in front of a payload already in place is
// AppendDelivery's output up to the payload, and never longer than the room
// a record keeps for it.
func TestDeliveryHeader(t *testing.T) {
	t.Parallel()
	for _, sender := range []uint32{0, 1, 300, math.MaxUint32} {
		for _, kind := range []uint32{0, 7, math.MaxUint32} {
			for _, n := range []int{0, 1, 127, 128, 64 << 10, math.MaxInt32} {
				h := AppendDeliveryHeader(nil, sender, kind, n)
				require.LessOrEqual(t, len(h), MaxDeliveryHeader)
				if n <= 64<<10 {
					payload := make([]byte, n)
					require.Equal(t, AppendDelivery(nil, sender, kind, payload), append(h, payload...),
						"sender %d kind %d payload %d", sender, kind, n)
				}
			}
		}
	}
}

func TestFrameEncodingMatchesGenerated(t *testing.T) {
	t.Parallel()
	deliveries := []*pb.Delivery{
		{Sender: 1, Kind: 2, Payload: []byte("abc")},
		{Sender: 300, Payload: make([]byte, 200)},
		{},
	}
	event := &pb.RoomEvent{Type: pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, PlayerId: 4}
	eventBytes, err := proto.Marshal(event)
	require.NoError(t, err)
	for _, tick := range []uint64{0, 1, 1 << 40} {
		for _, seq := range []uint64{0, 1, 1 << 33} {
			records := 0
			for _, d := range deliveries {
				records += DeliverySize(d.Sender, d.Kind, len(d.Payload))
			}
			records += 1 + len(eventBytes) + 1 // tag, one-byte length, body
			var got []byte
			got = AppendFrameStart(got, tick, seq, records)
			for _, d := range deliveries {
				got = AppendDelivery(got, d.Sender, d.Kind, d.Payload)
			}
			got = AppendEventRecord(got, eventBytes)
			got = AppendFrameEnd(got, seq)
			require.Len(t, got, FrameSize(tick, seq, records))

			want, err := proto.Marshal(&pb.ServerMessage{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{
				Tick: tick, Deliveries: deliveries, Events: []*pb.RoomEvent{event}, Seq: seq,
			}}})
			require.NoError(t, err)
			require.Equal(t, want, got)
			var view ServerMessage
			require.NoError(t, ParseServerMessage(got, &view))
			require.Equal(t, seq, view.Seq)

			var m ServerMessage
			require.NoError(t, ParseServerMessage(got, &m))
			require.Equal(t, BodyFrame, m.Body)
			require.Equal(t, tick, m.Tick)
			require.Len(t, m.Deliveries, len(deliveries))
			for i, d := range deliveries {
				require.Equal(t, d.Sender, m.Deliveries[i].Sender)
				require.Equal(t, d.Kind, m.Deliveries[i].Kind)
				require.Equal(t, len(d.Payload), len(m.Deliveries[i].Payload))
			}
			require.Len(t, m.Events, 1)
			var ev pb.RoomEvent
			require.NoError(t, proto.Unmarshal(m.Events[0], &ev))
			require.True(t, proto.Equal(event, &ev))
		}
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	payload := make([]byte, 64)
	msg := AppendSend(nil, 9, 0, &SendView{Payload: payload, Kind: 3, Targets: []uint32{1, 2, 3}})
	var cm ClientMessage
	require.NoError(t, ParseClientMessage(msg, &cm)) // warm the Targets capacity
	buf := make([]byte, 0, 4096)
	var sm ServerMessage
	frame := AppendFrameStart(nil, 77, 0, DeliverySize(1, 2, 64))
	frame = AppendDelivery(frame, 1, 2, payload)
	require.NoError(t, ParseServerMessage(frame, &sm))

	allocs := testing.AllocsPerRun(200, func() {
		_ = ParseClientMessage(msg, &cm)
		b := AppendFrameStart(buf[:0], 12345, 0, DeliverySize(1, 2, len(payload)))
		b = AppendDelivery(b, 1, 2, payload)
		_ = ParseServerMessage(b, &sm)
	})
	require.Zero(t, allocs)
}
