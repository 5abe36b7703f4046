package wire

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

func TestLockstepFieldNumbers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		msg  proto.Message
		name string
		want int
	}{
		{&pb.Input{}, "target_tick", int(inputTargetTick)},
		{&pb.Input{}, "seq", int(inputSeq)},
		{&pb.Input{}, "payload", int(inputPayload)},
		{&pb.Input{}, "checksum_tick", int(inputChecksumTick)},
		{&pb.Input{}, "checksum", int(inputChecksum)},
		{&pb.InputSet{}, "tick", int(inputSetTick)},
		{&pb.InputSet{}, "inputs", int(inputSetInputs)},
		{&pb.PlayerInput{}, "player_id", int(playerInputID)},
		{&pb.PlayerInput{}, "flag", int(playerInputFlag)},
		{&pb.PlayerInput{}, "payload", int(playerInputPayload)},
		{&pb.Frame{}, "input_set", int(frameInputSet)},
		{&pb.Frame{}, "input_lead_us", int(frameInputLead)},
		{&pb.Frame{}, "seq", int(frameSeq)},
	} {
		require.EqualValues(t, c.want, fieldNumber(t, c.msg, c.name), "%T.%s", c.msg, c.name)
	}
}

func TestAppendInputMatchesGenerated(t *testing.T) {
	t.Parallel()
	for _, v := range []InputView{
		{},
		{TargetTick: 5, Payload: []byte{1, 2, 3}},
		{TargetTick: 1 << 40, Seq: 9, Payload: make([]byte, 200), ChecksumTick: 3, Checksum: 0xdeadbeefcafe},
	} {
		for _, ack := range []uint64{0, 77} {
			got := AppendInput(nil, 4, ack, &v)
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.ClientMessage{
				RequestId: 4, Ack: ack,
				Body: &pb.ClientMessage_Input{Input: &pb.Input{
					TargetTick: v.TargetTick, Seq: v.Seq, Payload: v.Payload, ChecksumTick: v.ChecksumTick, Checksum: v.Checksum,
				}},
			})
			require.NoError(t, err)
			require.Equal(t, want, got)
			var m ClientMessage
			require.NoError(t, ParseClientMessage(got, &m))
			require.Equal(t, BodyInput, m.Body)
			require.Equal(t, ack, m.Ack)
			require.Equal(t, v.TargetTick, m.Input.TargetTick)
			require.Equal(t, v.Seq, m.Input.Seq)
			require.Equal(t, len(v.Payload), len(m.Input.Payload))
			require.Equal(t, v.ChecksumTick, m.Input.ChecksumTick)
			require.Equal(t, v.Checksum, m.Input.Checksum)
		}
	}
}

// A lockstep frame as the room builds it (events, then the shared InputSet
// record, the lead, the seq) decodes with the generated code to the same
// values.
func TestInputSetFrameMatchesGenerated(t *testing.T) {
	t.Parallel()
	inputs := []*pb.PlayerInput{
		{PlayerId: 1, Flag: pb.InputFlag_INPUT_FLAG_CLIENT, Payload: []byte("ab")},
		{PlayerId: 2, Flag: pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER},
		{PlayerId: 300, Flag: pb.InputFlag_INPUT_FLAG_NOT_PRESENT},
	}
	for _, tick := range []uint64{1, 1 << 33} {
		for _, lead := range []int64{0, -1500, 1 << 40} {
			entries := 0
			for _, in := range inputs {
				entries += PlayerInputSize(in.PlayerId, uint8(in.Flag), len(in.Payload))
			}
			rec := AppendInputSetStart(nil, tick, entries)
			for _, in := range inputs {
				rec = AppendPlayerInput(rec, in.PlayerId, uint8(in.Flag), in.Payload)
			}
			require.Len(t, rec, InputSetRecordSize(tick, entries))
			rec = AppendInputLead(rec, lead)
			b := AppendFrameStart(nil, tick, 7, len(rec))
			b = append(b, rec...)
			b = AppendFrameEnd(b, 7)
			require.Len(t, b, FrameSize(tick, 7, len(rec)))

			var ref pb.ServerMessage
			require.NoError(t, proto.Unmarshal(b, &ref))
			f := ref.GetFrame()
			require.Equal(t, tick, f.GetTick())
			require.Equal(t, uint64(7), f.GetSeq())
			require.Equal(t, lead, f.GetInputLeadUs())
			require.True(t, proto.Equal(&pb.InputSet{Tick: tick, Inputs: inputs}, f.GetInputSet()))

			var m ServerMessage
			require.NoError(t, ParseServerMessage(b, &m))
			require.True(t, m.HasInputLead)
			require.Equal(t, lead, m.InputLeadUs)
			var v InputSetView
			require.NoError(t, ParseInputSet(m.InputSet, &v))
			require.Equal(t, tick, v.Tick)
			require.Len(t, v.Inputs, len(inputs))
			for i, in := range inputs {
				require.Equal(t, in.PlayerId, v.Inputs[i].PlayerID)
				require.EqualValues(t, in.Flag, v.Inputs[i].Flag)
				require.Equal(t, string(in.Payload), string(v.Inputs[i].Payload))
			}
		}
	}
}

func TestLockstepHotPathsDoNotAllocate(t *testing.T) {
	payload := make([]byte, 16)
	msg := AppendInput(nil, 0, 3, &InputView{TargetTick: 99, Seq: 4, Payload: payload})
	var cm ClientMessage
	buf := make([]byte, 0, 1024)
	var v InputSetView
	set := AppendInputSetStart(nil, 9, 2*PlayerInputSize(1, 1, 16))
	set = AppendPlayerInput(set, 1, 1, payload)
	set = AppendPlayerInput(set, 2, 1, payload)
	require.NoError(t, ParseInputSet(set[2:], &v)) // warm the Inputs capacity
	allocs := testing.AllocsPerRun(200, func() {
		_ = ParseClientMessage(msg, &cm)
		b := AppendInput(buf[:0], 0, 3, &cm.Input)
		_ = b
		_ = ParseInputSet(set[2:], &v)
	})
	require.Zero(t, allocs)
}

func TestParseInputSetRejectsMalformed(t *testing.T) {
	t.Parallel()
	var v InputSetView
	for _, b := range [][]byte{{0x12}, {0x12, 0x05, 0x08}, {0x08}} {
		require.ErrorIs(t, ParseInputSet(b, &v), ErrMalformed, "%x", b)
	}
	var m ClientMessage
	require.ErrorIs(t, ParseClientMessage([]byte{0x42, 0x02, 0x29, 0x01}, &m), ErrMalformed)
}
