// Package room is the pure-logic heart of tickrelay: the registry of rooms,
// their members, routing of relayed messages, and the fixed-rate tick
// schedule that batches everything addressed to a player into one frame per
// tick. It opens no sockets and never imports the server package; the
// transport plugs in through the Peer interface.
//
// # Ownership
//
// Rooms are sharded over a fixed set of workers (one goroutine each). A
// worker owns every room placed on it (by a hash of the room id), the members
// of those rooms and their pending messages; nothing else reads or writes
// them. Other goroutines talk to a worker only through its bounded inbox.
// Ticks of all of a worker's rooms are driven from one heap of absolute
// deadlines and one timer, so 10,000 rooms need neither 10,000 timers nor
// 10,000 goroutines. No lock is shared by all rooms.
//
// A Seat is one connection's place in the room system. Its request-side
// state (which worker its commands go to) belongs to the goroutine that
// calls Join/Send/Leave/Disconnect for it — the connection's event loop — and
// those calls for one seat must come from one goroutine at a time. Its room
// side (current room, player id) belongs to the worker of that room.
//
// # Seat life cycle
//
// A seat's atomic state is idle, joining, inRoom or leaving. The caller moves
// it idle→joining (Join) and joining|inRoom→leaving (Leave); the worker moves
// it joining→inRoom (join succeeded), joining→idle (join failed),
// leaving→idle (leave done) and inRoom→idle (kick, room closed, slow
// consumer), always after it has Delivered the message that explains the
// change. Every transition is a compare-and-swap, so a Leave racing with a
// kick cannot be lost: the kick leaves the state at leaving and the queued
// leave completes it.
//
// Commands of one seat go to one worker through one FIFO inbox (joins,
// leaves and sends in one ordered queue), so a Send pipelined right after a
// Join is routed after the join, and a Send followed by a Leave is relayed
// before the player leaves. A seat can only move to another worker through
// idle, which the old worker sets as its last act, so commands to two
// workers never overlap — except Sends already queued on the old worker when
// a worker-side removal (kick, close, slow consumer) happens; those find the
// seat's member pointer owned by another worker and are answered with an
// Error NOT_IN_ROOM.
//
// # Ticks and frames
//
// A room's deadlines are base + n*period (drift-free). A new room's first
// deadline is a pseudo-random fraction of a period away, so rooms created
// together do not all tick at the same instant. A worker that falls more
// than a period behind skips the missed tick numbers (counted as an overrun)
// instead of running catch-up ticks. At each tick every member with
// something addressed to it gets one Frame: the delivery records (each
// relayed message is encoded once, when it is routed) and event records,
// copied into one pooled buffer. Frames larger than Config.MaxFrameBytes are
// split into several frames of the same tick. Immediate rooms flush after
// each inbox batch instead and number their flushes.
//
// # Back-pressure
//
// A peer that reports Congested at tick time gets nothing; what was
// addressed to it moves to its backlog (shared, reference-counted records,
// not copies), where latest-only updates keep superseding older ones. The
// backlog goes out first once the peer drains; past Config.MaxBacklogBytes
// the peer is evicted as a slow consumer and the room goes on without it.
package room
