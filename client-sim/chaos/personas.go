package chaos

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
	"github.com/tickrelay/tickrelay/proto/wire"
)

// Persona is one kind of bad client: what its connections do, the answer
// docs/PROTOCOL.md documents for it, and the check of an outcome against
// that answer.
type Persona struct {
	Name string
	// Does says what its connections do.
	Does string
	// Expected is the documented answer.
	Expected string

	inRoom  bool          // joins an honest room
	visits  bool          // moves between two honest rooms (churners)
	ownRoom bool          // joins a room of its own (kind floods, two to a room)
	gap     time.Duration // pause between two connections of one client
	attack  func(a *attacker)
	judge   func(v view) (documented bool, why string)
}

// The paces and sizes of the attacks. Every flood is far above the limit
// it tests at the relay's defaults (200 messages/s, 256 KiB/s, a 64 KiB
// tick budget) yet paced, so that a few dozen chaos clients do not spend
// the cores the honest clients and the relay share with them.
const (
	// A non-reader's SO_RCVBUF: its window closes at once. The relay's
	// kernel send buffer still absorbs megabytes (autotuned), hence the
	// non-reader's own output: 48 KiB echoed to it every 200 ms (240 KiB/s,
	// 5 messages/s: within the rate limits and the tick budget).
	nonReaderRcvBuf = 4 << 10
	nonReaderEcho   = 48 << 10
	nonReaderEvery  = 200 * time.Millisecond

	floodRcvBuf = 1 << 20              // SO_RCVBUF of a ping flooder (capped by net.core.rmem_max)
	floodBatch  = 32                   // pings and as many Sends outside a room per write
	floodEvery  = 5 * time.Millisecond // 12,800 messages/s: 64 x the message rate limit

	burstCount   = 36
	burstPayload = 64<<10 - 64            // with the envelope, just under max-message-bytes
	burstEvery   = 500 * time.Millisecond // 4.5 MiB/s offered: 18 x the 256 KiB/s byte limit

	kindFloodKinds = 4096
	kindFloodBatch = 1024                  // latest-only Sends per write, each of another kind
	kindFloodEvery = 10 * time.Millisecond // ~100,000 messages/s: 500 x the message rate limit

	trickleLength = 60_000                 // payload the frame header announces
	trickleEvery  = 100 * time.Millisecond // one byte each: the frame would take 100 minutes

	connFloodWave      = 16 // connections opened at once, per client and wave
	connFloodSlowloris = 4  // incomplete requests one client holds open at once

	churnEvery = 50 * time.Millisecond // a pipelined Leave + Join: 40 messages/s

	garbageBytes = 256

	// stallBound: a write blocked this long means the relay neither reads
	// the connection nor closes it.
	stallBound = 10 * time.Second
	// answerBound: the longest wait for the answer to one request.
	answerBound = 10 * time.Second
	// afterBound: how long a connection that did not read during its
	// attack reads what reached it, once the relay has ended it.
	afterBound = 2 * time.Second
)

// Personas is the table of chaos personas; Config.Personas picks from it by
// name.
var Personas = []Persona{
	{
		Name:     "non-reader",
		Does:     "joins an honest room with a 4 KiB `SO_RCVBUF` and never reads again; has the relay echo 48 KiB to it every 200 ms (240 KiB/s, 5 messages/s: within every limit), so that the relay has output to hold back (its kernel send buffer alone absorbs megabytes)",
		Expected: "closed as a slow consumer: `Error{SLOW_CONSUMER}` and close 4000 if they can reach it; as it reads nothing, it is dropped `fail-linger` after its Close (the stream ends or is reset without a Close: `dropped`)",
		inRoom:   true, gap: 250 * time.Millisecond, attack: nonReader, judge: judgeNonReader,
	},
	{
		Name:     "ping-flood",
		Does:     "WebSocket pings and Sends outside a room, 12,800 messages/s (64 × the message rate), never reading; once the relay ends the connection it reads what reached it",
		Expected: "`RATE_LIMITED` with `retry_after_ms` > 0, then `Error{RATE_LIMITED}` and close 4003 after `rate-limit-grace` (or `SLOW_CONSUMER` and 4000 if its unread answers pass `outbound-hard-bytes`); Errors only `NOT_IN_ROOM`, `RATE_LIMITED`, `SLOW_CONSUMER`; `dropped` after being told `RATE_LIMITED` when the Close cannot be flushed to it",
		gap:      250 * time.Millisecond, attack: pingFlood, judge: judgePingFlood,
	},
	{
		Name:     "burst",
		Does:     "joins an honest room and sends 36 × 64 KiB at once every 500 ms (4.5 MiB/s offered), reading",
		Expected: "`RATE_LIMITED` with `retry_after_ms` > 0 (its tick budget, then its byte rate), then `Error{RATE_LIMITED}` and close 4003 once it keeps on past `rate-limit-grace`; no other Error",
		inRoom:   true, gap: 250 * time.Millisecond, attack: burst, judge: judgeRateLimited,
	},
	{
		Name:     "kind-flood",
		Does:     "two to a room of their own, latest-only Sends over 4,096 kinds, about 100,000 messages/s, reading",
		Expected: "`RATE_LIMITED` with `retry_after_ms` > 0, then `Error{RATE_LIMITED}` and close 4003 after `rate-limit-grace`; `OVERLOADED` for messages past its `inbox-per-connection` share while its room's worker is behind; no other Error",
		ownRoom:  true, gap: 250 * time.Millisecond, attack: kindFlood, judge: judgeKindFlood,
	},
	{
		Name:     "trickle",
		Does:     "one binary frame announcing 60,000 bytes, one byte every 100 ms, reading",
		Expected: "`Error{TIMEOUT}` and close 4004 after `message-read-timeout`",
		gap:      250 * time.Millisecond, attack: trickle, judge: judgeTrickle,
	},
	{
		Name:     "conn-flood",
		Does:     "waves of 16 connections every 100 ms, in turn: dropped right after connecting, dropped halfway through the request, dropped right after the 101 (all with a TCP reset: no TIME_WAIT left on client-sim's side), or holding an incomplete request open (at most 4 at once)",
		Expected: "every connect accepted; upgrades answered 101; an incomplete request answered 408 with `Connection: close` after `handshake-timeout`, then the connection closed",
		gap:      100 * time.Millisecond, attack: connFlood, judge: judgeConnFlood,
	},
	{
		Name:     "churn",
		Does:     "moves between two honest rooms 20 times a second, Leave and Join pipelined without waiting for `Left`",
		Expected: "every Leave answered `Left{LEFT}` and every Join `Joined`, by request id, the Left first; no Error; open until client-sim closes it (the relay echoes close 1000)",
		inRoom:   true, visits: true, gap: 250 * time.Millisecond, attack: churn, judge: judgeChurn,
	},
	{
		Name:     "garbage",
		Does:     "in turn: 256 random bytes instead of an HTTP request (the first one not a method character: `before-upgrade`), or, after a good upgrade, instead of a frame (the first byte sets an RSV bit: `after-upgrade`)",
		Expected: "before the upgrade HTTP 400 with `Connection: close`, then the relay's FIN (it reads and discards the rest of the garbage until then, so no reset can destroy the answer); after it close 1002 and no Error",
		gap:      250 * time.Millisecond, attack: garbage, judge: judgeGarbage,
	},
}

// open connects and upgrades a chaos connection. On failure it records the
// outcome and returns nc == nil. The connection's reads and writes fail
// at once when the run ends.
func (a *attacker) open(variant string, o sockOpts) (nc *net.TCPConn, br *bufio.Reader, c *Conn, unwatch func() bool) {
	c = newConn(a.persona.Name, variant)
	nc, err := dialTCP(a.ctx, a.sw.target, a.local, o)
	if err != nil {
		if a.stopped() {
			c.endAs(endUnfinished)
		} else {
			c.dialFailed(err)
		}
		a.record(c)
		return nil, nil, nil, nil
	}
	unwatch = watch(a.ctx, nc)
	a.setDeadline(nc, dialTimeout)
	br, err = upgrade(nc, a.sw.target)
	if err == nil {
		a.setDeadline(nc, 0)
		return nc, br, c, unwatch
	}
	var status ws.StatusError
	switch {
	case errors.As(err, &status):
		c.http(int(status))
	default:
		c.endedBy(err)
		c.finish(a.stopped())
	}
	unwatch()
	abort(nc)
	a.record(c)
	return nil, nil, nil, nil
}

// setDeadline sets nc's read and write deadline d from now (0: none),
// unless the run is over, when every operation must fail at once: the
// watch's deadline in the past must not be overwritten.
func (a *attacker) setDeadline(nc net.Conn, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = nc.SetDeadline(t)
	if a.stopped() {
		_ = nc.SetDeadline(time.Unix(1, 0))
	}
}

// write writes b within stallBound (or until the run ends).
func (a *attacker) write(nc net.Conn, b []byte) error {
	_ = nc.SetWriteDeadline(time.Now().Add(stallBound))
	if a.stopped() {
		_ = nc.SetDeadline(time.Unix(1, 0))
	}
	_, err := nc.Write(b)
	return err
}

// writeFailed sorts out a failed write of a connection under attack: the
// run ended (unfinished), the relay stopped reading without closing (a
// problem), or it reset the connection (read what reached us).
func (a *attacker) writeFailed(err error, c *Conn) {
	switch {
	case a.stopped():
		c.endAs(endUnfinished)
	case isTimeout(err):
		c.fail("writes blocked for %s: the relay neither read the connection nor closed it", stallBound)
		c.endAs(endStuck)
	}
}

// sleepOr waits d; false when the run ended or done was closed first.
func (a *attacker) sleepOr(d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a.ctx.Done():
		return false
	case <-done:
		return false
	}
}

// awaitJoined reads until the Join with request id rid is answered. When
// it is not answered Joined it records why (refused: a problem, and
// client-sim hangs up; the connection ended or the wait timed out: the
// caller's finish sorts it out) and returns false.
func (a *attacker) awaitJoined(nc net.Conn, r *reader, c *Conn, rid uint32) bool {
	a.setDeadline(nc, answerBound)
	var refused *pb.Error
	answered := r.until(func(m *pb.ServerMessage) bool {
		if m.GetRequestId() != rid {
			return false
		}
		refused = m.GetError()
		return m.GetJoined() != nil || refused != nil
	})
	a.setDeadline(nc, 0)
	if answered && refused != nil {
		c.fail("its Join was refused: %s", codeName(refused.GetCode()))
		c.endAs(endClient)
	}
	return answered && refused == nil
}

// nonReader: joins, then never reads while the relay's output for it piles
// up (its own echoes), until the relay ends the connection.
func nonReader(a *attacker) {
	nc, br, c, unwatch := a.open("", sockOpts{rcvbuf: nonReaderRcvBuf})
	if nc == nil {
		return
	}
	defer a.record(c)
	defer abort(nc)
	defer unwatch()
	r := newReader(br, c)
	if err := a.write(nc, joinFrame(1, a.home, a.roomOptions())); err != nil {
		a.writeFailed(err, c)
		c.finish(a.stopped())
		return
	}
	if !a.awaitJoined(nc, r, c, 1) {
		c.finish(a.stopped())
		return
	}
	a.writeUntilEnded(nc, c, nonReaderPump(), nonReaderEvery)
	if !a.stopped() {
		readAvailable(nc, r.br, c, afterBound)
	}
	c.finish(a.stopped())
}

// writeUntilEnded writes b every period without reading, until a write
// fails (the relay ended the connection, or stopped reading it without
// ending it: a problem), the run ends, or maxAttack passes (a problem).
func (a *attacker) writeUntilEnded(nc net.Conn, c *Conn, b []byte, period time.Duration) {
	for {
		if time.Since(c.start) >= maxAttack {
			c.fail("still open after %s", maxAttack)
			c.endAs(endStuck)
			return
		}
		if err := a.write(nc, b); err != nil {
			a.writeFailed(err, c)
			return
		}
		if !a.sleepOr(period, nil) {
			c.endAs(endUnfinished)
			return
		}
	}
}

// pingFlood: pings and Sends outside a room, never reading, until the
// relay ends the connection; then reads whatever reached it.
func pingFlood(a *attacker) {
	nc, br, c, unwatch := a.open("", sockOpts{rcvbuf: floodRcvBuf})
	if nc == nil {
		return
	}
	defer a.record(c)
	defer abort(nc)
	defer unwatch()
	a.writeUntilEnded(nc, c, pingFloodBatch(), floodEvery)
	if !a.stopped() {
		readAvailable(nc, br, c, afterBound)
	}
	c.finish(a.stopped())
}

// readingAttack runs a persona that reads all the time: join (when room is
// set), then send what next returns every period until the relay ends the
// connection or the run ends.
func (a *attacker) readingAttack(room string, period time.Duration, next func(i int) []byte) {
	nc, br, c, unwatch := a.open("", sockOpts{})
	if nc == nil {
		return
	}
	defer a.record(c)
	defer abort(nc)
	defer unwatch()
	r := newReader(br, c)
	if room != "" {
		if err := a.write(nc, joinFrame(1, room, a.roomOptions())); err != nil {
			a.writeFailed(err, c)
			c.finish(a.stopped())
			return
		}
		if !a.awaitJoined(nc, r, c, 1) {
			c.finish(a.stopped())
			return
		}
	}
	go r.run()
	for i := 0; ; i++ {
		if time.Since(c.start) >= maxAttack {
			c.fail("still open after %s", maxAttack)
			c.endAs(endStuck)
			break
		}
		b := next(i)
		if b == nil {
			break
		}
		if err := a.write(nc, b); err != nil {
			a.writeFailed(err, c)
			break
		}
		if !a.sleepOr(period, r.done) {
			break
		}
	}
	select {
	case <-r.done:
	case <-a.ctx.Done():
		c.endAs(endUnfinished)
	case <-time.After(stallBound):
		c.fail("the relay did not end the connection within %s of the attack's end", stallBound)
		c.endAs(endStuck)
	}
	unwatch()
	abort(nc)
	<-r.done
	c.finish(a.stopped())
}

// The attacks' bytes are built once and shared by every chaos client
// (writes only read them): a few dozen bursters rebuilding 2.3 MB each
// time would spend client-sim's share of the cores, and its honest
// clients' latency with it.
var (
	burstBytes = sync.OnceValue(func() []byte {
		big := sendFrame(0, &wire.SendView{Payload: chaosPayload(burstPayload), Kind: Kind})
		b := make([]byte, 0, burstCount*len(big))
		for range burstCount {
			b = append(b, big...)
		}
		return b
	})
	kindFloodBatches = sync.OnceValue(func() [][]byte {
		batches := make([][]byte, kindFloodKinds/kindFloodBatch)
		for k := range kindFloodKinds {
			i := k / kindFloodBatch
			batches[i] = append(batches[i], sendFrame(0, &wire.SendView{
				Payload: chaosPayload(8), Kind: uint32(k + 1), LatestOnly: true,
			})...)
		}
		return batches
	})
	// A masked binary frame announcing trickleLength bytes: the header
	// and the payload go out one byte at a time, and it never completes.
	trickleFrame = sync.OnceValue(func() []byte {
		return ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame(make([]byte, trickleLength))))
	})
	nonReaderPump = sync.OnceValue(func() []byte {
		// Target 0 is never a player: only the echo reaches anyone, and
		// that is the non-reader itself.
		return sendFrame(0, &wire.SendView{Payload: chaosPayload(nonReaderEcho), Kind: Kind, Targets: []uint32{0}, Echo: true})
	})
	pingFloodBatch = sync.OnceValue(func() []byte {
		var batch []byte
		outside := sendFrame(7, &wire.SendView{Payload: chaosPayload(8), Kind: Kind})
		ping := pingFrame([]byte("chaos!!!"))
		for range floodBatch {
			batch = append(batch, ping...)
			batch = append(batch, outside...)
		}
		return batch
	})
)

func burst(a *attacker) {
	b := burstBytes()
	a.readingAttack(a.home, burstEvery, func(int) []byte { return b })
}

func kindFlood(a *attacker) {
	batches := kindFloodBatches()
	a.readingAttack(a.own, kindFloodEvery, func(i int) []byte { return batches[i%len(batches)] })
}

func trickle(a *attacker) {
	frame := trickleFrame()
	a.readingAttack("", trickleEvery, func(i int) []byte {
		if i >= len(frame) {
			return nil
		}
		return frame[i : i+1]
	})
}

// judgeNonReader: SLOW_CONSUMER and 4000, or dropped.
func judgeNonReader(v view) (bool, string) {
	if ok, why := refusedAtLimit(v); ok || why != "" {
		return ok, why
	}
	if v.joined == 0 {
		return false, "its Join was not answered Joined"
	}
	if ok, why := v.hasOnly(pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER); !ok {
		return false, why
	}
	switch {
	case v.closedWith(4000, pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER):
		return true, ""
	case v.end == endDropped:
		return true, ""
	}
	return false, "not closed as a slow consumer"
}

func judgePingFlood(v view) (bool, string) {
	if ok, why := refusedAtLimit(v); ok || why != "" {
		return ok, why
	}
	if ok, why := v.hasOnly(pb.ErrorCode_ERROR_CODE_NOT_IN_ROOM, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER); !ok {
		return false, why
	}
	// Told to slow down: a RATE_LIMITED before the one sent with the Close.
	told := v.retry != nil && v.retry.Min > 0
	switch {
	case v.closedWith(4000, pb.ErrorCode_ERROR_CODE_SLOW_CONSUMER):
		return true, ""
	case v.closedWith(4003, pb.ErrorCode_ERROR_CODE_RATE_LIMITED) && told:
		return true, ""
	case v.closedWith(4003, pb.ErrorCode_ERROR_CODE_RATE_LIMITED):
		return false, "closed 4003 without a RATE_LIMITED with retry_after_ms > 0 before"
	case v.end == endDropped && told:
		return true, ""
	case v.end == endDropped:
		return false, "dropped without being told RATE_LIMITED"
	}
	return false, "neither rate limited (4003) nor a slow consumer (4000)"
}

// judgeRateLimited: bursters and kind floods.
func judgeRateLimited(v view) (bool, string) {
	if ok, why := refusedAtLimit(v); ok || why != "" {
		return ok, why
	}
	if v.joined == 0 {
		return false, "its Join was not answered Joined"
	}
	if ok, why := v.hasOnly(pb.ErrorCode_ERROR_CODE_RATE_LIMITED); !ok {
		return false, why
	}
	if v.retry == nil || v.retry.Min <= 0 {
		return false, "no RATE_LIMITED with retry_after_ms > 0"
	}
	if !v.closedWith(4003, pb.ErrorCode_ERROR_CODE_RATE_LIMITED) {
		return false, "not closed with Error RATE_LIMITED and 4003"
	}
	return true, ""
}

// judgeKindFlood: judgeRateLimited, with OVERLOADED allowed too: a flood
// this fast can fill its connection's share of the room worker's inbox
// before its rate limiter has had its say (on a busy machine, the worker
// falls behind), and the relay answers that share's overflow OVERLOADED.
func judgeKindFlood(v view) (bool, string) {
	if ok, why := refusedAtLimit(v); ok || why != "" {
		return ok, why
	}
	if v.joined == 0 {
		return false, "its Join was not answered Joined"
	}
	if ok, why := v.hasOnly(pb.ErrorCode_ERROR_CODE_RATE_LIMITED, pb.ErrorCode_ERROR_CODE_OVERLOADED); !ok {
		return false, why
	}
	if v.retry == nil || v.retry.Min <= 0 {
		return false, "no RATE_LIMITED with retry_after_ms > 0"
	}
	if !v.closedWith(4003, pb.ErrorCode_ERROR_CODE_RATE_LIMITED) {
		return false, "not closed with Error RATE_LIMITED and 4003"
	}
	return true, ""
}

func judgeTrickle(v view) (bool, string) {
	if ok, why := refusedAtLimit(v); ok || why != "" {
		return ok, why
	}
	if ok, why := v.hasOnly(pb.ErrorCode_ERROR_CODE_TIMEOUT); !ok {
		return false, why
	}
	if !v.closedWith(4004, pb.ErrorCode_ERROR_CODE_TIMEOUT) {
		return false, "not closed with Error TIMEOUT and 4004"
	}
	return true, ""
}

// refusedAtLimit accepts the documented refusals of a relay at its
// connection limit, whatever the persona: HTTP 503, or Error SERVER_FULL
// and close 4002 right after the upgrade. why is set when the outcome is a
// refusal but not a documented one.
func refusedAtLimit(v view) (ok bool, why string) {
	switch {
	case v.end == endHTTP && v.httpStatus == http.StatusServiceUnavailable:
		return true, ""
	case v.closedWith(4002, pb.ErrorCode_ERROR_CODE_SERVER_FULL):
		return true, ""
	case v.end == endHTTP:
		return false, fmt.Sprintf("upgrade refused with HTTP %d", v.httpStatus)
	case v.end == endDial:
		return false, "connect failed (" + v.dialErr + ")"
	}
	return false, ""
}

// Connection flood variants.
const (
	floodTCPDrop     = "tcp-drop"
	floodPartialDrop = "partial-drop"
	floodUpgradeDrop = "upgrade-drop"
	floodSlowloris   = "slowloris"
)

var floodVariants = []string{floodTCPDrop, floodPartialDrop, floodUpgradeDrop, floodSlowloris}

// partialRequest is the start of an upgrade request, never finished.
const partialRequest = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"

// connFlood opens a wave of connections at once and drops or holds them;
// holding ones (slowloris) go on in the background, at most
// connFloodSlowloris per client.
func connFlood(a *attacker) {
	if a.held == nil {
		a.held = make(chan struct{}, connFloodSlowloris)
	}
	done := make(chan struct{}, connFloodWave)
	started := 0
	for i := range connFloodWave {
		variant := floodVariants[(a.cycle*connFloodWave+i)%len(floodVariants)]
		if variant == floodSlowloris {
			select {
			case a.held <- struct{}{}:
			default:
				variant = floodTCPDrop // enough are held already
			}
		}
		if variant == floodSlowloris {
			a.sw.wg.Add(1)
			go func() {
				defer a.sw.wg.Done()
				defer func() { <-a.held }()
				a.floodOne(variant)
			}()
			continue
		}
		started++
		go func() {
			defer func() { done <- struct{}{} }()
			a.floodOne(variant)
		}()
	}
	for range started {
		<-done
	}
}

// floodOne is one connection of a flood wave.
func (a *attacker) floodOne(variant string) {
	c := newConn(a.persona.Name, variant)
	defer a.record(c)
	nc, err := dialTCP(a.ctx, a.sw.target, a.local, sockOpts{})
	if err != nil {
		if a.stopped() {
			c.endAs(endUnfinished)
		} else {
			c.dialFailed(err)
		}
		return
	}
	defer abort(nc)
	unwatch := watch(a.ctx, nc)
	defer unwatch()
	switch variant {
	case floodTCPDrop:
		c.endAs(endClient)
	case floodPartialDrop:
		if err := a.write(nc, []byte(partialRequest[:len(partialRequest)/2])); err != nil && !a.stopped() {
			c.fail("writing half a request: %v", err)
		}
		c.endAs(endClient)
	case floodUpgradeDrop:
		a.setDeadline(nc, dialTimeout)
		_, err := upgrade(nc, a.sw.target)
		var status ws.StatusError
		switch {
		case err == nil:
			c.http(http.StatusSwitchingProtocols)
		case errors.As(err, &status):
			c.http(int(status))
		default:
			c.endedBy(err)
			c.finish(a.stopped())
		}
	case floodSlowloris:
		if err := a.write(nc, []byte(partialRequest)); err != nil {
			c.endedBy(err)
			c.finish(a.stopped())
			return
		}
		a.setDeadline(nc, maxAttack)
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			c.endedBy(err)
			c.finish(a.stopped())
			return
		}
		a.httpAnswered(nc, br, resp, c)
	}
}

func judgeConnFlood(v view) (bool, string) {
	if v.end == endDial {
		return false, "connect failed (" + v.dialErr + "): the relay did not accept it"
	}
	switch v.variant {
	case floodTCPDrop, floodPartialDrop:
		if v.end == endClient {
			return true, ""
		}
	case floodUpgradeDrop:
		if v.end == endHTTP && (v.httpStatus == http.StatusSwitchingProtocols || v.httpStatus == http.StatusServiceUnavailable) {
			return true, ""
		}
	case floodSlowloris:
		if v.end == endHTTP && (v.httpStatus == http.StatusRequestTimeout || v.httpStatus == http.StatusServiceUnavailable) {
			return true, ""
		}
	}
	return false, "not the documented answer for " + v.variant
}

// churn moves between its two honest rooms with pipelined Leave and Join
// until the run ends, checking every answer, then closes cleanly.
func churn(a *attacker) {
	c := newConn(a.persona.Name, "")
	defer a.record(c)
	nc, err := dialTCP(a.ctx, a.sw.target, a.local, sockOpts{})
	if err != nil {
		if a.stopped() {
			c.endAs(endUnfinished)
		} else {
			c.dialFailed(err)
		}
		return
	}
	defer abort(nc)
	_ = nc.SetDeadline(time.Now().Add(dialTimeout))
	br, err := upgrade(nc, a.sw.target)
	if err != nil {
		var status ws.StatusError
		if errors.As(err, &status) {
			c.http(int(status))
		} else {
			c.endedBy(err)
			c.finish(a.stopped())
		}
		return
	}
	_ = nc.SetDeadline(time.Time{})
	r := newReader(br, c)
	answers := make(chan *pb.ServerMessage, 64)
	r.wait(func(m *pb.ServerMessage) bool {
		if m.GetRequestId() != 0 || m.GetError() != nil {
			select {
			case answers <- m:
			default:
				c.fail("more unread answers than requests")
			}
		}
		return false
	})
	go r.run()
	defer func() { <-r.done }()
	defer abort(nc) // ends the reader if the close exchange did not

	expect := func(rid uint32, want string) bool {
		t := time.NewTimer(answerBound)
		defer t.Stop()
		select {
		case m := <-answers:
			got := "other"
			switch {
			case m.GetJoined() != nil:
				got = "joined"
			case m.GetLeft() != nil && m.GetLeft().GetReason() == pb.LeaveReason_LEAVE_REASON_LEFT:
				got = "left"
			case m.GetError() != nil:
				got = "error " + codeName(m.GetError().GetCode())
			}
			if got != want || m.GetRequestId() != rid {
				c.fail("request %d: want %s, got %s for request %d", rid, want, got, m.GetRequestId())
				return false
			}
			return true
		case <-r.done:
			c.fail("the relay ended the connection while request %d (%s) was pending", rid, want)
			return false
		case <-a.ctx.Done():
			return false
		case <-t.C:
			c.fail("request %d not answered (%s) within %s", rid, want, answerBound)
			return false
		}
	}
	rooms := [2]string{a.home, a.next}
	rid := uint32(1)
	ok := a.write(nc, joinFrame(rid, rooms[0], a.roomOptions())) == nil && expect(rid, "joined")
	moves := 0
	for ok && !a.stopped() {
		if !a.sleepOr(churnEvery, r.done) {
			break
		}
		moves++
		pair := append(leaveFrame(rid+1), joinFrame(rid+2, rooms[moves%2], a.roomOptions())...)
		if err := a.write(nc, pair); err != nil {
			if !a.stopped() {
				c.fail("writing Leave and Join: %v", err)
			}
			break
		}
		ok = expect(rid+1, "left") && expect(rid+2, "joined")
		rid += 2
	}
	c.note(fmt.Sprintf("%d moves", moves))
	select {
	case <-r.done:
		if !a.stopped() {
			c.fail("closed by the relay")
		}
		c.finish(false)
		return
	default:
	}
	if !a.stopped() {
		c.finish(false) // a problem ended the loop; the relay did not answer
		return
	}
	// The run is over: close cleanly; the relay echoes the Close.
	c.endAs(endClient)
	_ = nc.SetDeadline(time.Now().Add(answerBound))
	if _, err := nc.Write(closeFrame(ws.StatusNormalClosure)); err != nil {
		c.fail("writing Close: %v", err)
		return
	}
	select {
	case <-r.done:
	case <-time.After(answerBound):
		c.fail("no Close from the relay within %s of ours", answerBound)
	}
}

func judgeChurn(v view) (bool, string) {
	if ok, why := refusedAtLimit(v); ok || why != "" {
		return ok, why
	}
	if len(v.errors) > 0 {
		return false, "got an Error"
	}
	if v.end != endClient {
		return false, "ended before client-sim closed it"
	}
	if v.closeCode >= 0 && v.closeCode != 1000 {
		return false, fmt.Sprintf("the relay answered our Close with %d", v.closeCode)
	}
	return true, ""
}

// Garbage variants.
const (
	garbageBefore = "before-upgrade"
	garbageAfter  = "after-upgrade"
)

// garbage sends random bytes before or after the upgrade, alternately.
func garbage(a *attacker) {
	junk := make([]byte, garbageBytes)
	for i := range junk {
		junk[i] = byte(a.rng.UintN(256))
	}
	if a.cycle%2 == 0 {
		a.garbageBefore(junk)
		return
	}
	// After the upgrade: the first byte sets an RSV bit (no extension was
	// negotiated), so the stream is a protocol error whatever follows.
	junk[0] |= 0x10 << a.rng.UintN(3)
	nc, br, c, unwatch := a.open(garbageAfter, sockOpts{})
	if nc == nil {
		return
	}
	defer a.record(c)
	defer abort(nc)
	defer unwatch()
	if err := a.write(nc, junk); err != nil {
		a.writeFailed(err, c)
	}
	a.setDeadline(nc, answerBound)
	r := newReader(br, c)
	for {
		if _, ended := r.next(); ended {
			break
		}
	}
	c.finish(a.stopped())
}

func (a *attacker) garbageBefore(junk []byte) {
	// A first byte that no HTTP method may start with.
	junk[0] = nonToken[a.rng.UintN(uint(len(nonToken)))]
	c := newConn(a.persona.Name, garbageBefore)
	defer a.record(c)
	nc, err := dialTCP(a.ctx, a.sw.target, a.local, sockOpts{})
	if err != nil {
		if a.stopped() {
			c.endAs(endUnfinished)
		} else {
			c.dialFailed(err)
		}
		return
	}
	defer abort(nc)
	unwatch := watch(a.ctx, nc)
	defer unwatch()
	if err := a.write(nc, junk); err != nil {
		a.writeFailed(err, c)
		c.finish(a.stopped())
		return
	}
	a.setDeadline(nc, answerBound)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.endedBy(err)
		c.finish(a.stopped())
		return
	}
	a.httpAnswered(nc, br, resp, c)
}

// httpAnswered records an HTTP answer before the upgrade and checks what
// PROTOCOL.md promises of every such answer: Connection: close, and the
// relay closing the connection after its body.
func (a *attacker) httpAnswered(nc net.Conn, br *bufio.Reader, resp *http.Response, c *Conn) {
	c.http(resp.StatusCode)
	a.setDeadline(nc, afterBound)
	_, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil && !a.stopped() {
		c.fail("reading the body of HTTP %d: %v", resp.StatusCode, err)
		return
	}
	if !resp.Close {
		c.fail("HTTP %d without Connection: close", resp.StatusCode)
	}
	if _, err := br.ReadByte(); (err == nil || isTimeout(err)) && !a.stopped() {
		c.fail("the connection stayed open after HTTP %d", resp.StatusCode)
	}
}

// nonToken holds bytes that cannot start an HTTP method (RFC 9110 tchar).
var nonToken = func() []byte {
	var out []byte
	for b := 0; b < 256; b++ {
		if b < 0x21 || b >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", byte(b)) >= 0 {
			out = append(out, byte(b))
		}
	}
	return out
}()

func judgeGarbage(v view) (bool, string) {
	switch v.variant {
	case garbageBefore:
		if v.end == endHTTP && v.httpStatus == http.StatusBadRequest {
			return true, ""
		}
		return false, "not answered HTTP 400"
	case garbageAfter:
		if ok, why := refusedAtLimit(v); ok || why != "" {
			return ok, why
		}
		if len(v.errors) > 0 {
			return false, "an Error before the protocol-error close"
		}
		if v.closedWith(1002, pb.ErrorCode_ERROR_CODE_UNSPECIFIED) {
			return true, ""
		}
		return false, "not closed with 1002"
	}
	return false, "unknown variant"
}

// chaosPayload is n bytes marking chaos traffic (the Kind field is what
// receivers check; the bytes only make it easy to spot in a capture).
func chaosPayload(n int) []byte {
	p := make([]byte, n)
	copy(p, "tickrelay-chaos ")
	return p
}
