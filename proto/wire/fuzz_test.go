package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func clientSeeds() [][]byte {
	var seeds [][]byte
	for _, m := range []*pb.ClientMessage{
		{RequestId: 1, Body: &pb.ClientMessage_Join{Join: &pb.Join{RoomId: "ABCD", CreateIfMissing: true,
			Options: &pb.RoomOptions{MaxPlayers: 8, TickRate: 30}, PlayerMetadata: map[string]string{"name": "ann"}}}},
		{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("0123456789abcdef"), Kind: 1, Targets: []uint32{2, 3}, Echo: true}}},
		{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte{1}, LatestOnly: true}}},
		{Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}},
		{RequestId: 7, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 123456789}}},
		{Ack: 3, Body: &pb.ClientMessage_Input{Input: &pb.Input{TargetTick: 12, Seq: 2, Payload: []byte{9}, ChecksumTick: 10, Checksum: 1 << 60}}},
	} {
		b, _ := proto.Marshal(m)
		seeds = append(seeds, b)
	}
	// Unpacked targets and a Send split in two fields (merged by proto).
	seeds = append(seeds, []byte{0x22, 0x04, 0x18, 0x01, 0x18, 0x02, 0x22, 0x02, 0x10, 0x05})
	return seeds
}

// FuzzParseClientMessage checks the hand-written parser against the
// generated code: whenever proto.Unmarshal accepts an input, ParseClientMessage
// must accept it too and agree on every Send field.
func FuzzParseClientMessage(f *testing.F) {
	for _, s := range clientSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m ClientMessage
		err := ParseClientMessage(b, &m)
		var ref pb.ClientMessage
		refErr := proto.Unmarshal(b, &ref)
		if refErr != nil {
			return // the hand parser may accept what it passes on to proto.Unmarshal
		}
		if err != nil {
			require.ErrorIs(t, err, ErrTooManyTargets)
			require.Greater(t, len(ref.GetSend().GetTargets()), MaxTargets)
			return
		}
		require.Equal(t, ref.GetRequestId(), m.RequestID)
		switch ref.Body.(type) {
		case *pb.ClientMessage_Send:
			require.Equal(t, BodySend, m.Body)
			s := ref.GetSend()
			require.Equal(t, string(s.GetPayload()), string(m.Send.Payload))
			require.Equal(t, s.GetKind(), m.Send.Kind)
			require.Equal(t, len(s.GetTargets()), len(m.Send.Targets))
			for i := range s.GetTargets() {
				require.Equal(t, s.GetTargets()[i], m.Send.Targets[i])
			}
			require.Equal(t, s.GetEcho(), m.Send.Echo)
			require.Equal(t, s.GetLatestOnly(), m.Send.LatestOnly)
		case *pb.ClientMessage_Input:
			require.Equal(t, BodyInput, m.Body)
			in := ref.GetInput()
			require.Equal(t, in.GetTargetTick(), m.Input.TargetTick)
			require.Equal(t, in.GetSeq(), m.Input.Seq)
			require.Equal(t, string(in.GetPayload()), string(m.Input.Payload))
			require.Equal(t, in.GetChecksumTick(), m.Input.ChecksumTick)
			require.Equal(t, in.GetChecksum(), m.Input.Checksum)
		case *pb.ClientMessage_Join:
			require.Equal(t, BodyJoin, m.Body)
		case *pb.ClientMessage_Leave:
			require.Equal(t, BodyLeave, m.Body)
		case *pb.ClientMessage_Ping:
			require.Equal(t, BodyPing, m.Body)
		case nil:
			require.Equal(t, BodyNone, m.Body)
		}
	})
}

// FuzzParseServerMessage checks the frame parser against the generated code.
func FuzzParseServerMessage(f *testing.F) {
	frame := AppendFrameStart(nil, 5, 0, DeliverySize(1, 2, 3))
	frame = AppendDelivery(frame, 1, 2, []byte("abc"))
	f.Add(frame)
	for _, m := range []*pb.ServerMessage{
		{RequestId: 2, Body: &pb.ServerMessage_Joined{Joined: &pb.Joined{RoomId: "X", PlayerId: 1}}},
		{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{Tick: 9, Events: []*pb.RoomEvent{{Type: pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, PlayerId: 3}}}}},
		{Body: &pb.ServerMessage_Error{Error: &pb.Error{Code: pb.ErrorCode_ERROR_CODE_ROOM_FULL, Message: "full"}}},
		{Body: &pb.ServerMessage_Frame{Frame: &pb.Frame{Tick: 4, Seq: 2, InputLeadUs: proto.Int64(-7), InputSet: &pb.InputSet{Tick: 4, Inputs: []*pb.PlayerInput{
			{PlayerId: 1, Flag: pb.InputFlag_INPUT_FLAG_CLIENT, Payload: []byte{1}}, {PlayerId: 2, Flag: pb.InputFlag_INPUT_FLAG_NOT_PRESENT}}}}}},
	} {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m ServerMessage
		err := ParseServerMessage(b, &m)
		var ref pb.ServerMessage
		if proto.Unmarshal(b, &ref) != nil {
			return
		}
		require.NoError(t, err)
		require.Equal(t, ref.GetRequestId(), m.RequestID)
		if fr := ref.GetFrame(); fr != nil {
			require.Equal(t, BodyFrame, m.Body)
			require.Equal(t, fr.GetTick(), m.Tick)
			require.Len(t, m.Deliveries, len(fr.GetDeliveries()))
			for i, d := range fr.GetDeliveries() {
				require.Equal(t, d.GetSender(), m.Deliveries[i].Sender)
				require.Equal(t, d.GetKind(), m.Deliveries[i].Kind)
				require.Equal(t, string(d.GetPayload()), string(m.Deliveries[i].Payload))
			}
			require.Len(t, m.Events, len(fr.GetEvents()))
			require.Equal(t, fr.InputLeadUs != nil, m.HasInputLead)
			require.Equal(t, fr.GetInputLeadUs(), m.InputLeadUs)
			require.Equal(t, fr.InputSet != nil, m.InputSet != nil)
			if m.InputSet != nil {
				// The last input_set field (the relay sends one; proto
				// would merge several) decodes as the generated code says.
				var v InputSetView
				require.NoError(t, ParseInputSet(m.InputSet, &v))
				var last pb.InputSet
				require.NoError(t, proto.Unmarshal(m.InputSet, &last))
				require.Equal(t, last.GetTick(), v.Tick)
				require.Len(t, v.Inputs, len(last.GetInputs()))
				for i, in := range last.GetInputs() {
					require.Equal(t, in.GetPlayerId(), v.Inputs[i].PlayerID)
					require.Equal(t, uint8(in.GetFlag()), v.Inputs[i].Flag)
					require.Equal(t, string(in.GetPayload()), string(v.Inputs[i].Payload))
				}
			}
		} else {
			require.NotEqual(t, BodyFrame, m.Body)
		}
	})
}
