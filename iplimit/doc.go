// Package iplimit limits what one client address may do to the relay:
// concurrent connections, handshakes per second, joins per second, and
// failed joins (guessed room codes) per minute with a lockout. Memory is
// bounded, the limiter never blocks, and it is safe to call from gnet event
// loops. The address it is given should be the client's real address (see
// package clientip when the relay runs behind proxies).
//
// # Using it
//
// One Limiter serves the whole relay:
//
//   - OpenConn when a connection is accepted (false: close it), CloseConn
//     when a connection that OpenConn allowed ends;
//   - AllowHandshake before answering a WebSocket upgrade (false: answer
//     429 with a Retry-After of retryAfter);
//   - AllowJoin before a Join (false: refuse it, with retryAfter as the
//     hint), JoinFailed after a Join that failed because of the client (room
//     not found, room full, token refused), LockedOut to ask without
//     recording;
//   - Sweep(now) from the server's periodic sweeper, every few seconds: it
//     forgets addresses whose state is that of a new address (no
//     connection, no lockout, all buckets full), which loses nothing;
//   - Stats for metrics: tracked addresses, refusals by kind, lockouts, and
//     the calls let through untracked because the table was full.
//
// # Limits and defaults
//
// A zero Config field takes its default; a negative one turns its limit off:
//
//	MaxConnsPerIP         64     concurrent connections
//	HandshakesPerSecond   10/s   burst 40 (4 s of the rate)
//	JoinsPerSecond        10/s   burst 40
//	FailedJoinsPerMinute  30     then locked out of joining for Lockout (1 min)
//	MaxTracked            65536  addresses remembered at once
//	IPv6PrefixBits        64     IPv6 addresses are limited per /64
//
// Rates are token buckets (golang.org/x/time/rate): a burst is spent at
// once and refills at the rate. The failed-join budget works the same way,
// refilling FailedJoinsPerMinute per minute; the failure that finds it
// empty starts the lockout. A guesser that ignores every refusal therefore
// gets at most the budget, then FailedJoinsPerMinute a minute plus one per
// lockout. With 6-character server-made codes (31^6, about 8.9e8) and
// 10,000 open rooms, that is about 0.5 rooms found per address per day at
// the default: enough against one machine, not against a botnet. Rooms
// that must stay private need tokens (package auth), which this limit
// complements.
//
// # Memory and overload
//
// Each tracked address costs about 370 bytes on the heap when all of its
// buckets are in use (measured by BenchmarkMemoryPerAddress; an address
// that only connects costs less), so the default MaxTracked of 65536 holds
// at most about 24 MiB. When the table is full the limiter fails open: a
// new address is allowed and not tracked, and Stats.Untracked counts it, so
// a flood of addresses degrades the limits rather than locking out players.
// Addresses leave the table as Sweep finds them idle, typically a few
// seconds after their last connection closes (4 s for the default bursts; a
// lockout is kept until it ends).
//
// # Many players behind one address
//
// Limits per address are limits per household, school, office or mobile
// carrier gateway. Take a school of 400 pupils behind one public IPv4
// address, where a class of 30 starts the game together:
//
//   - 30 connections at once: within MaxConnsPerIP (64), which leaves room
//     for a second class. Size it to the number of players you expect
//     behind one address at the same time.
//   - 30 handshakes in a second or two: within the burst of 40; a Wi-Fi
//     drop that reconnects the whole class is absorbed the same way, and a
//     third class connecting at the same moment would wait a few seconds
//     (retryAfter) for the rate to catch up. Size the burst to the largest
//     group that connects at the same moment.
//   - 30 joins: the same reasoning with the join bucket.
//   - Failed joins are shared too: 30 pupils each mistyping a room code once
//     use the whole budget, and the 31st mistake locks the school out of
//     joining for a minute (connected players are not affected). This is
//     the limit most likely to hurt a shared address; raise
//     FailedJoinsPerMinute for deployments with such users, or rely on
//     tokens and turn it off.
//
// Known venues (a school district's gateway, a LAN party, a load-test
// host) can be listed in Config.Exempt. Carrier-grade NAT puts unrelated
// users behind one IPv4 address; IPv6 avoids this, which is why IPv6 is
// limited per /64 (one home or host) rather than per address, which a
// client could change at will.
package iplimit
