package main

import (
	"fmt"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gauge finds the unlabelled sample of the gauge name in a Prometheus text
// exposition (a relay's GET /metrics); ok is false when the exposition has
// no such gauge or it has labels.
func gauge(body, name string) (v float64, ok bool, err error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return 0, false, fmt.Errorf("metrics: %w", err)
	}
	f, found := families[name]
	if !found || f.GetType() != dto.MetricType_GAUGE {
		return 0, false, nil
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) == 0 && m.GetGauge() != nil {
			return m.GetGauge().GetValue(), true, nil
		}
	}
	return 0, false, nil
}

// counters returns every counter whose name starts with prefix, keyed by
// the name without it and, for a labelled sample, its labels
// ("link_gaps_total{direction=uplink}"); zero samples are left out.
func counters(body, prefix string) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, prefix) || f.GetType() != dto.MetricType_COUNTER {
			continue
		}
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue()
			if v == 0 {
				continue
			}
			key := strings.TrimPrefix(name, prefix)
			if ls := m.GetLabel(); len(ls) > 0 {
				var parts []string
				for _, l := range ls {
					parts = append(parts, l.GetName()+"="+l.GetValue())
				}
				key += "{" + strings.Join(parts, ",") + "}"
			}
			out[key] += v
		}
	}
	return out, nil
}

// labelled returns the samples of the counter name in a Prometheus text
// exposition by the value of label (a relay's closes by cause, say); an
// empty map when there are none yet.
func labelled(body, name, label string) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	f, found := families[name]
	if !found || f.GetType() != dto.MetricType_COUNTER {
		return out, nil
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				out[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	return out, nil
}
