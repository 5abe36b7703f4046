package wire

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// SendView is a decoded Send. Payload borrows from the parsed buffer.
type SendView struct {
	Payload    []byte
	Kind       uint32
	Targets    []uint32
	Echo       bool
	LatestOnly bool
	Seq        uint64 // per-seat input sequence (0: none)
}

// ClientMessage is a decoded ClientMessage envelope. Only Send and Input
// (and the envelope's ack) are decoded field by field; for the other bodies
// (rare: Join, Leave, Ping, Authenticate, Resume, Snapshot) callers
// unmarshal the whole envelope with the generated code.
//
// A ClientMessage may be reused across calls to ParseClientMessage; its
// Targets slice keeps its capacity, so steady-state parsing does not allocate.
type ClientMessage struct {
	RequestID uint32
	// Ack is the highest Frame.seq the client holds (0: none).
	Ack   uint64
	Body  Body
	Send  SendView
	Input InputView
	// Rare is the encoding of a rare body (Join, Leave, Ping, Authenticate,
	// Resume, Snapshot) when it is the message's only body field, so the
	// caller can decode just that body with the generated code (into a
	// reused message). nil otherwise: with several body fields the
	// generated code's merging rules apply, so decode the whole envelope.
	Rare []byte
}

// ParseClientMessage decodes b into m with the semantics of proto.Unmarshal:
// unknown fields are skipped, the last oneof field wins, and a repeated Send
// field is merged into the previous one. Views in m borrow from b.
func ParseClientMessage(b []byte, m *ClientMessage) error {
	m.RequestID = 0
	m.Ack = 0
	m.Body = BodyNone
	m.Rare = nil
	resetSend(&m.Send)
	resetInput(&m.Input)
	bodies := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("client message tag")
		}
		b = b[n:]
		switch {
		case num == clientRequestID && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "request_id")
			if err != nil {
				return err
			}
			m.RequestID = uint32(v)
			b = rest
		case num == clientSend && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "send")
			if err != nil {
				return err
			}
			if m.Body != BodySend {
				resetSend(&m.Send)
			}
			m.Body = BodySend
			bodies++
			if err := parseSend(v, &m.Send); err != nil {
				return err
			}
			b = rest
		case num == clientInput && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "input")
			if err != nil {
				return err
			}
			if m.Body != BodyInput {
				resetInput(&m.Input)
			}
			m.Body = BodyInput
			bodies++
			if err := parseInput(v, &m.Input); err != nil {
				return err
			}
			b = rest
		case num == clientAck && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "ack")
			if err != nil {
				return err
			}
			m.Ack = v
			b = rest
		case clientBody(num) != BodyNone && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "body")
			if err != nil {
				return err
			}
			// Validated here only as far as framing goes; the caller decodes
			// these rare bodies with the generated code.
			if err := skipFields(v); err != nil {
				return err
			}
			m.Body = clientBody(num)
			m.Rare = v
			bodies++
			b = rest
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return malformed("unknown field")
			}
			b = b[n:]
		}
	}
	if m.Body != BodySend {
		resetSend(&m.Send)
	}
	if m.Body != BodyInput {
		resetInput(&m.Input)
	}
	if bodies != 1 {
		m.Rare = nil
	}
	return nil
}

func resetSend(s *SendView) {
	s.Payload = nil
	s.Kind = 0
	s.Seq = 0
	s.Targets = s.Targets[:0]
	s.Echo = false
	s.LatestOnly = false
}

func parseSend(b []byte, s *SendView) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("send tag")
		}
		b = b[n:]
		switch {
		case num == sendPayload && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "send payload")
			if err != nil {
				return err
			}
			s.Payload = v
			b = rest
		case num == sendKind && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "send kind")
			if err != nil {
				return err
			}
			s.Kind = uint32(v)
			b = rest
		case num == sendTargets && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return malformed("send target")
			}
			if len(s.Targets) >= MaxTargets {
				return ErrTooManyTargets
			}
			s.Targets = append(s.Targets, uint32(v))
			b = b[n:]
		case num == sendTargets && typ == protowire.BytesType:
			packed, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return malformed("send targets")
			}
			for len(packed) > 0 {
				v, k := protowire.ConsumeVarint(packed)
				if k < 0 {
					return malformed("send targets")
				}
				if len(s.Targets) >= MaxTargets {
					return ErrTooManyTargets
				}
				s.Targets = append(s.Targets, uint32(v))
				packed = packed[k:]
			}
			b = b[n:]
		case num == sendSeq && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "send seq")
			if err != nil {
				return err
			}
			s.Seq = v
			b = rest
		case num == sendEcho && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "send echo")
			if err != nil {
				return err
			}
			s.Echo = v != 0
			b = rest
		case num == sendLatestOnly && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "send latest_only")
			if err != nil {
				return err
			}
			s.LatestOnly = v != 0
			b = rest
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return malformed("send field")
			}
			b = b[n:]
		}
	}
	return nil
}

// clientBody is the Body of a rare client body field (all but send), or
// BodyNone for other fields.
func clientBody(num protowire.Number) Body {
	switch num {
	case clientJoin:
		return BodyJoin
	case clientLeave:
		return BodyLeave
	case clientPing:
		return BodyPing
	case clientAuthenticate:
		return BodyAuthenticate
	case clientResume:
		return BodyResume
	case clientInput:
		return BodyInput
	case clientSnapshot:
		return BodySnapshot
	}
	return BodyNone
}

// skipFields checks that b is a well-formed sequence of fields.
func skipFields(b []byte) error {
	for len(b) > 0 {
		_, _, n := protowire.ConsumeField(b)
		if n < 0 {
			return malformed("field")
		}
		b = b[n:]
	}
	return nil
}

// AppendSend appends a ClientMessage envelope holding one Send to dst.
// Used by clients on their hot path; equivalent to marshalling the generated
// types.
func AppendSend(dst []byte, requestID uint32, ack uint64, s *SendView) []byte {
	body := sendBodySize(s)
	if requestID != 0 {
		dst = protowire.AppendTag(dst, clientRequestID, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(requestID))
	}
	if ack != 0 {
		// Before the body, where the generated code puts it (fields outside
		// the oneof first), so both encodings are byte for byte the same.
		dst = protowire.AppendTag(dst, clientAck, protowire.VarintType)
		dst = protowire.AppendVarint(dst, ack)
	}
	dst = protowire.AppendTag(dst, clientSend, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(body))
	if len(s.Payload) > 0 {
		dst = protowire.AppendTag(dst, sendPayload, protowire.BytesType)
		dst = protowire.AppendBytes(dst, s.Payload)
	}
	if s.Kind != 0 {
		dst = protowire.AppendTag(dst, sendKind, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(s.Kind))
	}
	if len(s.Targets) > 0 {
		dst = protowire.AppendTag(dst, sendTargets, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(packedSize(s.Targets)))
		for _, t := range s.Targets {
			dst = protowire.AppendVarint(dst, uint64(t))
		}
	}
	if s.Echo {
		dst = protowire.AppendTag(dst, sendEcho, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	if s.LatestOnly {
		dst = protowire.AppendTag(dst, sendLatestOnly, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	if s.Seq != 0 {
		dst = protowire.AppendTag(dst, sendSeq, protowire.VarintType)
		dst = protowire.AppendVarint(dst, s.Seq)
	}
	return dst
}

func packedSize(v []uint32) int {
	n := 0
	for _, t := range v {
		n += protowire.SizeVarint(uint64(t))
	}
	return n
}

func sendBodySize(s *SendView) int {
	n := 0
	if len(s.Payload) > 0 {
		n += 1 + protowire.SizeBytes(len(s.Payload))
	}
	if s.Kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(s.Kind))
	}
	if len(s.Targets) > 0 {
		n += 1 + protowire.SizeBytes(packedSize(s.Targets))
	}
	if s.Echo {
		n += 2
	}
	if s.LatestOnly {
		n += 2
	}
	if s.Seq != 0 {
		n += 1 + protowire.SizeVarint(s.Seq)
	}
	return n
}

// AppendAck appends a ClientMessage envelope holding only an ack: the
// highest Frame.seq the client holds. The relay does not answer it.
func AppendAck(dst []byte, ack uint64) []byte {
	dst = protowire.AppendTag(dst, clientAck, protowire.VarintType)
	return protowire.AppendVarint(dst, ack)
}
