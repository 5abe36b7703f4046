package wire

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Lockstep rooms: every client sends an Input per tick and every member
// receives one InputSet per tick, so both are on the hot path and get
// hand-written, allocation-free codecs here.

// Field numbers of the lockstep messages (checked by TestFieldNumbers).
const (
	inputTargetTick   protowire.Number = 1
	inputSeq          protowire.Number = 2
	inputPayload      protowire.Number = 3
	inputChecksumTick protowire.Number = 4
	inputChecksum     protowire.Number = 5

	inputSetTick   protowire.Number = 1
	inputSetInputs protowire.Number = 2

	playerInputID      protowire.Number = 1
	playerInputFlag    protowire.Number = 2
	playerInputPayload protowire.Number = 3
)

// InputView is a decoded Input. Payload borrows from the parsed buffer.
type InputView struct {
	TargetTick   uint64
	Seq          uint64
	Payload      []byte
	ChecksumTick uint64 // 0: no checksum
	Checksum     uint64
}

func resetInput(v *InputView) { *v = InputView{} }

// parseInput decodes an Input body into v, merging like proto.Unmarshal.
func parseInput(b []byte, v *InputView) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("input tag")
		}
		b = b[n:]
		switch {
		case num == inputTargetTick && typ == protowire.VarintType:
			x, rest, err := takeVarint(b, "input target_tick")
			if err != nil {
				return err
			}
			v.TargetTick, b = x, rest
		case num == inputSeq && typ == protowire.VarintType:
			x, rest, err := takeVarint(b, "input seq")
			if err != nil {
				return err
			}
			v.Seq, b = x, rest
		case num == inputPayload && typ == protowire.BytesType:
			x, rest, err := takeBytes(b, "input payload")
			if err != nil {
				return err
			}
			v.Payload, b = x, rest
		case num == inputChecksumTick && typ == protowire.VarintType:
			x, rest, err := takeVarint(b, "input checksum_tick")
			if err != nil {
				return err
			}
			v.ChecksumTick, b = x, rest
		case num == inputChecksum && typ == protowire.Fixed64Type:
			x, k := protowire.ConsumeFixed64(b)
			if k < 0 {
				return malformed("input checksum")
			}
			v.Checksum, b = x, b[k:]
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return malformed("input field")
			}
			b = b[k:]
		}
	}
	return nil
}

func inputBodySize(v *InputView) int {
	n := 0
	if v.TargetTick != 0 {
		n += 1 + protowire.SizeVarint(v.TargetTick)
	}
	if v.Seq != 0 {
		n += 1 + protowire.SizeVarint(v.Seq)
	}
	if len(v.Payload) > 0 {
		n += 1 + protowire.SizeBytes(len(v.Payload))
	}
	if v.ChecksumTick != 0 {
		n += 1 + protowire.SizeVarint(v.ChecksumTick)
	}
	if v.Checksum != 0 {
		n += 1 + 8
	}
	return n
}

// AppendInput appends a ClientMessage envelope holding one Input to dst,
// byte for byte what the generated code produces.
func AppendInput(dst []byte, requestID uint32, ack uint64, v *InputView) []byte {
	if requestID != 0 {
		dst = protowire.AppendTag(dst, clientRequestID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(requestID))
	}
	if ack != 0 {
		dst = protowire.AppendTag(dst, clientAck, protowire.VarintType)
		dst = protowire.AppendVarint(dst, ack)
	}
	dst = protowire.AppendTag(dst, clientInput, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(inputBodySize(v)))
	if v.TargetTick != 0 {
		dst = protowire.AppendTag(dst, inputTargetTick, protowire.VarintType)
		dst = protowire.AppendVarint(dst, v.TargetTick)
	}
	if v.Seq != 0 {
		dst = protowire.AppendTag(dst, inputSeq, protowire.VarintType)
		dst = protowire.AppendVarint(dst, v.Seq)
	}
	if len(v.Payload) > 0 {
		dst = protowire.AppendTag(dst, inputPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, v.Payload)
	}
	if v.ChecksumTick != 0 {
		dst = protowire.AppendTag(dst, inputChecksumTick, protowire.VarintType)
		dst = protowire.AppendVarint(dst, v.ChecksumTick)
	}
	if v.Checksum != 0 {
		dst = protowire.AppendTag(dst, inputChecksum, protowire.Fixed64Type)
		dst = protowire.AppendFixed64(dst, v.Checksum)
	}
	return dst
}

// PlayerInputSize is the encoded size of one PlayerInput as an
// InputSet.inputs entry: tag, length and body.
func PlayerInputSize(player uint32, flag uint8, payloadLen int) int {
	body := playerInputBodySize(player, flag, payloadLen)
	return 1 + protowire.SizeVarint(uint64(body)) + body
}

func playerInputBodySize(player uint32, flag uint8, payloadLen int) int {
	n := 0
	if player != 0 {
		n += 1 + protowire.SizeVarint(uint64(player))
	}
	if flag != 0 {
		n += 1 + protowire.SizeVarint(uint64(flag))
	}
	if payloadLen > 0 {
		n += 1 + protowire.SizeBytes(payloadLen)
	}
	return n
}

// AppendPlayerInput appends one PlayerInput entry of an InputSet.
func AppendPlayerInput(dst []byte, player uint32, flag uint8, payload []byte) []byte {
	dst = protowire.AppendTag(dst, inputSetInputs, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(playerInputBodySize(player, flag, len(payload))))
	if player != 0 {
		dst = protowire.AppendTag(dst, playerInputID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(player))
	}
	if flag != 0 {
		dst = protowire.AppendTag(dst, playerInputFlag, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(flag))
	}
	if len(payload) > 0 {
		dst = protowire.AppendTag(dst, playerInputPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, payload)
	}
	return dst
}

// AppendInputSetStart appends the start of a Frame.input_set record of
// tick: the tag, the length and the tick. The caller then appends exactly
// entriesLen bytes of AppendPlayerInput entries. The record is the same
// bytes for every member, so the room encodes it once per tick.
func AppendInputSetStart(dst []byte, tick uint64, entriesLen int) []byte {
	dst = protowire.AppendTag(dst, frameInputSet, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(inputSetBodySize(tick, entriesLen)))
	if tick != 0 {
		dst = protowire.AppendTag(dst, inputSetTick, protowire.VarintType)
		dst = protowire.AppendVarint(dst, tick)
	}
	return dst
}

// InputSetRecordSize is the size of a Frame.input_set record whose
// entries take entriesLen bytes.
func InputSetRecordSize(tick uint64, entriesLen int) int {
	body := inputSetBodySize(tick, entriesLen)
	return 1 + protowire.SizeVarint(uint64(body)) + body
}

func inputSetBodySize(tick uint64, entriesLen int) int {
	n := entriesLen
	if tick != 0 {
		n += 1 + protowire.SizeVarint(tick)
	}
	return n
}

// AppendInputLead appends a Frame.input_lead_us record (always present,
// zero included: absence means the player sent no input).
func AppendInputLead(dst []byte, leadUs int64) []byte {
	dst = protowire.AppendTag(dst, frameInputLead, protowire.VarintType)
	return protowire.AppendVarint(dst, protowire.EncodeZigZag(leadUs))
}

// PlayerInputView is one decoded PlayerInput; Payload borrows from the
// parsed buffer.
type PlayerInputView struct {
	PlayerID uint32
	Flag     uint8
	Payload  []byte
}

// InputSetView is a decoded InputSet. It may be reused across calls; its
// Inputs slice keeps its capacity.
type InputSetView struct {
	Tick   uint64
	Inputs []PlayerInputView
}

// ParseInputSet decodes an encoded InputSet (ServerMessage.InputSet) into v.
func ParseInputSet(b []byte, v *InputSetView) error {
	v.Tick = 0
	v.Inputs = v.Inputs[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("input set tag")
		}
		b = b[n:]
		switch {
		case num == inputSetTick && typ == protowire.VarintType:
			x, rest, err := takeVarint(b, "input set tick")
			if err != nil {
				return err
			}
			v.Tick, b = x, rest
		case num == inputSetInputs && typ == protowire.BytesType:
			x, rest, err := takeBytes(b, "player input")
			if err != nil {
				return err
			}
			pi, err := parsePlayerInput(x)
			if err != nil {
				return err
			}
			v.Inputs = append(v.Inputs, pi)
			b = rest
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return malformed("input set field")
			}
			b = b[k:]
		}
	}
	return nil
}

func parsePlayerInput(b []byte) (PlayerInputView, error) {
	var p PlayerInputView
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return p, malformed("player input tag")
		}
		b = b[n:]
		switch {
		case num == playerInputID && typ == protowire.VarintType:
			x, rest, err := takeVarint(b, "player input id")
			if err != nil {
				return p, err
			}
			p.PlayerID, b = uint32(x), rest
		case num == playerInputFlag && typ == protowire.VarintType:
			x, rest, err := takeVarint(b, "player input flag")
			if err != nil {
				return p, err
			}
			p.Flag, b = uint8(x), rest
		case num == playerInputPayload && typ == protowire.BytesType:
			x, rest, err := takeBytes(b, "player input payload")
			if err != nil {
				return p, err
			}
			p.Payload, b = x, rest
		default:
			k := protowire.ConsumeFieldValue(num, typ, b)
			if k < 0 {
				return p, malformed("player input field")
			}
			b = b[k:]
		}
	}
	return p, nil
}
