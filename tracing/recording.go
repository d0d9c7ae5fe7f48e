package tracing

import (
	"context"

	"go.opentelemetry.io/otel/metric"
)

// Recording metric names (Prometheus names in the comments).
const (
	MetricRecordBytes = "vncedge.record.bytes" // vncedge_record_bytes_total: bytes written to recordings
	MetricRecordGaps  = "vncedge.record.gaps"  // vncedge_record_gaps_total: chunks lost (queue full, write failed)
	MetricRecordOpen  = "vncedge.record.open"  // vncedge_record_open: recordings open now
)

// ObserveRecordings exports the recorder's counters; stats is called at each
// collection (never per frame) and returns bytes written, gaps and open
// recordings. A Provider without metrics ignores it.
func (p *Provider) ObserveRecordings(stats func() (bytes, gaps, open int64)) {
	if p == nil || p.Meter == nil {
		return
	}
	b, e1 := p.Meter.Int64ObservableCounter(MetricRecordBytes, metric.WithUnit("By"), metric.WithDescription("Bytes written to session recordings."))
	g, e2 := p.Meter.Int64ObservableCounter(MetricRecordGaps, metric.WithDescription("Recording gaps: chunks lost because the disk could not keep up or failed."))
	o, e3 := p.Meter.Int64ObservableUpDownCounter(MetricRecordOpen, metric.WithDescription("Session recordings open now."))
	if e1 != nil || e2 != nil || e3 != nil {
		return
	}
	_, _ = p.Meter.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		bytes, gaps, open := stats()
		ob.ObserveInt64(b, bytes)
		ob.ObserveInt64(g, gaps)
		ob.ObserveInt64(o, open)
		return nil
	}, b, g, o)
}
