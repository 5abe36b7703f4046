package wire

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// DeliverySize is the encoded size of one Delivery as a Frame.deliveries
// record: tag, length and body.
func DeliverySize(sender, kind uint32, payloadLen int) int {
	body := deliveryBodySize(sender, kind, payloadLen)
	return 1 + protowire.SizeVarint(uint64(body)) + body
}

func deliveryBodySize(sender, kind uint32, payloadLen int) int {
	n := 0
	if sender != 0 {
		n += 1 + protowire.SizeVarint(uint64(sender))
	}
	if kind != 0 {
		n += 1 + protowire.SizeVarint(uint64(kind))
	}
	if payloadLen > 0 {
		n += 1 + protowire.SizeBytes(payloadLen)
	}
	return n
}

// AppendDelivery appends one Delivery encoded as a Frame.deliveries record
// (tag, length, body). The server encodes each relayed message once with it and
// then copies the record into the frame of every recipient.
func AppendDelivery(dst []byte, sender, kind uint32, payload []byte) []byte {
	dst = AppendDeliveryHeader(dst, sender, kind, len(payload))
	return append(dst, payload...)
}

// MaxDeliveryHeader is the most bytes AppendDeliveryHeader appends: each of
// its tags takes one byte and each varint at most five.
const MaxDeliveryHeader = 4 * (1 + binary.MaxVarintLen32)

// AppendDeliveryHeader appends what AppendDelivery appends before the
// payload bytes: the record's tag and length, the sender and kind fields,
// and the payload's tag and length (none for an empty payload). The payload
// field is the Delivery's last, so a header written just in front of a
// payload already in place makes the whole record without copying the
// payload again.
func AppendDeliveryHeader(dst []byte, sender, kind uint32, payloadLen int) []byte {
	dst = protowire.AppendTag(dst, frameDeliveries, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(deliveryBodySize(sender, kind, payloadLen)))
	if sender != 0 {
		dst = protowire.AppendTag(dst, deliverySender, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(sender))
	}
	if kind != 0 {
		dst = protowire.AppendTag(dst, deliveryKind, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(kind))
	}
	if payloadLen > 0 {
		dst = protowire.AppendTag(dst, deliveryPayload, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(payloadLen))
	}
	return dst
}

// AppendEventRecord wraps an encoded RoomEvent as a Frame.events record.
func AppendEventRecord(dst []byte, event []byte) []byte {
	dst = protowire.AppendTag(dst, frameEvents, protowire.BytesType)
	return protowire.AppendBytes(dst, event)
}

// FrameSize is the encoded size of a ServerMessage holding one Frame of the
// given tick and seat sequence number (0: none) whose delivery and event
// records take recordsLen bytes.
func FrameSize(tick, seq uint64, recordsLen int) int {
	body := frameBodySize(tick, seq, recordsLen)
	return 1 + protowire.SizeVarint(uint64(body)) + body
}

func frameBodySize(tick, seq uint64, recordsLen int) int {
	n := recordsLen
	if tick != 0 {
		n += 1 + protowire.SizeVarint(tick)
	}
	if seq != 0 {
		n += 1 + protowire.SizeVarint(seq)
	}
	return n
}

// AppendFrameStart appends the start of a ServerMessage holding one Frame:
// the envelope's frame tag and length, and the tick. The caller must then
// append exactly recordsLen bytes of Delivery and RoomEvent records
// (AppendDelivery, AppendEventRecord) and finish with AppendFrameEnd(seq)
// (the same seq) to complete the message.
func AppendFrameStart(dst []byte, tick, seq uint64, recordsLen int) []byte {
	dst = protowire.AppendTag(dst, serverFrame, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(frameBodySize(tick, seq, recordsLen)))
	if tick != 0 {
		dst = protowire.AppendTag(dst, frameTick, protowire.VarintType)
		dst = protowire.AppendVarint(dst, tick)
	}
	return dst
}

// AppendFrameEnd ends a Frame begun with AppendFrameStart: its seq field
// (after the records, in field-number order like the generated code).
func AppendFrameEnd(dst []byte, seq uint64) []byte {
	if seq != 0 {
		dst = protowire.AppendTag(dst, frameSeq, protowire.VarintType)
		dst = protowire.AppendVarint(dst, seq)
	}
	return dst
}

// DeliveryView is one decoded Delivery; Payload borrows from the parsed buffer.
type DeliveryView struct {
	Sender  uint32
	Kind    uint32
	Payload []byte
}

// ServerMessage is a decoded ServerMessage envelope. Frames are decoded field
// by field (deliveries as views, events as raw RoomEvent encodings); other
// bodies only have Body set, and callers unmarshal the envelope with the
// generated code. A ServerMessage may be reused across calls; its slices keep
// their capacity.
type ServerMessage struct {
	RequestID  uint32
	Body       Body
	Tick       uint64
	Seq        uint64 // the seat's frame sequence number (0: none)
	Deliveries []DeliveryView
	Events     [][]byte
	// InputSet is the encoded InputSet of a lockstep Frame (nil: none);
	// InputLeadUs and HasInputLead its input_lead_us.
	InputSet     []byte
	InputLeadUs  int64
	HasInputLead bool
}

// ParseServerMessage decodes b into m with the semantics of proto.Unmarshal
// (last oneof field wins; repeated Frame fields merge). Views borrow from b.
func ParseServerMessage(b []byte, m *ServerMessage) error {
	m.RequestID = 0
	m.Body = BodyNone
	resetFrame(m)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("server message tag")
		}
		b = b[n:]
		switch {
		case num == serverRequestID && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "request_id")
			if err != nil {
				return err
			}
			m.RequestID = uint32(v)
			b = rest
		case num == serverFrame && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "frame")
			if err != nil {
				return err
			}
			if m.Body != BodyFrame {
				resetFrame(m)
			}
			m.Body = BodyFrame
			if err := parseFrame(v, m); err != nil {
				return err
			}
			b = rest
		case num >= serverJoined && num <= serverResumed && num != serverFrame && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "body")
			if err != nil {
				return err
			}
			if err := skipFields(v); err != nil {
				return err
			}
			m.Body = serverBody(num)
			b = rest
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return malformed("unknown field")
			}
			b = b[n:]
		}
	}
	if m.Body != BodyFrame {
		resetFrame(m)
	}
	return nil
}

func serverBody(num protowire.Number) Body {
	switch num {
	case serverJoined:
		return BodyJoined
	case serverPong:
		return BodyPong
	case serverError:
		return BodyError
	case serverAuthenticated:
		return BodyAuthenticated
	case serverResumed:
		return BodyResumed
	default:
		return BodyLeft
	}
}

func resetFrame(m *ServerMessage) {
	m.Tick = 0
	m.Seq = 0
	m.InputSet = nil
	m.InputLeadUs, m.HasInputLead = 0, false
	m.Deliveries = m.Deliveries[:0]
	m.Events = m.Events[:0]
}

func parseFrame(b []byte, m *ServerMessage) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("frame tag")
		}
		b = b[n:]
		switch {
		case num == frameTick && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "frame tick")
			if err != nil {
				return err
			}
			m.Tick = v
			b = rest
		case num == frameSeq && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "frame seq")
			if err != nil {
				return err
			}
			m.Seq = v
			b = rest
		case num == frameInputSet && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "input set")
			if err != nil {
				return err
			}
			m.InputSet = v
			b = rest
		case num == frameInputLead && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "input lead")
			if err != nil {
				return err
			}
			m.InputLeadUs, m.HasInputLead = protowire.DecodeZigZag(v), true
			b = rest
		case num == frameDeliveries && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "delivery")
			if err != nil {
				return err
			}
			d, err := parseDelivery(v)
			if err != nil {
				return err
			}
			m.Deliveries = append(m.Deliveries, d)
			b = rest
		case num == frameEvents && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "event")
			if err != nil {
				return err
			}
			if err := skipFields(v); err != nil {
				return err
			}
			m.Events = append(m.Events, v)
			b = rest
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return malformed("frame field")
			}
			b = b[n:]
		}
	}
	return nil
}

func parseDelivery(b []byte) (DeliveryView, error) {
	var d DeliveryView
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return d, malformed("delivery tag")
		}
		b = b[n:]
		switch {
		case num == deliverySender && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "delivery sender")
			if err != nil {
				return d, err
			}
			d.Sender = uint32(v)
			b = rest
		case num == deliveryKind && typ == protowire.VarintType:
			v, rest, err := takeVarint(b, "delivery kind")
			if err != nil {
				return d, err
			}
			d.Kind = uint32(v)
			b = rest
		case num == deliveryPayload && typ == protowire.BytesType:
			v, rest, err := takeBytes(b, "delivery payload")
			if err != nil {
				return d, err
			}
			d.Payload = v
			b = rest
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return d, malformed("delivery field")
			}
			b = b[n:]
		}
	}
	return d, nil
}
