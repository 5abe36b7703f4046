package report

import (
	"fmt"
	"maps"
	"slices"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Chaos is what client-sim's chaos connections (-chaos) got from the
// server, by persona. Every other figure of a Report is the honest
// clients' alone: their deliveries, latency, errors.
type Chaos struct {
	// Clients is the number of chaos clients; each opens one connection
	// after another for the whole run.
	Clients int `json:"clients"`
	// Connections is every connection they opened (or tried to).
	Connections int64 `json:"connections"`
	// AllDocumented is Verdict when the report was written.
	AllDocumented bool           `json:"all_documented"`
	Personas      []ChaosPersona `json:"personas"`
}

// ChaosPersona is one persona's connections and what the server answered
// them.
type ChaosPersona struct {
	Persona string `json:"persona"`
	// Expected is the documented answer (docs/PROTOCOL.md) the outcomes
	// are checked against.
	Expected    string `json:"expected"`
	Clients     int    `json:"clients"`
	Connections int64  `json:"connections"`
	// Finished connections reached their end: the server answered (closed
	// them, refused them, or answered every request until client-sim
	// closed them) or there was nothing to answer (a connection flood's
	// hang-ups). Each is Documented or Undocumented.
	Finished     int64 `json:"finished"`
	Documented   int64 `json:"documented"`
	Undocumented int64 `json:"undocumented"`
	// Unfinished connections were still waiting for their answer when the
	// run ended.
	Unfinished int64 `json:"unfinished"`
	// Outcomes counts the connections by how they ended: "close:4003"
	// (the server's Close frame) with the Error just before it
	// ("error:rate_limited+close:4003"), "http:408", "dropped" (ended
	// without a Close), "client_closed", "unfinished", "dial:refused"...;
	// personas with variants prefix them ("after-upgrade close:1002").
	Outcomes map[string]int64 `json:"outcomes"`
	// Errors counts every Error message received, by code, over all the
	// persona's connections.
	Errors map[string]int64 `json:"errors,omitempty"`
	// RetryAfterMs is the range of retry_after_ms hints of the
	// RATE_LIMITED errors that told a client to slow down; nil when there
	// were none.
	RetryAfterMs *Range `json:"retry_after_ms,omitempty"`
	// CloseRetryAfterMs is the range of retry_after_ms of the Errors sent
	// together with a Close frame (the explanation of the close); nil when
	// there were none.
	CloseRetryAfterMs *Range `json:"close_retry_after_ms,omitempty"`
	// CloseReasons counts the server's Close frames by "code reason".
	CloseReasons map[string]int64 `json:"close_reasons,omitempty"`
	// AnsweredAfterMs is, for connections the server ended or refused, the
	// time from connecting to its answer (the Close frame, the HTTP status,
	// the end of the stream); AnsweredAfterHist the whole distribution
	// (microseconds, NewHistogram's shape, V2 compressed base64).
	AnsweredAfterMs   Percentiles `json:"answered_after_ms"`
	AnsweredAfterHist string      `json:"answered_after_hist,omitempty"`
	// Violations describes the first few undocumented outcomes.
	Violations []string `json:"violations,omitempty"`
}

// Range is the least and greatest of some values.
type Range struct {
	Min int64 `json:"min"`
	Max int64 `json:"max"`
}

// Extend widens r to hold v; a nil r becomes [v, v].
func (r *Range) Extend(v int64) *Range {
	if r == nil {
		return &Range{Min: v, Max: v}
	}
	r.Min, r.Max = min(r.Min, v), max(r.Max, v)
	return r
}

// MaxViolations is how many undocumented outcomes a persona describes.
const MaxViolations = 10

// Verdict says whether every chaos connection that finished got its
// documented answer and every persona with clients had at least one
// finished connection (a persona whose every connection was still waiting
// at the end proves nothing); problems says what failed, per persona.
func (c *Chaos) Verdict() (ok bool, problems []string) {
	if c == nil {
		return true, nil
	}
	for _, p := range c.Personas {
		if p.Clients == 0 {
			continue
		}
		if p.Undocumented > 0 {
			problems = append(problems, fmt.Sprintf("%s: %d of %d finished connections got an undocumented answer", p.Persona, p.Undocumented, p.Finished))
		}
		if p.Finished == 0 {
			problems = append(problems, fmt.Sprintf("%s: no connection finished (%d still waiting at the end)", p.Persona, p.Unfinished))
		}
	}
	return len(problems) == 0, problems
}

// Persona returns the figures of the named persona, or nil.
func (c *Chaos) Persona(name string) *ChaosPersona {
	if c == nil {
		return nil
	}
	for i := range c.Personas {
		if c.Personas[i].Persona == name {
			return &c.Personas[i]
		}
	}
	return nil
}

// AnsweredAfter decodes AnsweredAfterHist; nil when there is none.
func (p ChaosPersona) AnsweredAfter() (*hdrhistogram.Histogram, error) {
	if p.AnsweredAfterHist == "" {
		return nil, nil
	}
	h, err := hdrhistogram.Decode([]byte(p.AnsweredAfterHist))
	if err != nil {
		return nil, fmt.Errorf("report: answered_after_hist of %s: %w", p.Persona, err)
	}
	return h, nil
}

// mergeChaos combines the chaos sections of reports of processes that ran
// side by side: counts summed, ranges widened, distributions merged.
func mergeChaos(cs []*Chaos) (*Chaos, error) {
	var out *Chaos
	byName := map[string]*ChaosPersona{}
	hists := map[string]*hdrhistogram.Histogram{}
	for _, c := range cs {
		if c == nil {
			continue
		}
		if out == nil {
			out = &Chaos{}
		}
		out.Clients += c.Clients
		out.Connections += c.Connections
		for _, p := range c.Personas {
			m := byName[p.Persona]
			if m == nil {
				m = &ChaosPersona{Persona: p.Persona, Expected: p.Expected, Outcomes: map[string]int64{}}
				byName[p.Persona] = m
			}
			m.Clients += p.Clients
			m.Connections += p.Connections
			m.Finished += p.Finished
			m.Documented += p.Documented
			m.Undocumented += p.Undocumented
			m.Unfinished += p.Unfinished
			m.Outcomes = addCounts(m.Outcomes, p.Outcomes)
			m.Errors = addCounts(m.Errors, p.Errors)
			m.CloseReasons = addCounts(m.CloseReasons, p.CloseReasons)
			if r := p.RetryAfterMs; r != nil {
				m.RetryAfterMs = m.RetryAfterMs.Extend(r.Min).Extend(r.Max)
			}
			if r := p.CloseRetryAfterMs; r != nil {
				m.CloseRetryAfterMs = m.CloseRetryAfterMs.Extend(r.Min).Extend(r.Max)
			}
			for _, v := range p.Violations {
				if len(m.Violations) < MaxViolations {
					m.Violations = append(m.Violations, v)
				}
			}
			h, err := p.AnsweredAfter()
			if err != nil {
				return nil, fmt.Errorf("report: merge: %w", err)
			}
			if h != nil {
				if hists[p.Persona] == nil {
					hists[p.Persona] = NewHistogram()
				}
				hists[p.Persona].Merge(h)
			}
		}
	}
	if out == nil {
		return nil, nil
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		p := byName[name]
		p.AnsweredAfterMs = PercentilesOf(hists[name])
		p.AnsweredAfterHist = EncodeHistogram(hists[name])
		out.Personas = append(out.Personas, *p)
	}
	out.AllDocumented, _ = out.Verdict()
	return out, nil
}

func addCounts(dst, src map[string]int64) map[string]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
