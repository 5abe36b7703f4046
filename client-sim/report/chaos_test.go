package report

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChaosVerdict(t *testing.T) {
	t.Parallel()
	var none *Chaos
	ok, problems := none.Verdict()
	require.True(t, ok, "no chaos, nothing to answer")
	require.Empty(t, problems)

	c := &Chaos{Clients: 3, Personas: []ChaosPersona{
		{Persona: "burst", Clients: 1, Connections: 3, Finished: 2, Documented: 2, Unfinished: 1},
		{Persona: "trickle", Clients: 1, Connections: 1, Unfinished: 1},
		{Persona: "garbage", Clients: 1, Connections: 4, Finished: 4, Documented: 3, Undocumented: 1},
		{Persona: "churn"}, // no clients: not judged
	}}
	ok, problems = c.Verdict()
	require.False(t, ok)
	require.Len(t, problems, 2)
	require.Contains(t, problems[0], "trickle: no connection finished")
	require.Contains(t, problems[1], "garbage: 1 of 4")
	require.Equal(t, "garbage", c.Persona("garbage").Persona)
	require.Nil(t, c.Persona("nosuch"))

	c.Personas[1].Finished, c.Personas[1].Documented = 1, 1
	c.Personas[2].Undocumented, c.Personas[2].Documented = 0, 4
	ok, _ = c.Verdict()
	require.True(t, ok)
}

func TestMergeChaos(t *testing.T) {
	t.Parallel()
	a := Report{Clients: 10, DurationS: 5, Chaos: &Chaos{Clients: 2, Connections: 7, AllDocumented: true, Personas: []ChaosPersona{
		{Persona: "trickle", Expected: "4004", Clients: 1, Connections: 3, Finished: 3, Documented: 3,
			Outcomes: map[string]int64{"error:timeout+close:4004": 3}, Errors: map[string]int64{"timeout": 3},
			CloseRetryAfterMs: &Range{0, 0}, AnsweredAfterHist: encodedHist(t, 10_000_000, 11_000_000)},
		{Persona: "burst", Expected: "4003", Clients: 1, Connections: 4, Finished: 4, Documented: 4,
			Outcomes: map[string]int64{"error:rate_limited+close:4003": 4}, RetryAfterMs: &Range{2, 30}},
	}}}
	b := Report{Clients: 10, DurationS: 5, Chaos: &Chaos{Clients: 1, Connections: 2, Personas: []ChaosPersona{
		{Persona: "trickle", Expected: "4004", Clients: 1, Connections: 2, Finished: 1, Undocumented: 1, Unfinished: 1,
			Outcomes: map[string]int64{"error:timeout+close:4001": 1, "unfinished": 1}, Violations: []string{"trickle: 4001"},
			AnsweredAfterHist: encodedHist(t, 45_000_000)},
	}}}
	m, err := Merge([]Report{a, b, {Clients: 5, DurationS: 5}})
	require.NoError(t, err)
	c := m.Chaos
	require.NotNil(t, c)
	require.Equal(t, 3, c.Clients)
	require.Equal(t, int64(9), c.Connections)
	require.False(t, c.AllDocumented, "one process saw an undocumented answer")
	require.Len(t, c.Personas, 2)
	tr := c.Persona("trickle")
	require.Equal(t, 2, tr.Clients)
	require.Equal(t, int64(4), tr.Finished)
	require.Equal(t, int64(1), tr.Unfinished)
	require.Equal(t, map[string]int64{"error:timeout+close:4004": 3, "error:timeout+close:4001": 1, "unfinished": 1}, tr.Outcomes)
	require.Equal(t, []string{"trickle: 4001"}, tr.Violations)
	require.InDelta(t, 45_000.0, tr.AnsweredAfterMs.Max, 50, "distributions merged")
	h, err := tr.AnsweredAfter()
	require.NoError(t, err)
	require.Equal(t, int64(3), h.TotalCount())
	require.Equal(t, &Range{2, 30}, c.Persona("burst").RetryAfterMs)
	// The inputs are untouched.
	require.Equal(t, map[string]int64{"error:timeout+close:4004": 3}, a.Chaos.Personas[0].Outcomes)

	noChaos, err := Merge([]Report{{Clients: 1, DurationS: 5}, {Clients: 1, DurationS: 5}})
	require.NoError(t, err)
	require.Nil(t, noChaos.Chaos)

	_, err = Merge([]Report{a, {Clients: 1, DurationS: 5, Chaos: &Chaos{Personas: []ChaosPersona{{Persona: "x", AnsweredAfterHist: "!!"}}}}})
	require.Error(t, err)
}

func TestChaosRoundTrip(t *testing.T) {
	t.Parallel()
	in := Report{Clients: 3, DurationS: 1, Chaos: &Chaos{Clients: 1, Connections: 1, AllDocumented: true, Personas: []ChaosPersona{
		{Persona: "garbage", Expected: "400 / 1002", Clients: 1, Connections: 1, Finished: 1, Documented: 1,
			Outcomes: map[string]int64{"before-upgrade http:400": 1}, AnsweredAfterMs: Percentiles{P50: 1, Max: 1}},
	}}}
	b, err := Encode(in)
	require.NoError(t, err)
	out, err := Decode(b)
	require.NoError(t, err)
	require.Equal(t, in, out)
	require.Contains(t, string(b), `"all_documented": true`)
}

func TestRangeExtend(t *testing.T) {
	t.Parallel()
	var r *Range
	r = r.Extend(5)
	require.Equal(t, &Range{5, 5}, r)
	r.Extend(1).Extend(9)
	require.Equal(t, &Range{1, 9}, r)
}
