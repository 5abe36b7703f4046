package chaos

import (
	"context"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// connWith builds a Conn as a reader would: the messages in order, then the
// Close (code >= 0) or a read error.
func connWith(persona, variant string, msgs []*pb.ServerMessage, closeCode int, readErr error) *Conn {
	c := newConn(persona, variant)
	for _, m := range msgs {
		c.answer(m)
	}
	if closeCode >= 0 {
		c.closed(closeCode, "reason")
	} else {
		c.endedBy(readErr)
	}
	c.finish(false)
	return c
}

func errMsg(code pb.ErrorCode, retry uint32) *pb.ServerMessage {
	return &pb.ServerMessage{Body: &pb.ServerMessage_Error{Error: &pb.Error{Code: code, RetryAfterMs: retry}}}
}

var (
	joined      = &pb.ServerMessage{RequestId: 1, Body: &pb.ServerMessage_Joined{Joined: &pb.Joined{PlayerId: 9}}}
	rateLimited = pb.ErrorCode_ERROR_CODE_RATE_LIMITED
)

// The Error sent with a Close is told apart from those before it: its
// retry hint is the close's, and it names the outcome.
func TestCloseErrorIsTheOneRightBeforeTheClose(t *testing.T) {
	t.Parallel()
	c := connWith("burst", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 30), errMsg(rateLimited, 12), errMsg(rateLimited, 0)}, 4003, nil)
	v := c.view()
	require.Equal(t, "error:rate_limited+close:4003", v.outcome())
	require.Equal(t, int64(12), v.retry.Min, "the hints that told the client to slow down")
	require.Equal(t, int64(30), v.retry.Max)
	require.Equal(t, int64(0), v.closeRetry, "the close's own hint")
	require.Equal(t, 3, v.errors[rateLimited])

	// A frame between the Error and the Close: the Close came alone.
	c = newConn("garbage", garbageAfter)
	c.answer(errMsg(pb.ErrorCode_ERROR_CODE_BAD_MESSAGE, 0))
	c.countFrame(1)
	c.closed(1002, "rsv bits set")
	v = c.view()
	require.Equal(t, "after-upgrade close:1002", v.outcome())
	require.False(t, v.closedWith(1002, pb.ErrorCode_ERROR_CODE_BAD_MESSAGE))
	require.True(t, v.closedWith(1002, pb.ErrorCode_ERROR_CODE_UNSPECIFIED))
}

func TestFinishSortsOutHowAConnectionEnded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err     error
		stopped bool
		want    end
	}{
		{io.EOF, false, endDropped},
		{syscall.ECONNRESET, true, endDropped}, // the relay's doing, whenever it came
		{os.ErrDeadlineExceeded, true, endUnfinished},
		{os.ErrDeadlineExceeded, false, endStuck},
		{nil, true, endUnfinished},
	} {
		c := newConn("trickle", "")
		if tc.err != nil {
			c.endedBy(tc.err)
		}
		c.finish(tc.stopped)
		require.Equal(t, tc.want, c.view().end, "%v stopped=%v", tc.err, tc.stopped)
	}
	// The first end recorded stays.
	c := newConn("trickle", "")
	c.closed(4004, "message read timeout")
	c.endedBy(io.EOF)
	c.finish(true)
	require.Equal(t, endClose, c.view().end)
}

func TestJudges(t *testing.T) {
	t.Parallel()
	slow := errMsg(pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER, 0)
	notInRoom := errMsg(pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, 0)
	timeout := errMsg(pb.ErrorCode_ERROR_CODE_TIMEOUT, 0)
	full := errMsg(pb.ErrorCode_ERROR_CODE_SERVER_FULL, 2000)
	cases := []struct {
		name       string
		c          *Conn
		documented bool
	}{
		{"non-reader dropped", connWith("non-reader", "", []*pb.ServerMessage{joined}, -1, syscall.ECONNRESET), true},
		{"non-reader 4000", connWith("non-reader", "", []*pb.ServerMessage{joined, slow}, 4000, nil), true},
		{"non-reader 4003", connWith("non-reader", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 0)}, 4003, nil), false},
		{"non-reader never joined", connWith("non-reader", "", nil, -1, io.EOF), false},
		{"non-reader no answer", connWith("non-reader", "", []*pb.ServerMessage{joined}, -1, os.ErrDeadlineExceeded), false},

		{"ping flood 4003", connWith("ping-flood", "", []*pb.ServerMessage{notInRoom, errMsg(rateLimited, 5), errMsg(rateLimited, 0)}, 4003, nil), true},
		{"ping flood 4003 never told", connWith("ping-flood", "", []*pb.ServerMessage{notInRoom, errMsg(rateLimited, 0)}, 4003, nil), false},
		{"ping flood 4000", connWith("ping-flood", "", []*pb.ServerMessage{notInRoom, slow}, 4000, nil), true},
		{"ping flood dropped after being told", connWith("ping-flood", "", []*pb.ServerMessage{notInRoom, errMsg(rateLimited, 5)}, -1, io.EOF), true},
		{"ping flood dropped untold", connWith("ping-flood", "", []*pb.ServerMessage{notInRoom}, -1, io.EOF), false},
		{"ping flood odd error", connWith("ping-flood", "", []*pb.ServerMessage{errMsg(pb.ErrorCode_ERROR_CODE_INTERNAL, 0), errMsg(rateLimited, 5), errMsg(rateLimited, 0)}, 4003, nil), false},

		{"burst 4003", connWith("burst", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 20), errMsg(rateLimited, 0)}, 4003, nil), true},
		{"burst no hint", connWith("burst", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 0), errMsg(rateLimited, 0)}, 4003, nil), false},
		{"burst slow consumer", connWith("burst", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 20), slow}, 4000, nil), false},
		{"burst dropped", connWith("burst", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 20)}, -1, io.EOF), false},
		{"kind flood 4003", connWith("kind-flood", "", []*pb.ServerMessage{joined, errMsg(rateLimited, 3), errMsg(rateLimited, 0)}, 4003, nil), true},

		{"trickle 4004", connWith("trickle", "", []*pb.ServerMessage{timeout}, 4004, nil), true},
		{"trickle 4004 without Error", connWith("trickle", "", nil, 4004, nil), false},
		{"trickle 4001", connWith("trickle", "", []*pb.ServerMessage{timeout}, 4001, nil), false},

		{"garbage after 1002", connWith("garbage", garbageAfter, nil, 1002, nil), true},
		{"garbage after 1008", connWith("garbage", garbageAfter, []*pb.ServerMessage{errMsg(pb.ErrorCode_ERROR_CODE_POLICY_VIOLATION, 0)}, 1008, nil), false},

		{"server full after the upgrade", connWith("burst", "", []*pb.ServerMessage{full}, 4002, nil), true},
	}
	for _, tc := range cases {
		p := personaByName(tc.c.persona)
		ok, why := p.judge(tc.c.view())
		require.Equal(t, tc.documented, ok, "%s: %s", tc.name, why)
		if !ok {
			require.NotEmpty(t, why, tc.name)
		}
	}

	http := func(persona, variant string, status int) *Conn {
		c := newConn(persona, variant)
		c.http(status)
		return c
	}
	client := func(persona, variant string) *Conn {
		c := newConn(persona, variant)
		c.endAs(endClient)
		return c
	}
	dial := newConn("conn-flood", floodTCPDrop)
	dial.dialFailed(syscall.ECONNREFUSED)
	for _, tc := range []struct {
		c          *Conn
		documented bool
	}{
		{http("garbage", garbageBefore, 400), true},
		{http("garbage", garbageBefore, 408), false},
		{http("conn-flood", floodSlowloris, 408), true},
		{http("conn-flood", floodSlowloris, 503), true},
		{http("conn-flood", floodSlowloris, 400), false},
		{http("conn-flood", floodUpgradeDrop, 101), true},
		{http("conn-flood", floodUpgradeDrop, 404), false},
		{client("conn-flood", floodTCPDrop), true},
		{client("conn-flood", floodPartialDrop), true},
		{dial, false},
		{client("churn", ""), true},
		{http("trickle", "", 503), true},
		{http("trickle", "", 400), false},
	} {
		v := tc.c.view()
		ok, why := personaByName(v.persona).judge(v)
		require.Equal(t, tc.documented, ok, "%s: %s", v.outcome(), why)
	}
	require.Equal(t, "tcp-drop dial:refused", dial.view().outcome())
}

// A churner's problem (an answer out of order) makes it undocumented
// whatever its end.
func TestTallyCountsAndJudges(t *testing.T) {
	t.Parallel()
	p := personaByName("churn")
	tl := newTally(p, 3)
	good := newConn("churn", "")
	good.endAs(endClient)
	bad := newConn("churn", "")
	bad.fail("request 3: want left, got joined for request 3")
	bad.endAs(endClient)
	stopped := newConn("churn", "")
	stopped.endAs(endUnfinished)
	require.False(t, tl.add(p, good))
	require.True(t, tl.add(p, bad))
	require.False(t, tl.add(p, stopped))
	r := tl.report()
	require.Equal(t, 3, r.Clients)
	require.Equal(t, int64(3), r.Connections)
	require.Equal(t, int64(2), r.Finished)
	require.Equal(t, int64(1), r.Documented)
	require.Equal(t, int64(1), r.Undocumented)
	require.Equal(t, int64(1), r.Unfinished)
	require.Equal(t, map[string]int64{"client_closed": 2, "unfinished": 1}, r.Outcomes)
	require.Len(t, r.Violations, 1)
	require.Contains(t, r.Violations[0], "want left")
	require.Empty(t, r.AnsweredAfterHist, "the relay answered none of them itself")

	bt := newTally(personaByName("trickle"), 1)
	c := newConn("trickle", "")
	c.start = c.start.Add(-2 * time.Second) // it connected two seconds ago
	c.answer(errMsg(pb.ErrorCode_ERROR_CODE_TIMEOUT, 0))
	c.closed(4004, "message read timeout")
	bt.add(personaByName("trickle"), c)
	r = bt.report()
	require.Equal(t, map[string]int64{"4004 message read timeout": 1}, r.CloseReasons)
	require.Equal(t, map[string]int64{"timeout": 1}, r.Errors)
	require.NotEmpty(t, r.AnsweredAfterHist)
	require.GreaterOrEqual(t, r.AnsweredAfterMs.Max, 2000.0)
}

func TestSwarmAssignments(t *testing.T) {
	t.Parallel()
	rooms := []string{"r0", "r1", "r2"}
	s, err := New(Config{URL: "ws://127.0.0.1:1/ws", Clients: 20, Rooms: rooms, RunID: "x"})
	require.NoError(t, err)
	require.Len(t, s.slots, 20)
	homes := map[string]int{}
	var own []string
	for i, sl := range s.slots {
		require.Equal(t, Personas[i%len(Personas)].Name, sl.persona.Name, "round-robin")
		if sl.persona.inRoom {
			homes[sl.home]++
			require.NotEqual(t, sl.home, sl.next)
		} else {
			require.Empty(t, sl.home)
		}
		if sl.persona.ownRoom {
			own = append(own, sl.own)
		}
	}
	require.Equal(t, []string{"chaos-x-kinds-0", "chaos-x-kinds-0", "chaos-x-kinds-1"}, own, "kind floods two to a room")
	for _, r := range rooms {
		require.LessOrEqual(t, homes[r], 3, "spread over the honest rooms")
	}
	// In-room clients: 8 of 20 (non-readers, bursters and churners at
	// 0, 2, 6, 8, 10, 14, 16, 18), 2 of them churners: 3 + 1 + 1 seats.
	require.Equal(t, 3+1+1, ExtraSeats(20, nil, 3))
	require.Zero(t, ExtraSeats(20, []string{"trickle", "garbage"}, 3), "no persona joins an honest room")
	require.Zero(t, ExtraSeats(0, nil, 3))

	_, err = New(Config{URL: "ws://127.0.0.1:1/ws", Clients: 1, Personas: []string{"burst"}})
	require.Error(t, err, "bursters need honest rooms")
	_, err = New(Config{URL: "wss://127.0.0.1:1/ws", Clients: 1, Personas: []string{"trickle"}})
	require.Error(t, err)
	_, err = ParsePersonas("burst,nosuch")
	require.ErrorContains(t, err, "nosuch")
	ps, err := ParsePersonas(" burst , trickle,")
	require.NoError(t, err)
	require.Equal(t, []string{"burst", "trickle"}, ps)
}

// Stop ends a swarm promptly even when nothing listens (every dial fails
// and is counted).
func TestSwarmStopsWithoutAServer(t *testing.T) {
	t.Parallel()
	s, err := New(Config{URL: "ws://127.0.0.1:1/ws", Clients: 2, Personas: []string{"trickle", "garbage"}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s.Start(ctx)
	require.Eventually(t, func() bool { n, _ := s.Connections(); return n >= 2 }, 5*time.Second, 10*time.Millisecond)
	s.Stop()
	r := s.Report()
	require.Equal(t, 2, r.Clients)
	for _, p := range r.Personas {
		require.Positive(t, p.Connections, p.Persona)
		require.Equal(t, p.Connections, p.Undocumented+p.Unfinished, "%s: %v", p.Persona, p.Outcomes)
	}
	ok, problems := r.Verdict()
	require.False(t, ok)
	require.NotEmpty(t, problems)
	require.False(t, r.AllDocumented)
}
