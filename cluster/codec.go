package cluster

import (
	"encoding/hex"
	"maps"
	"time"

	cpb "github.com/tickrelay/tickrelay/proto/tickrelay/cluster/v1"
	"github.com/tickrelay/tickrelay/room"
)

// names derives the cluster's subjects, bucket names and keys. Room ids may
// hold '.' and ':', which subjects and keys do not allow: rooms appear in
// them hex-encoded.
type names struct{ prefix string }

func (n names) roomIn(id string) string {
	return n.prefix + ".r." + hex.EncodeToString([]byte(id)) + ".in"
}
func (n names) roomOut(id string) string {
	return n.prefix + ".r." + hex.EncodeToString([]byte(id)) + ".out"
}
func (n names) roomHandover(id string) string {
	return n.prefix + ".r." + hex.EncodeToString([]byte(id)) + ".handover"
}
func (n names) handoverAll() string { return n.prefix + ".r.*.handover" }
func (n names) nodeCtl(node, op string) string {
	return n.prefix + ".n." + node + "." + op
}
func (n names) leases() string { return n.prefix + "_leases" }
func (n names) rooms() string  { return n.prefix + "_rooms" }
func (n names) nodes() string  { return n.prefix + "_nodes" }

// roomKey is a room's key in the leases and rooms buckets.
func roomKey(id string) string { return "r." + hex.EncodeToString([]byte(id)) }

// roomOfKey inverts roomKey.
func roomOfKey(key string) (string, bool) {
	if len(key) < 3 || key[:2] != "r." {
		return "", false
	}
	b, err := hex.DecodeString(key[2:])
	if err != nil {
		return "", false
	}
	return string(b), true
}

// nodeKey is a node's key in the nodes bucket.
func nodeKey(id string) string { return "n." + id }

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromUnixMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// stateOf encodes a room record.
func stateOf(rec *room.RoomRecord) *cpb.RoomState {
	st := &cpb.RoomState{
		Id:            rec.ID,
		CreatedUnixMs: unixMs(rec.CreatedAt),
		MaxPlayers:    uint32(rec.MaxPlayers),
		TickRate:      uint32(rec.TickRate),
		Immediate:     rec.Immediate,
		Metadata:      rec.Metadata,
		SeatGraceMs:   rec.SeatGrace.Milliseconds(),
		LastPlayerId:  rec.LastPlayerID,
		Tick:          rec.Tick,
		Members:       make([]*cpb.MemberState, len(rec.Members)),
	}
	for i := range rec.Members {
		m := &rec.Members[i]
		st.Members[i] = &cpb.MemberState{
			PlayerId:       m.PlayerID,
			UserId:         m.UserID,
			Metadata:       m.Metadata,
			JoinedUnixMs:   unixMs(m.JoinedAt),
			Away:           m.Away,
			Resumable:      m.Resumable,
			TokenHash:      m.TokenHash[:],
			Generation:     m.Generation,
			PrevHash:       m.PrevHash[:],
			PrevGeneration: m.PrevGeneration,
			PrevValid:      m.PrevValid,
			ResumeSeq:      m.ResumeSeq,
			Seq:            m.Seq,
			InputSeq:       m.InputSeq,
			Ring:           m.Ring,
			RingFirst:      m.RingFirst,
		}
	}
	return st
}

// recordOf decodes a room state.
func recordOf(st *cpb.RoomState) *room.RoomRecord {
	rec := &room.RoomRecord{
		ID:           st.GetId(),
		CreatedAt:    fromUnixMs(st.GetCreatedUnixMs()),
		MaxPlayers:   int(st.GetMaxPlayers()),
		TickRate:     int(st.GetTickRate()),
		Immediate:    st.GetImmediate(),
		Metadata:     maps.Clone(st.GetMetadata()),
		SeatGrace:    time.Duration(st.GetSeatGraceMs()) * time.Millisecond,
		LastPlayerID: st.GetLastPlayerId(),
		Tick:         st.GetTick(),
		Members:      make([]room.MemberRecord, len(st.GetMembers())),
	}
	for i, m := range st.GetMembers() {
		mr := room.MemberRecord{
			PlayerID:       m.GetPlayerId(),
			UserID:         m.GetUserId(),
			Metadata:       maps.Clone(m.GetMetadata()),
			JoinedAt:       fromUnixMs(m.GetJoinedUnixMs()),
			Away:           m.GetAway(),
			Resumable:      m.GetResumable(),
			Generation:     m.GetGeneration(),
			PrevGeneration: m.GetPrevGeneration(),
			PrevValid:      m.GetPrevValid(),
			ResumeSeq:      m.GetResumeSeq(),
			Seq:            m.GetSeq(),
			InputSeq:       m.GetInputSeq(),
			Ring:           m.GetRing(),
			RingFirst:      m.GetRingFirst(),
		}
		copy(mr.TokenHash[:], m.GetTokenHash())
		copy(mr.PrevHash[:], m.GetPrevHash())
		rec.Members[i] = mr
	}
	return rec
}

// grantMsg encodes g for room id (nil: no auth).
func grantMsg(g *room.Grant, id string) *cpb.Grant {
	if g == nil {
		return nil
	}
	return &cpb.Grant{
		UserId:      g.UserID,
		Metadata:    g.Metadata,
		AllowsRoom:  g.AllowsRoom == nil || g.AllowsRoom(id),
		AnyRoom:     g.AnyRoom,
		Create:      g.Create,
		MaxTickRate: uint32(g.MaxTickRate),
		MaxPlayers:  uint32(g.MaxPlayers),
	}
}

// grantOf decodes a grant, checked already for its one room.
func grantOf(g *cpb.Grant) *room.Grant {
	if g == nil {
		return nil
	}
	allows := g.GetAllowsRoom()
	return &room.Grant{
		UserID:      g.GetUserId(),
		Metadata:    maps.Clone(g.GetMetadata()),
		AllowsRoom:  func(string) bool { return allows },
		AnyRoom:     g.GetAnyRoom(),
		Create:      g.GetCreate(),
		MaxTickRate: int(g.GetMaxTickRate()),
		MaxPlayers:  int(g.GetMaxPlayers()),
	}
}
