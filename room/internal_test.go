package room

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

func TestValidRoomID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "Z", "0", "a_b.c:d-e", strings.Repeat("x", 64)} {
		require.True(t, validRoomID(id), id)
	}
	for _, id := range []string{"", strings.Repeat("x", 65), "a b", "a/b", "é", "a\x00", "a+b"} {
		require.False(t, validRoomID(id), id)
	}
}

func TestRoomCodes(t *testing.T) {
	t.Parallel()
	for _, c := range "0O1IL" {
		require.NotContains(t, codeAlphabet, string(c))
	}
	m, err := newManager(Config{Workers: 4, Clock: benchClock{}})
	require.NoError(t, err)
	counts := map[rune]int{}
	for _, w := range m.workers {
		for range 500 {
			code, err := w.newRoomCode()
			require.NoError(t, err)
			require.Len(t, code, defaultCodeLen)
			require.True(t, validRoomID(code))
			require.Same(t, w, m.workerFor(code), "a code lives on the worker that made it")
			require.Nil(t, w.rooms[code])
			w.rooms[code] = &room{} // taken: never handed out again
			for _, c := range code {
				counts[c]++
			}
		}
	}
	require.Len(t, counts, len(codeAlphabet), "every letter is used")
	for c, n := range counts {
		// 12,000 letters over 31: about 387 each.
		require.InDelta(t, 387, n, 120, "letter %c", c)
	}
}

func TestScheduleHeap(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(0, 0)
	var h schedule
	var live []*room
	check := func() {
		for i, r := range h {
			require.Equal(t, i, r.heapIdx)
			if i > 0 {
				require.False(t, h.less(i, (i-1)/2), "heap order at %d", i)
			}
		}
	}
	for range 2000 {
		switch x := rng.IntN(10); {
		case x < 5 || len(live) == 0:
			r := &room{next: base.Add(time.Duration(rng.IntN(1000))), heapIdx: -1}
			h.push(r)
			live = append(live, r)
		case x < 7:
			i := rng.IntN(len(live))
			h.remove(live[i])
			require.Equal(t, -1, live[i].heapIdx)
			h.remove(live[i]) // removing twice is harmless
			live = append(live[:i], live[i+1:]...)
		default:
			r := live[rng.IntN(len(live))]
			r.next = base.Add(time.Duration(rng.IntN(1000)))
			h.fix(r.heapIdx)
		}
		check()
	}
	var last time.Time
	for len(h) > 0 {
		r := h[0]
		require.False(t, r.next.Before(last))
		last = r.next
		h.remove(r)
		check()
	}
}

func TestOutboundPool(t *testing.T) {
	t.Parallel()
	p := &outboundPool{headroom: 10}
	for _, c := range []struct{ size, wantCap int }{
		{0, 64}, {54, 64}, {55, 128}, {118, 128}, {119, 256}, {246, 256}, {247, 512}, {5000, 8192}, {64<<10 - 10, 64 << 10},
	} {
		o := p.get(c.size)
		require.Equal(t, c.wantCap, cap(o.buf), "size %d", c.size)
		require.Len(t, o.buf, 10)
		o.buf = append(o.buf, make([]byte, c.size)...)
		require.Len(t, o.Bytes(), c.size)
		require.Len(t, o.WithHeader(10), c.size+10)
		o.Release()
	}
	big := p.get(1 << 20)
	require.GreaterOrEqual(t, cap(big.buf), 1<<20+10)
	big.Release()
	require.Nil(t, big.buf, "buffers above 64 KiB are not pooled")
	odd := p.get(10)
	odd.buf = make([]byte, 10, 700) // not a class size (an encoder outgrew its buffer)
	odd.Release()
	require.Nil(t, odd.buf)
}

func TestRecordPool(t *testing.T) {
	t.Parallel()
	var p recordPool
	r := p.get()
	r.fill(&p, 3, &wire.SendView{Payload: make([]byte, 200<<10), Targets: make([]uint32, wire.MaxTargets+1)})
	p.put(r)
	require.Nil(t, r.buf, "huge payload buffers are not pooled")
	require.Nil(t, r.targets)
	r = p.get() // whichever record the pool gives: r is in it now
	r.fill(&p, 4, &wire.SendView{Payload: []byte("abc"), Kind: 7})
	r.encode(9)
	want := wire.AppendDelivery(nil, 9, 7, []byte("abc"))
	require.Equal(t, want, r.enc)
	small := cap(r.buf)
	p.put(r)
	require.Equal(t, small, cap(r.buf), "a small buffer stays with its record")

	// A message at the default size limit gets a buffer of its class, and
	// its record holds its payload once: the payload and its header's room.
	payload := make([]byte, 64<<10-64)
	for i := range payload {
		payload[i] = byte(i)
	}
	r = p.get()
	r.fill(&p, 5, &wire.SendView{Payload: payload, Kind: 2})
	require.Equal(t, recordHeadroom+64<<10, cap(r.buf))
	r.encode(1 << 20)
	require.Equal(t, wire.AppendDelivery(nil, 1<<20, 2, payload), r.enc)
	p.put(r)
	require.Nil(t, r.buf, "a big buffer leaves its record for its class")
	r = p.get()
	r.fill(&p, 6, &wire.SendView{})
	r.encode(1)
	require.Equal(t, wire.AppendDelivery(nil, 1, 0, nil), r.enc, "an empty payload after a big one")
	require.LessOrEqual(t, cap(r.buf), smallRecordBuf)

	// The next big message takes a buffer of its class (the pooled one,
	// unless a GC emptied the pool) and encodes over whatever it held.
	r2 := p.get()
	r2.fill(&p, 7, &wire.SendView{Payload: payload[:40<<10]})
	require.Equal(t, recordHeadroom+64<<10, cap(r2.buf))
	r2.encode(2)
	require.Equal(t, wire.AppendDelivery(nil, 2, 0, payload[:40<<10]), r2.enc)
	for _, c := range []struct{ need, class int }{
		{0, 0}, {bigRecordCap(0), 0}, {bigRecordCap(0) + 1, 1}, {recordHeadroom + 64<<10, 3}, {bigRecordCap(bigRecordClasses - 1), bigRecordClasses - 1}, {bigRecordCap(bigRecordClasses-1) + 1, -1},
	} {
		require.Equal(t, c.class, bigRecordClass(c.need), "need %d", c.need)
	}
}

// recPeer records messages for internal tests (roomtest imports this
// package, so it cannot be used here).
type recPeer struct {
	mu   sync.Mutex
	msgs []*pb.ServerMessage
}

func (p *recPeer) Deliver(o *Outbound) {
	var m pb.ServerMessage
	if err := proto.Unmarshal(o.Bytes(), &m); err != nil {
		panic(err)
	}
	o.Release()
	p.mu.Lock()
	p.msgs = append(p.msgs, &m)
	p.mu.Unlock()
}
func (p *recPeer) Congested() bool          { return false }
func (p *recPeer) Evict(EvictCause, string) {}
func (p *recPeer) Ready()                   {}
func (p *recPeer) JoinRefused(pb.ErrorCode) {}
func (p *recPeer) Address() netip.Addr      { return netip.Addr{} }

// TestStaleSendOnOtherWorker: a Send queued on the worker of a room the seat
// was removed from, processed after the seat joined a room of another
// worker, must not touch that room.
func TestStaleSendOnOtherWorker(t *testing.T) {
	t.Parallel()
	m, err := newManager(Config{Workers: 2, Clock: benchClock{time.Unix(1, 0)}})
	require.NoError(t, err)
	// Two room ids on different workers.
	ids := [2]string{}
	for i := 0; ids[0] == "" || ids[1] == ""; i++ {
		id := "room" + strings.Repeat("x", i)
		ids[roomHash(id)%2] = id
		require.Less(t, i, 64, "appending one byte must be able to change the worker")
	}
	p := &recPeer{}
	s := m.NewSeat(p)
	require.NoError(t, m.Join(s, JoinRequest{Join: &pb.Join{RoomId: ids[1], CreateIfMissing: true}}))
	m.workers[1].step()
	require.NotNil(t, s.member.Load())

	// Worker 0 processes a Send of the seat (as if queued before a kick).
	rec := m.records.get()
	rec.fill(&m.records, 42, &wire.SendView{Payload: []byte("stale")})
	m.workers[0].send(s, rec)
	require.Len(t, p.msgs, 2)
	require.Equal(t, pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, p.msgs[1].GetError().GetCode())
	require.EqualValues(t, 42, p.msgs[1].GetRequestId())
	require.Zero(t, m.workers[1].rooms[ids[1]].messagesIn)

	// A discarded peer for a nil Peer.
	require.NotPanics(t, func() { m.NewSeat(nil).peer.Deliver(m.outbound.get(1)) })
}

func TestRoomHashSpreads(t *testing.T) {
	t.Parallel()
	for _, workers := range []uint32{2, 3, 4, 8} {
		counts := make([]int, workers)
		for i := range 4000 {
			// Ids that differ only in even bytes defeat an unmixed FNV-1a.
			id := "lobby-" + strings.Repeat("b", i%40) + strings.Repeat("d", i/40)
			counts[roomHash(id)%workers]++
		}
		for w, n := range counts {
			require.InDelta(t, 4000/int(workers), n, float64(4000/int(workers))/4, "workers=%d worker %d", workers, w)
		}
	}
}

func TestRecordsBudget(t *testing.T) {
	t.Parallel()
	for _, tick := range []uint64{1, 300, 1 << 40} {
		for _, limit := range []int{1024, 1 << 14, 256 << 10} {
			n := recordsBudget(tick, limit)
			// Room for the largest seat sequence number too.
			require.LessOrEqual(t, wire.FrameSize(tick, math.MaxUint64, n), limit)
			require.Greater(t, wire.FrameSize(tick, math.MaxUint64, n+1), limit)
		}
	}
}

// Rooms created at any time land on one of phaseSlots phases of their
// period, so a worker wakes at most phaseSlots times a period for them all;
// a worker with few rooms uses one phase (one wake-up a period), one with
// many spreads them over all the slots.
func TestRoomPhasesShareSlots(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m, err := newManager(Config{Workers: 1, Clock: benchClock{t: start}})
	require.NoError(t, err)
	w := m.workers[0]
	period := periodOf(30)
	rng := rand.New(rand.NewPCG(1, 2))
	phasesWith := func(rooms int) map[time.Duration]bool {
		clear(w.rooms)
		for i := range rooms {
			w.rooms[fmt.Sprint("r", i)] = &room{}
		}
		phases := map[time.Duration]bool{}
		for range 500 {
			w.now = start.Add(time.Duration(rng.Int64N(int64(10 * time.Second))))
			first := w.firstDeadline(period)
			require.True(t, first.After(w.now))
			require.LessOrEqual(t, first.Sub(w.now), period)
			phases[first.Sub(w.gridOrigin)%period] = true
		}
		return phases
	}
	require.Len(t, phasesWith(roomsPerPhase-1), 1, "few rooms share one phase")
	require.Len(t, phasesWith(roomsPerPhase), 2, "one phase per roomsPerPhase rooms")
	many := phasesWith(phaseSlots * roomsPerPhase * 2)
	require.LessOrEqual(t, len(many), phaseSlots)
	require.Greater(t, len(many), phaseSlots/2, "many rooms are spread, not all in one slot")
}

func TestRoomCodeLengthIsASetting(t *testing.T) {
	t.Parallel()
	m, err := newManager(Config{Workers: 2, Clock: benchClock{}, CodeLength: 10})
	require.NoError(t, err)
	code, err := m.workers[0].newRoomCode()
	require.NoError(t, err)
	require.Len(t, code, 10)
	_, err = newManager(Config{CodeLength: 3})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = newManager(Config{CodeLength: 17})
	require.ErrorIs(t, err, ErrInvalidArgument)
}

// A member is kept for every player of every room, most of them idle, so
// its size is the relay's memory per idle connection (bench S3). What only
// some members need (a backlog, a previous resume token) hangs off
// pointers; this pins the size class, so that a field added grows it on
// purpose rather than by accident.
func TestMemberFitsItsSizeClass(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, unsafe.Sizeof(member{}), uintptr(256),
		"member grew past the 256-byte size class: move what few members need behind a pointer (memberIdent)")
}

// Every connection has a seat, kept as long as the connection, so its size
// counts in bench S3 too; the client's address is its peer's (Peer.Address),
// not a copy.
func TestSeatFitsItsSizeClass(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, unsafe.Sizeof(Seat{}), uintptr(64),
		"Seat grew past the 64-byte size class")
}

// A Send for a ticked room does not wake a worker whose timer is set; the
// rest does, once a batch, and a worker whose timer stops wakes itself for
// what is queued: nothing queued is left without a wake-up coming.
func TestInboxWakesOnlyWhenSomethingWouldWait(t *testing.T) {
	t.Parallel()
	signalled := func(in *inbox) bool {
		select {
		case <-in.wake:
			return true
		default:
			return false
		}
	}
	in := newInbox(64)
	in.setTimerArmed(true)
	require.False(t, signalled(in))
	require.NoError(t, in.pushData(command{kind: cmdSend}, true))
	require.False(t, signalled(in), "the worker reads it at its deadline")
	require.NoError(t, in.pushData(command{kind: cmdSend}, false))
	require.True(t, signalled(in), "a message that cannot wait wakes the worker")
	require.True(t, in.pushControl(command{kind: cmdLeave}))
	require.False(t, signalled(in), "once a batch")
	require.Len(t, in.take(nil), 3)

	for range 64/4 - 1 {
		require.NoError(t, in.pushData(command{kind: cmdSend}, true))
	}
	require.False(t, signalled(in))
	require.NoError(t, in.pushData(command{kind: cmdSend}, true))
	require.True(t, signalled(in), "a quarter-full inbox wakes the worker")
	in.take(nil)

	require.NoError(t, in.pushData(command{kind: cmdSend}, true))
	require.False(t, signalled(in))
	in.setTimerArmed(false)
	require.True(t, signalled(in), "no timer will come: the worker wakes itself for what is queued")
	in.take(nil)
	require.NoError(t, in.pushData(command{kind: cmdSend}, true))
	require.True(t, signalled(in), "without a timer every message wakes the worker")
}
