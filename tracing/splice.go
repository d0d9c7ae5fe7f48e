package tracing

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// MetricSpliced is the sessions whose server stream went by splice(2)
// (vncedge_sessions_spliced_total).
const MetricSpliced = "vncedge.sessions.spliced"

// ObserveSpliced exports the count of spliced sessions; spliced is called at
// each collection. A Provider without metrics ignores it.
func (p *Provider) ObserveSpliced(spliced func() int64) {
	if p == nil || p.Meter == nil {
		return
	}
	c, err := p.Meter.Int64ObservableCounter(MetricSpliced, metric.WithDescription("Sessions whose server stream went to the viewer by splice(2)."))
	if err != nil {
		return
	}
	_, _ = p.Meter.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		ob.ObserveInt64(c, spliced())
		return nil
	}, c)
}
