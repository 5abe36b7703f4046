package relay

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// Every read in these tests is bounded by this deadline, so a missing
// message fails the test instead of hanging it.
const readTimeout = 5 * time.Second

func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	srv, err := New(cfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		require.NoError(t, srv.Close())
	})
	return srv, "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
}

// testClient is a thin gorilla client speaking the protocol with the
// generated types: an implementation independent of client/.
type testClient struct {
	t  *testing.T
	ws *websocket.Conn
}

func dial(t *testing.T, url string) *testClient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.Close() })
	return &testClient{t: t, ws: ws}
}

func (c *testClient) send(m *pb.ClientMessage) {
	c.t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(c.t, err)
	require.NoError(c.t, c.ws.WriteMessage(websocket.BinaryMessage, b))
}

func (c *testClient) read() *pb.ServerMessage {
	c.t.Helper()
	require.NoError(c.t, c.ws.SetReadDeadline(time.Now().Add(readTimeout)))
	typ, b, err := c.ws.ReadMessage()
	require.NoError(c.t, err)
	require.Equal(c.t, websocket.BinaryMessage, typ)
	var m pb.ServerMessage
	require.NoError(c.t, proto.Unmarshal(b, &m))
	return &m
}

// readFrame skips nothing: the next message must be a Frame.
func (c *testClient) readFrame() *pb.Frame {
	c.t.Helper()
	m := c.read()
	require.NotNil(c.t, m.GetFrame(), "want a frame, got %v", m)
	return m.GetFrame()
}

func (c *testClient) join(id uint32, j *pb.Join) *pb.ServerMessage {
	c.t.Helper()
	c.send(&pb.ClientMessage{RequestId: id, Body: &pb.ClientMessage_Join{Join: j}})
	m := c.read()
	require.Equal(c.t, id, m.GetRequestId())
	return m
}

func (c *testClient) mustJoin(j *pb.Join) *pb.Joined {
	c.t.Helper()
	m := c.join(7, j)
	require.NotNil(c.t, m.GetJoined(), "want joined, got %v", m)
	return m.GetJoined()
}

func (c *testClient) sendPayload(payload string, targets []uint32, echo bool) {
	c.send(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{
		Payload: []byte(payload), Kind: 3, Targets: targets, Echo: echo,
	}}})
}

func requireError(t *testing.T, m *pb.ServerMessage, code pb.ErrorCode) {
	t.Helper()
	require.NotNil(t, m.GetError(), "want error %v, got %v", code, m)
	require.Equal(t, code, m.GetError().GetCode())
}

func TestJoinSendReceiveImmediate(t *testing.T) {
	t.Parallel()
	_, url := startServer(t, Config{})
	a, b, c := dial(t, url), dial(t, url), dial(t, url)

	ja := a.mustJoin(&pb.Join{PlayerMetadata: map[string]string{"name": "a"}})
	require.Len(t, ja.GetRoomId(), 6, "server-made room code")
	require.Equal(t, uint32(1), ja.GetPlayerId())
	require.Equal(t, uint32(1), ja.GetHostId())
	require.True(t, ja.GetImmediate())
	require.Equal(t, uint32(16), ja.GetMaxPlayers())

	jb := b.mustJoin(&pb.Join{RoomId: ja.GetRoomId(), PlayerMetadata: map[string]string{"name": "b"}})
	require.Equal(t, uint32(2), jb.GetPlayerId())
	require.Len(t, jb.GetMembers(), 2)
	require.Equal(t, "a", jb.GetMembers()[0].GetMetadata()["name"])

	ev := a.readFrame().GetEvents()
	require.Len(t, ev, 1)
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, ev[0].GetType())
	require.Equal(t, uint32(2), ev[0].GetPlayerId())
	require.Equal(t, "b", ev[0].GetMetadata()["name"])

	c.mustJoin(&pb.Join{RoomId: ja.GetRoomId()})
	require.Equal(t, uint32(3), a.readFrame().GetEvents()[0].GetPlayerId())
	require.Equal(t, uint32(3), b.readFrame().GetEvents()[0].GetPlayerId())

	// To all others: a and c get it, b (the sender) does not.
	b.sendPayload("hello", nil, false)
	fa, fc := a.readFrame(), c.readFrame()
	for _, f := range []*pb.Frame{fa, fc} {
		require.Len(t, f.GetDeliveries(), 1)
		d := f.GetDeliveries()[0]
		require.Equal(t, uint32(2), d.GetSender())
		require.Equal(t, uint32(3), d.GetKind())
		require.Equal(t, "hello", string(d.GetPayload()))
	}

	// To one target, with echo: only c and the sender b.
	b.sendPayload("psst", []uint32{3}, true)
	require.Equal(t, "psst", string(c.readFrame().GetDeliveries()[0].GetPayload()))
	fb := b.readFrame()
	require.Equal(t, "psst", string(fb.GetDeliveries()[0].GetPayload()))
	// a must not have received it: the next thing a sees is the next send.
	c.sendPayload("next", nil, false)
	fa2 := a.readFrame()
	require.Equal(t, "next", string(fa2.GetDeliveries()[0].GetPayload()))
	require.Greater(t, fa2.GetTick(), fa.GetTick(), "ticks increase")
}

func TestTickModeBatchesOneFramePerTick(t *testing.T) {
	t.Parallel()
	_, url := startServer(t, Config{TickRate: 20})
	a, b := dial(t, url), dial(t, url)
	ja := a.mustJoin(&pb.Join{RoomId: "batch", CreateIfMissing: true})
	require.Equal(t, uint32(20), ja.GetTickRate())
	require.False(t, ja.GetImmediate())
	b.mustJoin(&pb.Join{RoomId: "batch"})
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_JOINED, a.readFrame().GetEvents()[0].GetType())

	const n = 50
	for i := range n {
		b.sendPayload(string(rune('a'+i%26)), nil, false)
	}
	// All n deliveries arrive, in send order, in fewer frames than messages
	// (50 sends take far less than a 50 ms tick), with increasing ticks.
	var got []string
	var frames int
	var lastTick uint64
	for len(got) < n {
		f := a.readFrame()
		frames++
		require.Greater(t, f.GetTick(), lastTick)
		lastTick = f.GetTick()
		for _, d := range f.GetDeliveries() {
			got = append(got, string(d.GetPayload()))
		}
	}
	require.Len(t, got, n)
	for i, p := range got {
		require.Equal(t, string(rune('a'+i%26)), p)
	}
	require.Less(t, frames, n)
}

func TestRoomOptionTickRate(t *testing.T) {
	t.Parallel()
	_, url := startServer(t, Config{})
	a := dial(t, url)
	j := a.mustJoin(&pb.Join{RoomId: "r1", CreateIfMissing: true, Options: &pb.RoomOptions{
		TickRate: 30, MaxPlayers: 100, Metadata: map[string]string{"map": "dust"},
	}})
	require.Equal(t, uint32(30), j.GetTickRate())
	require.Equal(t, uint32(100), j.GetMaxPlayers())
	require.Equal(t, "dust", j.GetRoomMetadata()["map"])

	b := dial(t, url)
	m := b.join(1, &pb.Join{RoomId: "r2", CreateIfMissing: true, Options: &pb.RoomOptions{TickRate: 1000}})
	requireError(t, m, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
	m = b.join(2, &pb.Join{RoomId: "bad room!", CreateIfMissing: true})
	requireError(t, m, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT)
}

func TestPresenceLeaveAndDisconnect(t *testing.T) {
	t.Parallel()
	srv, url := startServer(t, Config{})
	a, b, c := dial(t, url), dial(t, url), dial(t, url)
	a.mustJoin(&pb.Join{RoomId: "p", CreateIfMissing: true})
	b.mustJoin(&pb.Join{RoomId: "p"})
	a.readFrame()
	c.mustJoin(&pb.Join{RoomId: "p"})
	a.readFrame()
	b.readFrame()

	// The host leaves: the others see PLAYER_LEFT then HOST_CHANGED to b.
	a.send(&pb.ClientMessage{RequestId: 9, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	left := a.read()
	require.Equal(t, uint32(9), left.GetRequestId())
	require.Equal(t, "p", left.GetLeft().GetRoomId())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, left.GetLeft().GetReason())
	for _, cl := range []*testClient{b, c} {
		ev := cl.readFrame().GetEvents()
		require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, ev[0].GetType())
		require.Equal(t, uint32(1), ev[0].GetPlayerId())
		require.Equal(t, pb.LeaveReason_LEAVE_REASON_LEFT, ev[0].GetReason())
		ev = cl.readFrame().GetEvents()
		require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_HOST_CHANGED, ev[0].GetType())
		require.Equal(t, uint32(2), ev[0].GetPlayerId())
	}

	// c disconnects: b sees PLAYER_LEFT with reason DISCONNECTED.
	require.NoError(t, c.ws.Close())
	ev := b.readFrame().GetEvents()
	require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT, ev[0].GetType())
	require.Equal(t, uint32(3), ev[0].GetPlayerId())
	require.Equal(t, pb.LeaveReason_LEAVE_REASON_DISCONNECTED, ev[0].GetReason())

	// The last member leaving removes the room.
	b.send(&pb.ClientMessage{RequestId: 1, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	require.NotNil(t, b.read().GetLeft())
	require.Eventually(t, func() bool { return srv.Stats().Rooms == 0 }, readTimeout, 5*time.Millisecond)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	_, url := startServer(t, Config{})
	a, b, c := dial(t, url), dial(t, url), dial(t, url)

	requireError(t, a.join(1, &pb.Join{RoomId: "nope"}), pb.ErrorCode_ERROR_CODE_ROOM_NOT_FOUND)

	a.send(&pb.ClientMessage{RequestId: 2, Body: &pb.ClientMessage_Leave{Leave: &pb.Leave{}}})
	m := a.read()
	require.Equal(t, uint32(2), m.GetRequestId())
	requireError(t, m, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM)

	a.sendPayload("x", nil, false)
	requireError(t, a.read(), pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM)

	a.mustJoin(&pb.Join{RoomId: "small", CreateIfMissing: true, Options: &pb.RoomOptions{MaxPlayers: 2}})
	requireError(t, a.join(3, &pb.Join{RoomId: "other", CreateIfMissing: true}), pb.ErrorCode_ERROR_CODE_ALREADY_IN_ROOM)
	b.mustJoin(&pb.Join{RoomId: "small"})
	requireError(t, c.join(4, &pb.Join{RoomId: "small"}), pb.ErrorCode_ERROR_CODE_ROOM_FULL)

	// Garbage and an envelope without a body are refused, and the
	// connection stays usable.
	require.NoError(t, c.ws.WriteMessage(websocket.BinaryMessage, []byte{0xff, 0xff, 0xff}))
	requireError(t, c.read(), pb.ErrorCode_ERROR_CODE_BAD_MESSAGE)
	c.send(&pb.ClientMessage{RequestId: 5})
	requireError(t, c.read(), pb.ErrorCode_ERROR_CODE_BAD_MESSAGE)

	// A text message ends the connection with 1003.
	require.NoError(t, c.ws.WriteMessage(websocket.TextMessage, []byte("hi")))
	require.NoError(t, c.ws.SetReadDeadline(time.Now().Add(readTimeout)))
	_, _, err := c.ws.ReadMessage()
	require.True(t, websocket.IsCloseError(err, websocket.CloseUnsupportedData), "got %v", err)
}

func TestPing(t *testing.T) {
	t.Parallel()
	_, url := startServer(t, Config{TickRate: 10})
	a := dial(t, url)
	before := time.Now().UnixNano()
	a.send(&pb.ClientMessage{RequestId: 11, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{ClientTime: 42}}})
	m := a.read()
	require.Equal(t, uint32(11), m.GetRequestId())
	require.Equal(t, int64(42), m.GetPong().GetClientTime())
	require.GreaterOrEqual(t, m.GetPong().GetServerTime(), before)
	require.Zero(t, m.GetPong().GetTickRate(), "not in a room")

	a.mustJoin(&pb.Join{RoomId: "pp", CreateIfMissing: true})
	a.send(&pb.ClientMessage{RequestId: 12, Body: &pb.ClientMessage_Ping{Ping: &pb.Ping{}}})
	require.Equal(t, uint32(10), a.read().GetPong().GetTickRate())
}

func TestSlowConsumerIsDisconnected(t *testing.T) {
	t.Parallel()
	_, url := startServer(t, Config{SendQueue: 4, WriteTimeout: 200 * time.Millisecond, MaxMessageSize: 1 << 20})
	reader, stuck, sender := dial(t, url), dial(t, url), dial(t, url)
	reader.mustJoin(&pb.Join{RoomId: "slow", CreateIfMissing: true})
	stuck.mustJoin(&pb.Join{RoomId: "slow"})
	reader.readFrame()
	sender.mustJoin(&pb.Join{RoomId: "slow"})
	reader.readFrame()
	// stuck never reads again.

	big := strings.Repeat("x", 512<<10)
	msg, err := proto.Marshal(&pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{
		Payload: []byte(big), Targets: []uint32{2},
	}}})
	require.NoError(t, err)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		// Enough bytes to fill stuck's socket buffers and queue; stops as
		// soon as the server has given up on stuck.
		for range 200 {
			select {
			case <-stop:
				return
			default:
			}
			if sender.ws.WriteMessage(websocket.BinaryMessage, msg) != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-done }()
	// reader sees stuck leave as a slow consumer.
	for {
		f := reader.readFrame()
		if ev := f.GetEvents(); len(ev) > 0 && ev[0].GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT {
			require.Equal(t, uint32(2), ev[0].GetPlayerId())
			require.Equal(t, pb.LeaveReason_LEAVE_REASON_SLOW_CONSUMER, ev[0].GetReason())
			return
		}
	}
}
