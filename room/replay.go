package room

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
)

// replayRing keeps the frames sent to one seat, as they were sent, until the
// client acknowledges them (ClientMessage.ack), so that after a lost
// connection a Resume replays exactly what the client did not get. Frames
// are held by reference (Outbound.retain): no copy, and the bytes stay as
// sent. Bounded: past Config.ReplayBytesPerSeat (or the room's
// ReplayBytesPerRoom) the oldest frames are dropped, and a Resume that needs
// them is answered TOO_OLD. Worker only.
type replayRing struct {
	// buf is a circular buffer: the frame with seq first+i is at
	// buf[(head+i)%len(buf)] for i < n. Circular, so that a seat whose
	// client acknowledges as it goes pushes and drops without allocating;
	// a slice cut at the front and appended at the back reallocates every
	// time its capacity runs out.
	buf []*Outbound
	// head and n are 32-bit: a ring is bounded by replay-bytes-per-seat,
	// and every member carries one.
	head  int32
	n     int32
	first uint64 // seq of the oldest frame; meaningful when n > 0
	bytes int
}

// keptWhenEmpty is the largest buffer an emptied ring keeps: enough for a
// seat whose client acknowledges every few frames, not the thousands an
// unacknowledged ring may have held.
const keptWhenEmpty = 16

// len is the number of frames kept.
func (q *replayRing) len() int { return int(q.n) }

// at is the i-th oldest frame kept.
func (q *replayRing) at(i int) *Outbound { return q.buf[(int(q.head)+i)%len(q.buf)] }

// push keeps o (seq) and returns the bytes it adds.
func (q *replayRing) push(seq uint64, o *Outbound) int {
	if q.n == 0 {
		q.first = seq
	}
	if int(q.n) == len(q.buf) {
		grown := make([]*Outbound, max(4, 2*len(q.buf)))
		for i := range int(q.n) {
			grown[i] = q.at(i)
		}
		q.buf, q.head = grown, 0
	}
	o.retain()
	q.buf[(int(q.head)+int(q.n))%len(q.buf)] = o
	q.n++
	n := len(o.buf)
	q.bytes += n
	return n
}

// ack releases the frames up to seq (the client has them) and returns the
// bytes freed.
func (q *replayRing) ack(seq uint64) int {
	n := 0
	for q.n > 0 && q.first <= seq {
		n += q.dropOldest()
	}
	return n
}

// dropOldest releases the oldest frame and returns its bytes.
func (q *replayRing) dropOldest() int {
	o := q.buf[q.head]
	n := len(o.buf)
	o.Release()
	q.buf[q.head] = nil
	q.head = int32((int(q.head) + 1) % len(q.buf))
	q.n--
	q.first++
	q.bytes -= n
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > keptWhenEmpty {
			q.buf = nil // let a large backing array go
		}
	}
	return n
}

// since returns the frames after seq, oldest first, or ok=false when some
// of them were dropped already. last is the newest seq sent. The slice is
// the caller's (a resume is rare: a copy costs nothing that matters).
func (q *replayRing) since(seq, last uint64) (frames []*Outbound, ok bool) {
	if seq >= last {
		return nil, true
	}
	if q.n == 0 || q.first > seq+1 {
		return nil, false
	}
	from, n := int(seq+1-q.first), int(q.n)
	if from >= n {
		return nil, true
	}
	frames = make([]*Outbound, 0, n-from)
	for i := from; i < n; i++ {
		frames = append(frames, q.at(i))
	}
	return frames, true
}

// clear releases everything and returns the bytes freed.
func (q *replayRing) clear() int {
	n := q.bytes
	for i := range int(q.n) {
		q.at(i).Release()
	}
	*q = replayRing{}
	return n
}

// resumeTokenLen is the length of a resume token: 256 bits.
const resumeTokenLen = 32

// newResumeToken makes a seat's next resume token and returns it with the
// hash the member keeps (the token itself is never stored).
func newResumeToken(roomID string, player, generation uint32) (token *[resumeTokenLen]byte, hash [32]byte) {
	token = new([resumeTokenLen]byte)
	rand.Read(token[:]) // never fails (Go 1.24+)
	return token, tokenHash(token[:], roomID, player, generation)
}

// tokenBytes is token as the bytes of a message field (nil for none).
func tokenBytes(token *[resumeTokenLen]byte) []byte {
	if token == nil {
		return nil
	}
	return token[:]
}

// tokenHash binds a token to its room, player and seat generation: a token
// is good for that seat's next Resume only.
func tokenHash(token []byte, roomID string, player, generation uint32) [32]byte {
	h := sha256.New()
	h.Write(token)
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], player)
	binary.BigEndian.PutUint32(b[4:], generation)
	h.Write(b[:])
	h.Write([]byte(roomID))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// tokenMatch tells which of m's tokens token is, comparing in constant time.
type tokenMatch int

const (
	tokenWrong    tokenMatch = iota
	tokenCurrent             // the latest handed out
	tokenPrevious            // the one before, while the client may not have the latest
)

func matchToken(m *member, token []byte) tokenMatch {
	if len(token) != resumeTokenLen || !m.resumable {
		return tokenWrong
	}
	got := tokenHash(token, m.room.id, m.id, m.generation)
	if subtle.ConstantTimeCompare(got[:], m.tokenHash[:]) == 1 {
		return tokenCurrent
	}
	if m.prev == nil {
		return tokenWrong
	}
	got = tokenHash(token, m.room.id, m.id, m.prev.generation)
	if subtle.ConstantTimeCompare(got[:], m.prev.hash[:]) == 1 {
		return tokenPrevious
	}
	return tokenWrong
}
