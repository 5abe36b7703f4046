package room_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
	"github.com/tickrelay/tickrelay/room"
)

func lockstepOpts(repeat bool) *pb.RoomOptions {
	return &pb.RoomOptions{Mode: pb.RoomMode_ROOM_MODE_LOCKSTEP, Lockstep: &pb.LockstepOptions{RepeatLastInput: repeat}}
}

// lsRoom creates lockstep room id with n members (no tick run yet) and
// returns them with the last closed tick.
func (h *harness) lsRoom(id string, n int, opts *pb.RoomOptions) ([]member, uint64) {
	h.t.Helper()
	ms := make([]member, n)
	var tick uint64
	for i := range ms {
		s, p := h.seat()
		j := h.join(s, p, &pb.Join{RoomId: id, CreateIfMissing: true, Options: opts})
		require.Equal(h.t, pb.RoomMode_ROOM_MODE_LOCKSTEP, j.GetMode())
		require.NotNil(h.t, j.GetLockstep())
		ms[i] = member{s: s, p: p, id: j.GetPlayerId()}
		tick = j.GetTick()
	}
	for _, m := range ms {
		m.p.Take()
	}
	return ms, tick
}

func (h *harness) input(m member, tick uint64, payload string) {
	h.t.Helper()
	require.NoError(h.t, h.m.Input(m.s, 0, &wire.InputView{TargetTick: tick, Payload: []byte(payload)}))
}

// inputSets returns the InputSets m received (and the leads, -1<<62 when
// absent), failing on anything but frames.
func inputSets(t *testing.T, msgs []*pb.ServerMessage) ([]*pb.InputSet, []int64) {
	t.Helper()
	var sets []*pb.InputSet
	var leads []int64
	for _, f := range frames(t, msgs) {
		if f.GetInputSet() == nil {
			continue
		}
		require.Equal(t, f.GetTick(), f.GetInputSet().GetTick(), "Frame.tick is its InputSet's")
		sets = append(sets, f.GetInputSet())
		if f.InputLeadUs != nil {
			leads = append(leads, f.GetInputLeadUs())
		} else {
			leads = append(leads, -1<<62)
		}
	}
	return sets, leads
}

func flags(set *pb.InputSet) []pb.InputFlag {
	out := make([]pb.InputFlag, len(set.GetInputs()))
	for i, in := range set.GetInputs() {
		out[i] = in.GetFlag()
	}
	return out
}

func encoded(t *testing.T, set *pb.InputSet) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	require.NoError(t, err)
	return b
}

func TestLockstepInputSetSameForAll(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms, tick := h.lsRoom("ls", 3, lockstepOpts(false))
	require.Zero(t, tick)
	h.input(ms[0], 1, "a1")
	h.input(ms[1], 1, "b1")
	// ms[2] sends nothing for tick 1.
	h.input(ms[2], 2, "c2")
	h.tick()
	var want []byte
	for i, m := range ms {
		sets, leads := inputSets(t, m.p.Take())
		require.Len(t, sets, 1)
		require.EqualValues(t, 1, sets[0].GetTick())
		require.Equal(t, []pb.InputFlag{pb.InputFlag_INPUT_FLAG_CLIENT, pb.InputFlag_INPUT_FLAG_CLIENT, pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER}, flags(sets[0]))
		require.Equal(t, "a1", string(sets[0].GetInputs()[0].GetPayload()))
		require.Empty(t, sets[0].GetInputs()[2].GetPayload())
		if i < 2 {
			require.Greater(t, leads[0], int64(0), "input arrived before the close")
		} else {
			require.Equal(t, int64(-1<<62), leads[0], "no lead without an input")
		}
		b := encoded(t, sets[0])
		if want == nil {
			want = b
		}
		require.Equal(t, want, b, "member %d", i)
	}
	h.tick()
	sets, _ := inputSets(t, ms[0].p.Take())
	require.Len(t, sets, 1)
	require.Equal(t, []pb.InputFlag{pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER, pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER, pb.InputFlag_INPUT_FLAG_CLIENT}, flags(sets[0]))
	st := h.m.Stats()
	require.EqualValues(t, 2, st.LockstepInputSets)
	require.EqualValues(t, 6, st.LockstepInputSetsDelivered)
	require.EqualValues(t, 3, st.LockstepReplacedInputs)
}

func TestLockstepRepeatLastInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms, _ := h.lsRoom("rep", 2, lockstepOpts(true))
	h.input(ms[0], 1, "x")
	h.tick()
	h.tick()
	sets, _ := inputSets(t, ms[1].p.Take())
	require.Len(t, sets, 2)
	require.Equal(t, []pb.InputFlag{pb.InputFlag_INPUT_FLAG_CLIENT, pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER}, flags(sets[0]))
	require.Equal(t, []pb.InputFlag{pb.InputFlag_INPUT_FLAG_REPEATED, pb.InputFlag_INPUT_FLAG_REPLACED_BY_SERVER}, flags(sets[1]))
	require.Equal(t, "x", string(sets[1].GetInputs()[0].GetPayload()))
}

func TestLockstepInputErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{LockstepMaxLeadTicks: 4, LockstepMaxInputBytes: 8})
	ms, _ := h.lsRoom("err", 1, lockstepOpts(false))
	h.tick() // tick 1 closed
	ms[0].p.Take()
	m := ms[0]

	errOf := func() *pb.Error {
		h.sync()
		msgs := m.p.Take()
		require.Len(t, msgs, 1)
		require.NotNil(t, msgs[0].GetError(), "%v", msgs[0])
		return msgs[0].GetError()
	}
	h.input(m, 1, "late")
	e := errOf()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_INPUT_TOO_LATE, e.GetCode())
	require.Equal(t, room.ReasonInputClosed, e.GetReason())
	require.EqualValues(t, 1, e.GetTick())
	require.Less(t, e.GetInputLeadUs(), int64(0))

	h.input(m, 6, "early") // window is ticks 2..5
	e = errOf()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_INPUT_TOO_LATE, e.GetCode())
	require.Equal(t, room.ReasonInputTooEarly, e.GetReason())
	require.Greater(t, e.GetInputLeadUs(), int64(0))

	h.input(m, 5, "ok")
	h.input(m, 5, "again")
	e = errOf()
	require.Equal(t, pb.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, e.GetCode())
	require.Equal(t, room.ReasonInputDuplicate, e.GetReason())

	err := h.m.Input(m.s, 0, &wire.InputView{TargetTick: 3, Payload: make([]byte, 9)})
	require.ErrorIs(t, err, room.ErrMessageTooLarge)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_MESSAGE_TOO_LARGE, room.ErrorCode(err))
	require.EqualValues(t, 1, h.m.Stats().LockstepLateInputs)

	// Input in a room that is not lockstep.
	plain := h.room("plain", 1, nil)
	h.input(plain[0], 9, "x")
	h.sync()
	msgs := plain[0].p.Take()
	require.Len(t, msgs, 1)
	require.Equal(t, room.ReasonNotLockstep, msgs[0].GetError().GetReason())
}

func TestLockstepOptionsValidated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{LockstepMaxTolerance: 20 * time.Millisecond})
	s, _ := h.seat()
	err := h.m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "tol", CreateIfMissing: true, Options: &pb.RoomOptions{
		Mode: pb.RoomMode_ROOM_MODE_LOCKSTEP, Lockstep: &pb.LockstepOptions{ToleranceMs: 21}}}})
	require.ErrorIs(t, err, room.ErrInvalidArgument)
	err = h.m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "imm", CreateIfMissing: true, Options: &pb.RoomOptions{
		Mode: pb.RoomMode_ROOM_MODE_LOCKSTEP, Immediate: true}}})
	require.ErrorIs(t, err, room.ErrInvalidArgument)

	ms, _ := h.lsRoom("fixed", 1, &pb.RoomOptions{Mode: pb.RoomMode_ROOM_MODE_LOCKSTEP, Lockstep: &pb.LockstepOptions{ToleranceMs: 20}})
	_ = ms
	rate := 20
	require.ErrorIs(t, h.m.UpdateRoom(context.Background(), "fixed", room.RoomUpdate{TickRate: &rate}), room.ErrInvalidArgument)
}

// A worker that falls behind closes every tick it missed, in order: a
// deterministic simulation needs each one.
func TestLockstepTicksNeverSkipped(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms, _ := h.lsRoom("late", 2, lockstepOpts(false))
	h.input(ms[0], 2, "two")
	h.sync()
	h.clock.Advance(3 * h.period)
	h.sync()
	sets, _ := inputSets(t, ms[1].p.Take())
	require.Len(t, sets, 3)
	for i, s := range sets {
		require.EqualValues(t, i+1, s.GetTick())
	}
	require.Equal(t, pb.InputFlag_INPUT_FLAG_CLIENT, sets[1].GetInputs()[0].GetFlag())
}

func TestLockstepAwayIsNotPresent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{SeatGrace: time.Minute})
	ms, _ := h.lsRoom("away", 2, lockstepOpts(false))
	h.m.Disconnect(ms[1].s)
	h.input(ms[0], 1, "a")
	h.tick()
	sets, _ := inputSets(t, ms[0].p.Take())
	require.Len(t, sets, 1)
	require.Equal(t, []pb.InputFlag{pb.InputFlag_INPUT_FLAG_CLIENT, pb.InputFlag_INPUT_FLAG_NOT_PRESENT}, flags(sets[0]))
}

// A late joiner gets Joined{lockstep.first_tick 1} and every InputSet
// from tick 1 on, the same as the others got.
func TestLockstepLateJoinFromLog(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms, _ := h.lsRoom("log", 2, lockstepOpts(false))
	var seen []*pb.InputSet
	for tick := uint64(1); tick <= 5; tick++ {
		h.input(ms[0], tick, "p"+string(rune('0'+tick)))
		h.tick()
		sets, _ := inputSets(t, ms[1].p.Take())
		seen = append(seen, sets...)
	}
	require.Len(t, seen, 5)
	s, p := h.seat()
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 1, Join: &pb.Join{RoomId: "log"}}))
	h.sync()
	msgs := p.Take()
	j := msgs[0].GetJoined()
	require.NotNil(t, j, "%v", msgs[0])
	msgs = msgs[1:]
	require.EqualValues(t, 5, j.GetTick())
	require.EqualValues(t, 1, j.GetLockstep().GetFirstTick())
	require.Empty(t, j.GetLockstep().GetSnapshot())
	require.EqualValues(t, 32, j.GetLockstep().GetMaxLeadTicks())
	sets, _ := inputSets(t, msgs)
	require.Len(t, sets, 5)
	for i := range sets {
		require.Equal(t, encoded(t, seen[i]), encoded(t, sets[i]), "tick %d", i+1)
		require.EqualValues(t, i+1, msgs[i].GetFrame().GetSeq())
	}
	// Live from there on, the new member included.
	h.tick()
	sets, _ = inputSets(t, p.Take())
	require.Len(t, sets, 1)
	require.EqualValues(t, 6, sets[0].GetTick())
	require.Len(t, sets[0].GetInputs(), 3)
}

// Past half its log's bound the room asks a member for a snapshot; once
// the log has dropped ticks, a joiner starts from the snapshot (or, with
// none yet, is told to retry).
func TestLockstepSnapshotForLateJoin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{LockstepLogBytes: 200})
	ms, _ := h.lsRoom("snap", 1, lockstepOpts(false))
	asked := uint64(0)
	tick := uint64(0)
	for asked == 0 {
		tick++
		require.Less(t, tick, uint64(100), "no snapshot request")
		h.input(ms[0], tick, "0123456789")
		h.tick()
		for _, f := range frames(t, ms[0].p.Take()) {
			for _, ev := range f.GetEvents() {
				if ev.GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_SNAPSHOT_REQUESTED {
					asked = tick
					require.EqualValues(t, 0, ev.GetTick(), "the log still reaches tick 1")
				}
			}
		}
	}
	// Fill the log past its bound without answering: joins must wait.
	for i := 0; i < 20; i++ {
		tick++
		h.tick()
	}
	ms[0].p.Take()
	s, p := h.seat()
	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 5, Join: &pb.Join{RoomId: "snap"}}))
	h.sync()
	msgs := p.Take()
	require.Len(t, msgs, 1)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_OVERLOADED, msgs[0].GetError().GetCode())
	require.Equal(t, room.ReasonSnapshotPending, msgs[0].GetError().GetReason())
	require.NotZero(t, msgs[0].GetError().GetRetryAfterMs())

	// A snapshot of a tick not closed yet is refused; the current one taken.
	require.NoError(t, h.m.Snapshot(ms[0].s, 3, tick+1, []byte("future")))
	h.sync()
	msgs = ms[0].p.Take()
	require.Len(t, msgs, 1)
	require.Equal(t, room.ReasonSnapshotTick, msgs[0].GetError().GetReason())
	require.NoError(t, h.m.Snapshot(ms[0].s, 4, tick, []byte("state")))
	h.tick()
	ms[0].p.Take()
	require.EqualValues(t, 1, h.m.Stats().LockstepSnapshots)

	require.NoError(t, h.m.Join(s, room.JoinRequest{RequestID: 6, Join: &pb.Join{RoomId: "snap"}}))
	h.sync()
	msgs = p.Take()
	require.NotEmpty(t, msgs)
	j := msgs[0].GetJoined()
	require.NotNil(t, j, "%v", msgs[0])
	require.Equal(t, tick+1, j.GetTick())
	require.Equal(t, tick, j.GetLockstep().GetSnapshotTick())
	require.Equal(t, tick+1, j.GetLockstep().GetFirstTick())
	require.Equal(t, "state", string(j.GetLockstep().GetSnapshot()))
	sets, _ := inputSets(t, msgs[1:])
	require.Len(t, sets, 1)
	require.Equal(t, tick+1, sets[0].GetTick())
}

func TestLockstepDesync(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{})
	ms, _ := h.lsRoom("sum", 3, lockstepOpts(false))
	h.tick()
	h.tick()
	for _, m := range ms {
		m.p.Take()
	}
	sums := []uint64{7, 7, 8}
	for i, m := range ms {
		require.NoError(t, h.m.Input(m.s, 0, &wire.InputView{TargetTick: 3, ChecksumTick: 2, Checksum: sums[i]}))
	}
	// Agreement on tick 1 reports nothing.
	for _, m := range ms {
		require.NoError(t, h.m.Input(m.s, 0, &wire.InputView{ChecksumTick: 1, Checksum: 5}))
	}
	h.tick()
	for _, m := range ms {
		fs := frames(t, m.p.Take())
		evs := events(fs)
		require.Len(t, evs, 1)
		require.Equal(t, pb.RoomEventType_ROOM_EVENT_TYPE_DESYNC, evs[0].GetType())
		require.EqualValues(t, 2, evs[0].GetTick())
		require.Equal(t, []uint32{ms[2].id}, evs[0].GetPlayers())
	}
	require.EqualValues(t, 1, h.m.Stats().LockstepDesyncs)
}

// A resumed player gets the InputSets built while it was away, in order.
func TestLockstepResumeReplaysInputSets(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{SeatGrace: time.Minute})
	s0, p0 := h.seat()
	j0 := h.join(s0, p0, &pb.Join{RoomId: "res", CreateIfMissing: true, Options: lockstepOpts(false)})
	s1, p1 := h.seat()
	j1 := h.join(s1, p1, &pb.Join{RoomId: "res"})
	h.tick()
	last := frames(t, p1.Take())[0].GetSeq()
	h.m.Disconnect(s1)
	h.tick()
	h.tick()
	_ = j0
	s2, p2 := h.seat()
	require.NoError(t, h.m.Resume(s2, room.ResumeRequest{Resume: &pb.Resume{RoomId: "res", PlayerId: j1.GetPlayerId(), Token: j1.GetResumeToken(), LastSeq: last}}))
	h.sync()
	msgs := p2.Take()
	require.True(t, msgs[0].GetResumed().GetRecovered(), "%v", msgs)
	sets, _ := inputSets(t, msgs[1:])
	require.Len(t, sets, 2, "%v", msgs)
	require.EqualValues(t, 2, sets[0].GetTick())
	require.EqualValues(t, 3, sets[1].GetTick())
	require.Equal(t, pb.InputFlag_INPUT_FLAG_NOT_PRESENT, sets[0].GetInputs()[1].GetFlag())
}

// clusterHooks stands for a cluster layer that lets this node create any
// room.
type clusterHooks struct{}

func (clusterHooks) MayCreate(string) bool        { return true }
func (clusterHooks) RoomChanged(*room.RoomRecord) {}
func (clusterHooks) RoomClosed(string)            {}
func (clusterHooks) FramesDone(string)            {}

// A cluster node refuses to create LOCKSTEP rooms: their state is not in
// the records nodes hand over.
func TestLockstepRefusedOnClusterNodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, room.Config{Hooks: clusterHooks{}})
	s, _ := h.seat()
	err := h.m.Join(s, room.JoinRequest{Join: &pb.Join{RoomId: "ls", CreateIfMissing: true, Options: lockstepOpts(false)}})
	require.ErrorIs(t, err, room.ErrInvalidArgument)
	require.Contains(t, err.Error(), "cluster")
}

// A resume whose frames are gone (TOO_OLD) resyncs a lockstep player like
// a late join: a Joined snapshot with where to start, then the log. When
// the log no longer reaches back and no snapshot covers it, the seat is
// released instead and the client must join again.
func TestLockstepResumeTooOld(t *testing.T) {
	t.Parallel()
	for _, covered := range []bool{true, false} {
		t.Run(map[bool]string{true: "from the log", false: "seat released"}[covered], func(t *testing.T) {
			t.Parallel()
			cfg := room.Config{SeatGrace: time.Minute, ReplayBytesPerSeat: 100}
			if !covered {
				cfg.LockstepLogBytes = 100
			}
			h := newHarness(t, cfg)
			s0, p0 := h.seat()
			h.join(s0, p0, &pb.Join{RoomId: "old", CreateIfMissing: true, Options: lockstepOpts(false)})
			s1, p1 := h.seat()
			j1 := h.join(s1, p1, &pb.Join{RoomId: "old"})
			h.m.Disconnect(s1)
			for range 20 {
				h.tick()
			}
			s2, p2 := h.seat()
			require.NoError(t, h.m.Resume(s2, room.ResumeRequest{Resume: &pb.Resume{RoomId: "old", PlayerId: j1.GetPlayerId(), Token: j1.GetResumeToken(), LastSeq: 0}}))
			h.sync()
			msgs := p2.Take()
			r := msgs[0].GetResumed()
			require.NotNil(t, r, "%v", msgs[0])
			require.Equal(t, pb.ResumeFailure_RESUME_FAILURE_TOO_OLD, r.GetFailure())
			if !covered {
				require.Nil(t, r.GetSnapshot())
				require.Len(t, msgs, 1)
				h.tick()
				var left []uint32
				for _, ev := range events(frames(t, p0.Take())) {
					if ev.GetType() == pb.RoomEventType_ROOM_EVENT_TYPE_PLAYER_LEFT {
						left = append(left, ev.GetPlayerId())
					}
				}
				require.Equal(t, []uint32{j1.GetPlayerId()}, left)
				return
			}
			j := r.GetSnapshot()
			require.NotNil(t, j)
			require.EqualValues(t, 1, j.GetLockstep().GetFirstTick())
			sets, _ := inputSets(t, msgs[1:])
			require.Len(t, sets, int(j.GetTick()))
			require.EqualValues(t, 1, sets[0].GetTick())
		})
	}
}
