// Package tracing sets up OpenTelemetry for vncedge: an OTLP span exporter
// (gRPC or HTTP), a meter provider served as Prometheus text on /metrics,
// and helpers for the one span per viewer session.
//
// The helpers are built for a caller that keeps plain counters in its
// session struct and touches tracing only when a session starts and ends
// (and around resolve and dial, which run off the event loop). Nothing in
// this package is meant to be called per frame.
//
// # Prometheus exposition
//
// Metrics are OTel instruments (the [Provider.Meter]) read by the OTel
// Prometheus exporter (go.opentelemetry.io/otel/exporters/prometheus) into a
// private client_golang registry served by promhttp. Chosen over client_golang
// alone because the instruments are then plain OTel: one API and one naming
// scheme for spans and metrics, the resource (service.name/version/instance)
// appears as target_info, and switching to or adding OTLP metric push is one
// more reader on the MeterProvider with no change to the instrumentation.
// The cost (a translation step at scrape time, a few more dependencies that
// the OTLP exporters pull anyway) is paid per scrape, not per session. The
// registry also carries the Go runtime and process collectors.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ScopeName is the instrumentation scope of vncedge's spans and metrics.
const ScopeName = "vncedge"

// Provider holds the tracer, the meter and the /metrics handler. Its methods
// are safe for concurrent use.
type Provider struct {
	Tracer         trace.Tracer
	Meter          metric.Meter
	MetricsHandler http.Handler // Prometheus text exposition; mount at /metrics

	tp   *sdktrace.TracerProvider // nil when tracing is off
	mp   *sdkmetric.MeterProvider
	prop propagation.TextMapPropagator
	m    instruments

	reasonsMu sync.Mutex
	reasons   map[string][]metric.AddOption // close reason label sets, bounded

	shutdownOnce sync.Once
	shutdownErr  error
}

// Option tweaks Setup; for tests.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
	batch    []sdktrace.BatchSpanProcessorOption
	registry *prometheus.Registry
}

// WithExporter replaces the OTLP exporter (tests pass an in-memory one). It
// applies only when cfg.Enabled.
func WithExporter(e sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporter = e }
}

// WithBatchOptions passes options to the batch span processor, e.g.
// sdktrace.WithBlocking() so that tests lose no span under bursts, or
// sdktrace.WithBatchTimeout for quicker export.
func WithBatchOptions(bo ...sdktrace.BatchSpanProcessorOption) Option {
	return func(o *options) { o.batch = append(o.batch, bo...) }
}

// Setup builds the providers. With cfg.Enabled false the tracer is a no-op
// (no exporter, no goroutine) and metrics work as usual. The exporters do
// not connect here: an unreachable collector shows up as export errors
// later, never as a failed start.
func Setup(ctx context.Context, cfg Config, opts ...Option) (*Provider, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "vncedge"
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID, _ = os.Hostname()
	}
	if cfg.Logger != nil {
		l := cfg.Logger
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			l.Warn("opentelemetry", "err", Redact(err.Error()))
		}))
	}
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		prop:    propagation.TraceContext{},
		reasons: make(map[string][]metric.AddOption),
	}

	// Metrics: always on.
	reg := o.registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	pe, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: prometheus exporter: %w", err)
	}
	p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(pe))
	p.Meter = p.mp.Meter(ScopeName)
	p.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if err := p.m.init(p.Meter); err != nil {
		return nil, fmt.Errorf("tracing: instruments: %w", err)
	}

	// Traces.
	if !cfg.Enabled {
		p.Tracer = noop.NewTracerProvider().Tracer(ScopeName)
		return p, nil
	}
	exp := o.exporter
	if exp == nil {
		exp, err = newExporter(ctx, cfg)
		if err != nil {
			return nil, err
		}
	}
	ratio := cfg.SampleRatio
	if ratio < 0 || ratio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %v not in [0,1]", ratio)
	}
	p.tp = sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithBatcher(exp, o.batch...),
	)
	p.Tracer = p.tp.Tracer(ScopeName)
	return p, nil
}

// Enabled reports whether spans are exported.
func (p *Provider) Enabled() bool { return p.tp != nil }

// ForceFlush exports the spans ended so far.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.tp == nil {
		return nil
	}
	return p.tp.ForceFlush(ctx)
}

// Shutdown flushes pending spans and stops the providers. Call it once the
// sessions have ended (their spans are exported only when ended); later
// calls return the first result.
func (p *Provider) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		var errs []error
		if p.tp != nil {
			errs = append(errs, p.tp.Shutdown(ctx))
		}
		errs = append(errs, p.mp.Shutdown(ctx))
		p.shutdownErr = errors.Join(errs...)
	})
	return p.shutdownErr
}

func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{attribute.String("service.name", cfg.ServiceName)}
	if cfg.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.ServiceVersion))
	}
	if cfg.InstanceID != "" {
		attrs = append(attrs, attribute.String("service.instance.id", cfg.InstanceID))
	}
	// Later options win: env (OTEL_RESOURCE_ATTRIBUTES) below the explicit fields.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(),
		resource.WithAttributes(attrs...),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return res, nil // a partial resource (bad OTEL_RESOURCE_ATTRIBUTES) is still usable
}

// newExporter builds the OTLP span exporter for cfg. Options given here
// override what the exporter read from OTEL_EXPORTER_OTLP_*.
func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	host, path, insecure, err := splitEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	insecure = insecure || cfg.Insecure
	switch cfg.Protocol {
	case "", ProtocolGRPC:
		var o []otlptracegrpc.Option
		if host != "" {
			o = append(o, otlptracegrpc.WithEndpoint(host))
		}
		if insecure {
			o = append(o, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, o...)
	case ProtocolHTTP, "http", "http/json":
		var o []otlptracehttp.Option
		if host != "" {
			o = append(o, otlptracehttp.WithEndpoint(host))
			if path != "" && path != "/" {
				o = append(o, otlptracehttp.WithURLPath(path))
			} else {
				o = append(o, otlptracehttp.WithURLPath("/v1/traces"))
			}
		}
		if insecure {
			o = append(o, otlptracehttp.WithInsecure())
		}
		return otlptracehttp.New(ctx, o...)
	}
	return nil, fmt.Errorf("tracing: unknown OTLP protocol %q (want grpc or http/protobuf)", cfg.Protocol)
}

// splitEndpoint takes "host:port" or a URL; insecure is true for http://.
func splitEndpoint(ep string) (host, path string, insecure bool, err error) {
	if ep == "" {
		return "", "", false, nil
	}
	if !strings.Contains(ep, "://") {
		return ep, "", false, nil
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" {
		return "", "", false, fmt.Errorf("tracing: bad OTLP endpoint %q", Redact(ep))
	}
	switch u.Scheme {
	case "http":
		insecure = true
	case "https":
	default:
		return "", "", false, fmt.Errorf("tracing: OTLP endpoint scheme %q: want http or https", u.Scheme)
	}
	return u.Host, u.Path, insecure, nil
}

// instruments are created once per Provider. Label sets that do not depend
// on the session are precomputed, so recording them does not allocate.
type instruments struct {
	active     metric.Int64UpDownCounter
	sessions   metric.Int64Counter
	bytes      metric.Int64Counter
	messages   metric.Int64Counter
	frames     metric.Int64Counter
	drops      metric.Int64Counter
	upgradeErr metric.Int64Counter
	dial       metric.Float64Histogram
	control    metric.Float64Histogram
	cdp        metric.Float64Histogram

	// Precomputed option slices: passing them with ... does not allocate.
	up, down      []metric.AddOption
	dialOK, dialE []metric.RecordOption
}

// Metric names as OTel instruments; the Prometheus names are in the
// comments (dots become underscores, counters get _total, units a suffix).
const (
	MetricActive          = "vncedge.sessions.active"        // vncedge_sessions_active
	MetricSessions        = "vncedge.sessions"               // vncedge_sessions_total{close_reason}
	MetricBytes           = "vncedge.relay.bytes"            // vncedge_relay_bytes_total{direction}
	MetricMessages        = "vncedge.relay.messages"         // vncedge_relay_messages_total{direction="up"}
	MetricFrames          = "vncedge.relay.frames"           // vncedge_relay_frames_total{direction}
	MetricDropped         = "vncedge.policy.dropped"         // vncedge_policy_dropped_total{reason}
	MetricUpgradeFailures = "vncedge.upgrade.failures"       // vncedge_upgrade_failures_total{status}
	MetricDialDuration    = "vncedge.upstream.dial.duration" // vncedge_upstream_dial_duration_seconds{result}
	MetricControlPlane    = "vncedge.controlplane.duration"  // vncedge_controlplane_duration_seconds{op,result}
	MetricCDP             = "vncedge.cdp.duration"           // vncedge_cdp_duration_seconds{op,result}
)

func (m *instruments) init(meter metric.Meter) error {
	var err, e error
	m.active, e = meter.Int64UpDownCounter(MetricActive, metric.WithDescription("Viewer sessions open now (upgrade to close)."))
	err = errors.Join(err, e)
	m.sessions, e = meter.Int64Counter(MetricSessions, metric.WithDescription("Viewer sessions ended, by close reason."))
	err = errors.Join(err, e)
	m.bytes, e = meter.Int64Counter(MetricBytes, metric.WithUnit("By"), metric.WithDescription("RFB payload bytes relayed, by direction (up: viewer to server)."))
	err = errors.Join(err, e)
	m.messages, e = meter.Int64Counter(MetricMessages, metric.WithDescription("RFB client messages relayed viewer to server."))
	err = errors.Join(err, e)
	m.frames, e = meter.Int64Counter(MetricFrames, metric.WithDescription("WebSocket data frames relayed, by direction."))
	err = errors.Join(err, e)
	m.drops, e = meter.Int64Counter(MetricDropped, metric.WithDescription("RFB client messages dropped by policy, by reason."))
	err = errors.Join(err, e)
	m.upgradeErr, e = meter.Int64Counter(MetricUpgradeFailures, metric.WithDescription("WebSocket upgrades refused, by HTTP status."))
	err = errors.Join(err, e)
	m.dial, e = meter.Float64Histogram(MetricDialDuration, metric.WithUnit("s"),
		metric.WithDescription("Time to connect the upstream (TCP, TLS, ws handshake), by result."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	err = errors.Join(err, e)
	m.control, e = meter.Float64Histogram(MetricControlPlane, metric.WithUnit("s"),
		metric.WithDescription("Resolver and liveness calls (the control plane, for the HTTP resolver), by op and result."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	err = errors.Join(err, e)
	m.cdp, e = meter.Float64Histogram(MetricCDP, metric.WithUnit("s"),
		metric.WithDescription("DevTools clipboard calls, by op (copy, paste) and result."),
		metric.WithExplicitBucketBoundaries(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
	err = errors.Join(err, e)
	m.up = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("direction", "up")))}
	m.down = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("direction", "down")))}
	m.dialOK = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "ok")))}
	m.dialE = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("result", "error")))}
	return err
}

// SessionOpened counts a session as active (call after a successful upgrade
// request parse, paired with SessionClosed).
func (p *Provider) SessionOpened() { p.m.active.Add(context.Background(), 1) }

// SessionClosed undoes SessionOpened.
func (p *Provider) SessionClosed() { p.m.active.Add(context.Background(), -1) }

// UpgradeFailed counts a refused upgrade by the HTTP status answered.
func (p *Provider) UpgradeFailed(status int) {
	p.m.upgradeErr.Add(context.Background(), 1, metric.WithAttributes(attribute.Int("status", status)))
}

// DialLatency records how long connecting the upstream took.
func (p *Provider) DialLatency(d time.Duration, ok bool) {
	o := p.m.dialE
	if ok {
		o = p.m.dialOK
	}
	p.m.dial.Record(context.Background(), d.Seconds(), o...)
}

// ControlPlaneLatency records one resolve or liveness call ("resolve",
// "verify"); ok false counts it as an error.
func (p *Provider) ControlPlaneLatency(op string, d time.Duration, ok bool) {
	p.m.control.Record(context.Background(), d.Seconds(), metric.WithAttributes(attribute.String("op", op), result(ok)))
}

// CDPLatency records one DevTools clipboard call ("copy", "paste").
func (p *Provider) CDPLatency(op string, d time.Duration, ok bool) {
	p.m.cdp.Record(context.Background(), d.Seconds(), metric.WithAttributes(attribute.String("op", op), result(ok)))
}

func result(ok bool) attribute.KeyValue {
	if ok {
		return attribute.String("result", "ok")
	}
	return attribute.String("result", "error")
}

// maxCloseReasons bounds the close_reason label's cardinality; further
// distinct reasons are counted as "other".
const maxCloseReasons = 64

func (p *Provider) reasonOption(detail string) []metric.AddOption {
	reason := string(CloseReasonLabel(detail)) // a fixed set (labels.go); the detail stays in the span
	p.reasonsMu.Lock()
	defer p.reasonsMu.Unlock()
	if o, ok := p.reasons[reason]; ok {
		return o
	}
	if len(p.reasons) >= maxCloseReasons || !labelSafe(reason) {
		reason = "other"
		if o, ok := p.reasons[reason]; ok {
			return o
		}
	}
	o := []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("close_reason", reason)))}
	p.reasons[reason] = o
	return o
}

// labelSafe accepts short reason tokens such as "upstream-closed" or
// "http-Bad Request"; anything longer or with other characters could be
// free text from a peer.
func labelSafe(s string) bool {
	if len(s) > 48 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ' ') {
			return false
		}
	}
	return true
}
