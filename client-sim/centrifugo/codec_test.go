package centrifugo

import (
	"encoding/binary"
	"testing"

	"github.com/centrifugal/protocol"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The hand-written field numbers are the official schema's.
func TestFieldNumbers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		msg   proto.Message
		field string
		num   protowire.Number
	}{
		{&protocol.Command{}, "id", commandID},
		{&protocol.Command{}, "publish", commandPublish},
		{&protocol.PublishRequest{}, "channel", publishChannel},
		{&protocol.PublishRequest{}, "data", publishData},
		{&protocol.Reply{}, "id", replyID},
		{&protocol.Reply{}, "error", replyError},
		{&protocol.Reply{}, "push", replyPush},
		{&protocol.Reply{}, "connect", replyConnect},
		{&protocol.Reply{}, "subscribe", replySubscribe},
		{&protocol.Error{}, "code", errorCode},
		{&protocol.Error{}, "message", errorMessage},
		{&protocol.Push{}, "channel", pushChannel},
		{&protocol.Push{}, "pub", pushPub},
		{&protocol.Push{}, "unsubscribe", pushUnsubscribe},
		{&protocol.Push{}, "disconnect", pushDisconnect},
		{&protocol.Publication{}, "data", publicationData},
		{&protocol.Unsubscribe{}, "code", unsubscribeCode},
		{&protocol.Unsubscribe{}, "reason", unsubscribeWhy},
		{&protocol.Disconnect{}, "code", disconnectCode},
		{&protocol.Disconnect{}, "reason", disconnectReason},
	} {
		fd := c.msg.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(c.field))
		require.NotNil(t, fd, "%T.%s", c.msg, c.field)
		require.Equal(t, c.num, fd.Number(), "%T.%s", c.msg, c.field)
	}
}

// AppendPublish is what the official decoder reads as the same Command,
// byte for byte what the generated code would marshal.
func TestAppendPublish(t *testing.T) {
	t.Parallel()
	data := make([]byte, 64)
	for i := range data {
		data[i] = byte(i)
	}
	for _, c := range []struct {
		id      uint32
		channel string
		data    []byte
	}{
		{1, "room:sim-ab12-7", data},
		{1<<31 | 300, "room:x", data[:1]},
		{0, "", nil},
		{5, "c", make([]byte, 200)}, // a two-byte length
	} {
		var b []byte
		b = AppendPublish(b, c.id, c.channel, c.data)
		b = AppendPublish(b, c.id+1, c.channel, c.data) // streams: several per message

		want, err := (&protocol.Command{Id: c.id, Publish: &protocol.PublishRequest{Channel: c.channel, Data: c.data}}).MarshalVT()
		require.NoError(t, err)
		n, k := binary.Uvarint(b)
		require.Positive(t, k)
		require.Equal(t, want, b[k:k+int(n)], "id %d", c.id)

		dec := protocol.NewProtobufCommandDecoder(b)
		for i := range 2 {
			cmd, _ := dec.Decode()
			require.NotNil(t, cmd)
			require.Equal(t, c.id+uint32(i), cmd.Id)
			require.NotNil(t, cmd.Publish)
			require.Equal(t, c.channel, cmd.Publish.Channel)
			require.Equal(t, len(c.data), len(cmd.Publish.Data))
		}
	}
}

func stream(t *testing.T, replies ...*protocol.Reply) []byte {
	t.Helper()
	var b []byte
	for _, r := range replies {
		m, err := r.MarshalVT()
		require.NoError(t, err)
		b = protowire.AppendBytes(b, m)
	}
	return b
}

// nextReply reads what the official encoder writes.
func TestNextReply(t *testing.T) {
	t.Parallel()
	payload := []byte("0123456789abcdef-sender-and-filler")
	b := stream(t,
		&protocol.Reply{Push: &protocol.Push{Channel: "room:a", Pub: &protocol.Publication{Data: payload, Offset: 9,
			Info: &protocol.ClientInfo{Client: "x"}, Tags: map[string]string{"k": "v"}}}},
		&protocol.Reply{}, // ping
		&protocol.Reply{Id: 7, Publish: &protocol.PublishResult{}},
		&protocol.Reply{Id: 1 << 31, Error: &protocol.Error{Code: 103, Message: "permission denied", Temporary: true}},
		&protocol.Reply{Id: 1, Connect: &protocol.ConnectResult{Client: "abc", Ping: 25, Pong: true}},
		&protocol.Reply{Push: &protocol.Push{Channel: "room:a", Unsubscribe: &protocol.Unsubscribe{Code: 2500, Reason: "server unsubscribe"}}},
		&protocol.Reply{Push: &protocol.Push{Channel: "room:a", Join: &protocol.Join{Info: &protocol.ClientInfo{User: "u"}}}},
		&protocol.Reply{Push: &protocol.Push{Disconnect: &protocol.Disconnect{Code: 3001, Reason: "shutdown"}}},
	)
	var r replyView
	var err error
	want := []func(){
		func() {
			require.Equal(t, replyPublication, r.Kind)
			require.Equal(t, "room:a", string(r.Channel))
			require.Equal(t, payload, r.Data)
		},
		func() { require.Equal(t, replyPing, r.Kind) },
		func() {
			require.Equal(t, replyResult, r.Kind)
			require.Equal(t, uint32(7), r.ID)
			require.Zero(t, r.ErrCode)
		},
		func() {
			require.Equal(t, replyResult, r.Kind)
			require.Equal(t, uint32(1<<31), r.ID)
			require.Equal(t, uint32(103), r.ErrCode)
			require.Equal(t, "permission denied", string(r.ErrMsg))
		},
		func() {
			require.Equal(t, replyResult, r.Kind)
			var full protocol.Reply
			require.NoError(t, full.UnmarshalVT(r.Raw))
			require.Equal(t, "abc", full.Connect.Client)
		},
		func() {
			require.Equal(t, replyUnsubscribe, r.Kind)
			require.Equal(t, uint32(2500), r.Code)
			require.Equal(t, "server unsubscribe", string(r.Reason))
		},
		func() { require.Equal(t, replyOtherPush, r.Kind) },
		func() {
			require.Equal(t, replyDisconnect, r.Kind)
			require.Equal(t, uint32(3001), r.Code)
		},
	}
	for i, check := range want {
		b, err = nextReply(b, &r)
		require.NoError(t, err, "reply %d", i)
		check()
	}
	require.Empty(t, b)

	for _, bad := range [][]byte{
		{0x80},             // a length that does not end
		{5, 1, 2},          // longer than the message
		{2, 0x0a, 0x05},    // id... of a bytes field past the end
		{3, 0x22, 0x01, 0}, // a push of an unfinished tag? 0x22 = field 4 bytes len 1: body {0} is tag 0
	} {
		_, err := nextReply(bad, &r)
		require.ErrorIs(t, err, ErrMalformed, "% x", bad)
	}
}

func TestCodecAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are checked in the full run")
	}
	payload := make([]byte, 64)
	buf := make([]byte, 0, 256)
	msg := stream(t,
		&protocol.Reply{Push: &protocol.Push{Channel: "room:a", Pub: &protocol.Publication{Data: payload}}},
		&protocol.Reply{Id: 1 << 31, Publish: &protocol.PublishResult{}},
	)
	var r replyView
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendPublish(buf[:0], 1<<31|5, "room:sim-ab12-7", payload)
		b := msg
		for len(b) > 0 {
			b, _ = nextReply(b, &r)
		}
	})
	require.Zero(t, allocs)
}

func BenchmarkAppendPublish(b *testing.B) {
	payload := make([]byte, 64)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPublish(buf[:0], 1<<31|5, "room:sim-ab12-7", payload)
	}
}

func BenchmarkNextReplyPublication(b *testing.B) {
	m, _ := (&protocol.Reply{Push: &protocol.Push{Channel: "room:sim-ab12-7", Pub: &protocol.Publication{Data: make([]byte, 64)}}}).MarshalVT()
	msg := protowire.AppendBytes(nil, m)
	var r replyView
	b.ReportAllocs()
	for b.Loop() {
		_, _ = nextReply(msg, &r)
	}
}
