package chaos

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/tickrelay/tickrelay/client-sim/report"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// end is how a chaos connection ended.
type end uint8

const (
	endNone       end = iota // still open
	endClose                 // the relay's Close frame was read
	endDropped               // the stream ended (end of file, reset) without a Close
	endHTTP                  // the relay answered the HTTP request and closed (before any upgrade)
	endClient                // client-sim ended it with nothing left to answer
	endUnfinished            // the run ended first
	endDial                  // the TCP connect failed
	endStuck                 // no answer within the persona's bound
)

// Conn is what one chaos connection saw of the relay. The reader goroutine
// and the persona's goroutine both write it: every method locks.
type Conn struct {
	mu      sync.Mutex
	persona string
	variant string
	start   time.Time
	endAt   time.Time
	end     end

	httpStatus  int
	closeCode   int
	closeReason string
	readErr     error
	dialErr     string

	errors map[pb.ErrorCode]int
	// closeError is the Error received right before the Close frame (the
	// relay sends them together), closeRetry its retry_after_ms.
	closeError pb.ErrorCode
	closeRetry int64
	// retry is the range of retry_after_ms of the RATE_LIMITED answers
	// that told the client to slow down (not the one sent with a Close).
	retry *report.Range
	// lastError is the latest message when it was an Error (and
	// lastRetry its hint): it becomes closeError if the Close follows.
	lastError pb.ErrorCode
	lastRetry int64
	joined    int // Joined answers
	left      int // Left answers
	frames    int
	pongs     int
	// problem is what the persona found against the documented behaviour
	// beyond the end itself (an unanswered request, answers out of
	// order); notes are details for the report.
	problem string
	notes   []string
}

func newConn(persona, variant string) *Conn {
	return &Conn{persona: persona, variant: variant, start: time.Now(), closeCode: -1, closeRetry: -1, lastRetry: -1}
}

// settleError files the latest Error as one that told the client
// something (not the Close's own); mu held.
func (c *Conn) settleError() {
	if c.lastError == pb.ErrorCode_ERROR_CODE_RATE_LIMITED && c.lastRetry >= 0 {
		c.retry = c.retry.Extend(c.lastRetry)
	}
	c.lastError, c.lastRetry = pb.ErrorCode_ERROR_CODE_UNSPECIFIED, -1
}

func (c *Conn) endAs(e end) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setEnd(e)
}

// setEnd records the end once; mu held.
func (c *Conn) setEnd(e end) {
	if c.end == endNone {
		c.end, c.endAt = e, time.Now()
	}
}

func (c *Conn) closed(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeCode < 0 {
		c.closeCode, c.closeReason = code, reason
		c.closeError, c.closeRetry = c.lastError, c.lastRetry
		c.lastError, c.lastRetry = pb.ErrorCode_ERROR_CODE_UNSPECIFIED, -1
	}
	c.setEnd(endClose)
}

// endedBy records the error that ended the reader.
func (c *Conn) endedBy(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readErr == nil {
		c.readErr = err
	}
}

// finish settles the end of a connection whose reader stopped without a
// Close: the stream ended (dropped), or a read timed out, because the run
// was over (stopped: unfinished) or with the run still going (stuck: no
// answer within the persona's bound).
func (c *Conn) finish(stopped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settleError()
	switch {
	case c.end != endNone:
	case c.readErr == nil || isTimeout(c.readErr):
		if stopped {
			c.setEnd(endUnfinished)
		} else {
			c.setEnd(endStuck)
		}
	default:
		c.setEnd(endDropped)
	}
}

func (c *Conn) http(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.httpStatus = status
	c.setEnd(endHTTP)
}

func (c *Conn) dialFailed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dialErr = dialKind(err)
	c.setEnd(endDial)
}

func (c *Conn) countControl(op ws.OpCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settleError()
	if op == ws.OpPong {
		c.pongs++
	}
}

func (c *Conn) countFrame(int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settleError()
	c.frames++
}

func (c *Conn) answer(m *pb.ServerMessage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.settleError()
	switch {
	case m.GetError() != nil:
		e := m.GetError()
		if c.errors == nil {
			c.errors = map[pb.ErrorCode]int{}
		}
		c.errors[e.GetCode()]++
		c.lastError, c.lastRetry = e.GetCode(), int64(e.GetRetryAfterMs())
	case m.GetJoined() != nil:
		c.joined++
	case m.GetLeft() != nil:
		c.left++
	case m.GetPong() != nil:
		c.pongs++
	}
}

// fail records what the persona found against the documented behaviour
// (the first problem wins: it is usually the cause of the rest).
func (c *Conn) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.problem == "" {
		c.problem = fmt.Sprintf(format, args...)
	}
}

func (c *Conn) note(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.notes) < 4 {
		c.notes = append(c.notes, s)
	}
}

// view is a consistent copy of a Conn for judging.
type view struct {
	persona, variant string
	end              end
	after            time.Duration
	httpStatus       int
	closeCode        int
	closeReason      string
	dialErr          string
	errors           map[pb.ErrorCode]int
	closeError       pb.ErrorCode
	closeRetry       int64
	retry            *report.Range
	joined, left     int
	problem          string
	notes            []string
}

func (c *Conn) view() view {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := view{persona: c.persona, variant: c.variant, end: c.end, httpStatus: c.httpStatus,
		closeCode: c.closeCode, closeReason: c.closeReason, dialErr: c.dialErr,
		errors: maps.Clone(c.errors), closeError: c.closeError, closeRetry: c.closeRetry, joined: c.joined, left: c.left,
		problem: c.problem, notes: slices.Clone(c.notes)}
	if c.retry != nil {
		r := *c.retry
		v.retry = &r
	}
	if !c.endAt.IsZero() {
		v.after = c.endAt.Sub(c.start)
	}
	return v
}

// answered says whether the relay itself ended or refused the connection
// (the time until then is worth reporting).
func (v view) answered() bool {
	return v.end == endClose || v.end == endDropped || v.end == endHTTP
}

// outcome is the connection's entry in the report's outcome counts.
func (v view) outcome() string {
	var s string
	switch v.end {
	case endClose:
		s = "close:" + strconv.Itoa(v.closeCode)
		if v.closeError != pb.ErrorCode_ERROR_CODE_UNSPECIFIED {
			s = "error:" + codeName(v.closeError) + "+" + s
		}
	case endDropped:
		s = "dropped"
	case endHTTP:
		s = "http:" + strconv.Itoa(v.httpStatus)
	case endClient:
		s = "client_closed"
	case endUnfinished:
		s = "unfinished"
	case endDial:
		s = "dial:" + v.dialErr
	case endStuck:
		s = "no_answer"
	default:
		s = "open"
	}
	if v.variant != "" {
		s = v.variant + " " + s
	}
	return s
}

// hasOnly says whether every Error code received is among allowed.
func (v view) hasOnly(allowed ...pb.ErrorCode) (bool, string) {
	for code := range v.errors {
		if !slices.Contains(allowed, code) {
			return false, "unexpected Error " + codeName(code)
		}
	}
	return true, ""
}

// closedWith says whether the connection ended with the Close code and,
// when errCode is set, with that Error just before it.
func (v view) closedWith(code int, errCode pb.ErrorCode) bool {
	return v.end == endClose && v.closeCode == code &&
		(errCode == pb.ErrorCode_ERROR_CODE_UNSPECIFIED || v.closeError == errCode)
}

func codeName(c pb.ErrorCode) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "ERROR_CODE_"))
}

// describe is one line about an undocumented outcome, for the report.
func (v view) describe(why string) string {
	s := fmt.Sprintf("%s: %s after %s: %s", v.persona, v.outcome(), v.after.Round(time.Millisecond), why)
	if len(v.errors) > 0 {
		var parts []string
		for _, code := range slices.Sorted(maps.Keys(v.errors)) {
			parts = append(parts, fmt.Sprintf("%s=%d", codeName(code), v.errors[code]))
		}
		s += " (errors " + strings.Join(parts, " ") + ")"
	}
	if v.closeReason != "" {
		s += fmt.Sprintf(" (close reason %q)", v.closeReason)
	}
	if len(v.notes) > 0 {
		s += " (" + strings.Join(v.notes, "; ") + ")"
	}
	return s
}

// tally accumulates one persona's connections into its report section.
// Safe for concurrent use.
type tally struct {
	mu   sync.Mutex
	p    report.ChaosPersona
	hist histogram
}

func newTally(p *Persona, clients int) *tally {
	return &tally{p: report.ChaosPersona{Persona: p.Name, Expected: p.Expected, Clients: clients,
		Outcomes: map[string]int64{}}, hist: newHistogram()}
}

// add judges one finished (or stopped) connection and counts it; it
// reports whether the connection got an undocumented answer.
func (t *tally) add(p *Persona, c *Conn) (undocumented bool) {
	v := c.view()
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &t.p
	r.Connections++
	r.Outcomes[v.outcome()]++
	for code, n := range v.errors {
		if r.Errors == nil {
			r.Errors = map[string]int64{}
		}
		r.Errors[codeName(code)] += int64(n)
	}
	if v.retry != nil {
		r.RetryAfterMs = r.RetryAfterMs.Extend(v.retry.Min).Extend(v.retry.Max)
	}
	if v.closeError != pb.ErrorCode_ERROR_CODE_UNSPECIFIED && v.closeRetry >= 0 {
		r.CloseRetryAfterMs = r.CloseRetryAfterMs.Extend(v.closeRetry)
	}
	if v.end == endClose {
		if r.CloseReasons == nil {
			r.CloseReasons = map[string]int64{}
		}
		r.CloseReasons[strings.TrimSpace(strconv.Itoa(v.closeCode)+" "+v.closeReason)]++
	}
	if v.end == endUnfinished {
		r.Unfinished++
		return false
	}
	r.Finished++
	if v.answered() {
		t.hist.record(v.after)
	}
	ok, why := p.judge(v)
	if ok && v.problem != "" {
		ok, why = false, v.problem
	}
	if ok {
		r.Documented++
		return false
	}
	r.Undocumented++
	if len(r.Violations) < report.MaxViolations {
		r.Violations = append(r.Violations, v.describe(why))
	}
	return true
}

func (t *tally) report() report.ChaosPersona {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.p
	out.AnsweredAfterMs = report.PercentilesOf(t.hist.h)
	out.AnsweredAfterHist = report.EncodeHistogram(t.hist.h)
	return out
}

// dialKind classifies a connect failure as client-sim's honest clients do.
func dialKind(err error) string {
	var status ws.StatusError
	switch {
	case errors.As(err, &status):
		return "http_" + strconv.Itoa(int(status))
	case isReset(err):
		return "reset"
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		return "no_ephemeral_port"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too_many_open_files"
	default:
		return "other"
	}
}
