package tracing

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MetricConfigReloads counts configuration reloads (sessions file, token
// keys) by result: vncedge_config_reloads_total{result}.
const MetricConfigReloads = "vncedge.config.reloads"

// Reload results, the fixed label set of MetricConfigReloads.
const (
	ReloadOK        = "ok"        // a new configuration is in use
	ReloadError     = "error"     // the files were refused; the old configuration stays
	ReloadUnchanged = "unchanged" // the files have the bytes already in use
)

// ReloadCounter records configuration reloads.
type ReloadCounter struct {
	c    metric.Int64Counter
	opts map[string][]metric.AddOption
}

// NewReloadCounter creates the reload counter on p's meter.
func (p *Provider) NewReloadCounter() (*ReloadCounter, error) {
	c, err := p.Meter.Int64Counter(MetricConfigReloads,
		metric.WithDescription("Configuration reloads (sessions file, token keys), by result: ok, error, unchanged."))
	if err != nil {
		return nil, err
	}
	r := &ReloadCounter{c: c, opts: map[string][]metric.AddOption{}}
	for _, res := range []string{ReloadOK, ReloadError, ReloadUnchanged} {
		r.opts[res] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", res)))}
	}
	return r, nil
}

// Add counts one reload; a result outside the fixed set counts as error.
func (r *ReloadCounter) Add(result string) {
	if r == nil {
		return
	}
	o, ok := r.opts[result]
	if !ok {
		o = r.opts[ReloadError]
	}
	r.c.Add(context.Background(), 1, o...)
}
