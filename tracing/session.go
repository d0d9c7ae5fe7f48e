package tracing

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span names.
const (
	SpanSession     = "vnc.session"           // one per viewer session, upgrade to close
	SpanResolve     = "vnc.resolve"           // the Resolver call
	SpanDial        = "vnc.dial"              // connecting the upstream, end to end
	SpanDialTLS     = "vnc.dial.tls"          // TLS handshake inside vnc.dial (wss)
	SpanDialWS      = "vnc.dial.ws_handshake" // WebSocket upgrade inside vnc.dial (ws, wss)
	EventControl    = "vnc.control"           // control changed hands
	EventPolicyDrop = "vnc.policy.drop"       // a message dropped by policy (first N)
	EventsOmitted   = "vnc.events.omitted"    // how many events of each name were not recorded
)

// Span attribute keys. Identity is set at start, the rest at end.
const (
	AttrKind           = attribute.Key("vnc.kind")            // browser_session | task | workflow_run
	AttrSessionID      = attribute.Key("vnc.session.id")      // the platform session id
	AttrOrganization   = attribute.Key("vnc.organization")    //
	AttrClientID       = attribute.Key("vnc.client_id")       //
	AttrUpstreamScheme = attribute.Key("vnc.upstream.scheme") // tcp | ws | wss
	AttrUpstreamHost   = attribute.Key("vnc.upstream.host")   // host:port only, never userinfo/path/query
	AttrViewer         = attribute.Key("vnc.viewer.address")  // the viewer's ip:port
	AttrInteractor     = attribute.Key("vnc.interactor")      // who had control at the end
	AttrBytesUp        = attribute.Key("vnc.bytes.up")        // RFB bytes viewer → server
	AttrBytesDown      = attribute.Key("vnc.bytes.down")      // RFB bytes server → viewer
	AttrMessagesUp     = attribute.Key("vnc.messages.up")     // RFB client messages passed
	AttrFramesUp       = attribute.Key("vnc.frames.up")       // WebSocket data frames viewer → server
	AttrFramesDown     = attribute.Key("vnc.frames.down")     // WebSocket data frames server → viewer
	AttrDroppedTotal   = attribute.Key("vnc.dropped")         // messages dropped, all reasons
	AttrDroppedPrefix  = "vnc.dropped."                       // + reason: messages dropped for it
	AttrCloseCode      = attribute.Key("vnc.close.code")      // WebSocket close code (0: none sent)
	AttrCloseReason    = attribute.Key("vnc.close.reason")    //
	AttrHTTPStatus     = attribute.Key("http.response.status_code")
	AttrDurationMS     = attribute.Key("vnc.duration_ms")    //
	AttrOmitted        = attribute.Key("vnc.events.omitted") // events not recorded (rate limit)
)

// SessionInfo is a session's identity. Only these fields go into the span:
// credentials (API keys, tokens, the upstream's headers, its path and query)
// have no field here on purpose.
type SessionInfo struct {
	Kind, ID, Organization, ClientID string
	UpstreamScheme                   string // tcp, ws or wss
	UpstreamHost                     string // host[:port]; anything else (user@, /path, ?query) is cut off
	Viewer                           string // remote address
	// Start backdates the span, e.g. to when the viewer connected; zero: now.
	Start time.Time
}

func (in *SessionInfo) attrs(dst []attribute.KeyValue) []attribute.KeyValue {
	add := func(k attribute.Key, v string) {
		if v != "" {
			dst = append(dst, k.String(v))
		}
	}
	add(AttrKind, in.Kind)
	add(AttrSessionID, in.ID)
	add(AttrOrganization, in.Organization)
	add(AttrClientID, in.ClientID)
	add(AttrUpstreamScheme, in.UpstreamScheme)
	add(AttrUpstreamHost, cleanHost(in.UpstreamHost))
	add(AttrViewer, in.Viewer)
	return dst
}

// StartSession starts the vnc.session span. traceparent is the viewer's W3C
// traceparent header value (empty: a new trace); a valid one makes the
// session span its child, in its trace, and its sampled flag decides
// sampling. The returned context carries the span: pass it to StartChild
// (resolve, dial) and keep the span in the session struct for EndSession.
// With tracing off the span is a no-op that still carries the viewer's
// trace id, so log lines can name it.
func (p *Provider) StartSession(traceparent string, info SessionInfo) (context.Context, trace.Span) {
	ctx := context.Background()
	if traceparent != "" {
		ctx = p.prop.Extract(ctx, propagation.MapCarrier{"traceparent": strings.TrimSpace(traceparent)})
	}
	opts := make([]trace.SpanStartOption, 0, 3)
	opts = append(opts, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(info.attrs(make([]attribute.KeyValue, 0, 7))...))
	if !info.Start.IsZero() {
		opts = append(opts, trace.WithTimestamp(info.Start))
	}
	return p.Tracer.Start(ctx, SpanSession, opts...)
}

// AnnotateSession adds identity learned after the start (organization,
// upstream — known once resolved) to the session span. Empty fields are
// skipped. Safe from any goroutine.
func (p *Provider) AnnotateSession(span trace.Span, info SessionInfo) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(info.attrs(nil)...)
}

// StartChild starts a child span of the session span in ctx: SpanResolve,
// SpanDial, SpanDialTLS, SpanDialWS. Dial spans are of kind client.
func (p *Provider) StartChild(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	kind := trace.SpanKindInternal
	if strings.HasPrefix(name, SpanDial) {
		kind = trace.SpanKindClient
	}
	return p.Tracer.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// EndChild ends a child span, marking it failed with err's message,
// redacted (dial errors name the upstream URL, whose path and query carry
// tokens).
func EndChild(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.SetStatus(codes.Error, Redact(err.Error()))
	}
	span.End()
}

// InjectHTTP writes ctx's trace context into h (traceparent), for calls the
// session makes to the control plane. Not for upstream VNC requests unless
// the operator wants the trace id to leave.
func (p *Provider) InjectHTTP(ctx context.Context, h http.Header) {
	p.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// Event is a span event recorded during the session and added at its end.
type Event struct {
	Name  string
	Time  time.Time
	Attrs []attribute.KeyValue
}

// Default limits of an EventLog.
const (
	DefaultMaxEvents    = 64
	DefaultEventsPerKey = 8
)

// EventLog collects a session's events between start and end without
// touching the tracer, rate-limited: the first PerName events of each name
// are kept (at most Max in all), the rest only counted. Once over the limit
// Add does not allocate (its variadic attributes do not escape). The zero
// value is ready; not safe for concurrent use (keep it on the session's loop).
type EventLog struct {
	Max, PerName int // 0: DefaultMaxEvents, DefaultEventsPerKey

	events  []Event
	omitted map[string]uint64
}

// Add records an event named name now, if the limits allow.
func (l *EventLog) Add(name string, attrs ...attribute.KeyValue) {
	max, per := l.Max, l.PerName
	if max <= 0 {
		max = DefaultMaxEvents
	}
	if per <= 0 {
		per = DefaultEventsPerKey
	}
	if len(l.events) < max && l.count(name) < per {
		l.events = append(l.events, Event{Name: name, Time: time.Now(), Attrs: slices.Clone(attrs)})
		return
	}
	if l.omitted == nil {
		l.omitted = make(map[string]uint64, 2)
	}
	l.omitted[name]++
}

func (l *EventLog) count(name string) int {
	n := 0
	for i := range l.events {
		if l.events[i].Name == name {
			n++
		}
	}
	return n
}

// Events returns what was recorded, followed (if anything was omitted) by
// one EventsOmitted event whose attributes count the omitted ones by name.
func (l *EventLog) Events() []Event {
	if len(l.omitted) == 0 {
		return l.events
	}
	ev := Event{Name: EventsOmitted, Time: time.Now()}
	for _, name := range sortedKeys(l.omitted) {
		ev.Attrs = append(ev.Attrs, attribute.Int64(name, int64(l.omitted[name])))
	}
	return append(l.events[:len(l.events):len(l.events)], ev)
}

// Omitted is how many events were not recorded.
func (l *EventLog) Omitted() uint64 {
	var n uint64
	for _, c := range l.omitted {
		n += c
	}
	return n
}

// SessionSummary is what the session counted, handed over once at its end.
type SessionSummary struct {
	Interactor           string // who had control at the end
	BytesUp, BytesDown   uint64 // RFB payload bytes
	MessagesUp           uint64 // RFB client messages passed
	FramesUp, FramesDown uint64 // WebSocket data frames
	Dropped              map[string]uint64
	CloseCode            int // WebSocket close code sent/received; 0 if none
	CloseReason          string
	HTTPStatus           int // for a refused upgrade: the status answered
	Duration             time.Duration
	Events               []Event // e.g. EventLog.Events()
	EventsOmitted        uint64  // e.g. EventLog.Omitted()
}

// EndSession puts the summary on the span (attributes, events, status), ends
// it, and records the session's metrics: sessions by close reason, bytes,
// messages and frames by direction, drops by reason. It does not touch the
// active gauge (SessionClosed does). Safe from any goroutine; call it once.
func (p *Provider) EndSession(span trace.Span, sum SessionSummary) {
	p.recordMetrics(&sum)
	if span == nil {
		return
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	reasons := sortedKeys(sum.Dropped)
	attrs := make([]attribute.KeyValue, 0, 12+len(reasons))
	var dropped uint64
	for _, r := range reasons {
		dropped += sum.Dropped[r]
		attrs = append(attrs, attribute.Int64(AttrDroppedPrefix+r, int64(sum.Dropped[r])))
	}
	attrs = append(attrs,
		AttrBytesUp.Int64(int64(sum.BytesUp)),
		AttrBytesDown.Int64(int64(sum.BytesDown)),
		AttrMessagesUp.Int64(int64(sum.MessagesUp)),
		AttrFramesUp.Int64(int64(sum.FramesUp)),
		AttrFramesDown.Int64(int64(sum.FramesDown)),
		AttrDroppedTotal.Int64(int64(dropped)),
		AttrCloseCode.Int(sum.CloseCode),
		AttrCloseReason.String(Redact(sum.CloseReason)),
		AttrDurationMS.Int64(sum.Duration.Milliseconds()),
	)
	if sum.Interactor != "" {
		attrs = append(attrs, AttrInteractor.String(sum.Interactor))
	}
	if sum.HTTPStatus != 0 {
		attrs = append(attrs, AttrHTTPStatus.Int(sum.HTTPStatus))
	}
	if sum.EventsOmitted != 0 {
		attrs = append(attrs, AttrOmitted.Int64(int64(sum.EventsOmitted)))
	}
	span.SetAttributes(attrs...)
	for i := range sum.Events {
		ev := &sum.Events[i]
		o := []trace.EventOption{trace.WithAttributes(ev.Attrs...)}
		if !ev.Time.IsZero() {
			o = append(o, trace.WithTimestamp(ev.Time))
		}
		span.AddEvent(ev.Name, o...)
	}
	if failed(sum.CloseCode, sum.HTTPStatus) {
		span.SetStatus(codes.Error, Redact(sum.CloseReason))
	}
	span.End()
}

// failed: close codes other than normal (1000), going away (1001) and
// no status (1005), and HTTP 5xx answers, mark the span as an error.
// Policy closes (1008) count as errors: something was refused.
func failed(code, status int) bool {
	if status >= 500 {
		return true
	}
	switch code {
	case 0, 1000, 1001, 1005:
		return false
	}
	return true
}

func (p *Provider) recordMetrics(sum *SessionSummary) {
	ctx := context.Background()
	m := &p.m
	m.sessions.Add(ctx, 1, p.reasonOption(sum.CloseReason)...)
	m.bytes.Add(ctx, int64(sum.BytesUp), m.up...)
	m.bytes.Add(ctx, int64(sum.BytesDown), m.down...)
	m.messages.Add(ctx, int64(sum.MessagesUp), m.up...)
	m.frames.Add(ctx, int64(sum.FramesUp), m.up...)
	m.frames.Add(ctx, int64(sum.FramesDown), m.down...)
	for r, n := range sum.Dropped {
		if n > 0 {
			m.drops.Add(ctx, int64(n), metric.WithAttributes(attribute.String("reason", DropReasonLabel(r))))
		}
	}
}

// LogAttrs are the trace_id and span_id of span, for slog lines about it;
// nil when the span has no valid context (tracing off, no traceparent).
func LogAttrs(span trace.Span) []slog.Attr {
	if span == nil {
		return nil
	}
	sc := span.SpanContext()
	if !sc.IsValid() {
		return nil
	}
	return []slog.Attr{
		slog.String("trace_id", sc.TraceID().String()),
		slog.String("span_id", sc.SpanID().String()),
	}
}

// SessionLogger returns l with the session's identity (kind, id,
// organization, client_id, viewer, upstream as scheme://host) and the span's
// trace_id/span_id attached, so every line about the session carries them.
// One allocation batch per session; build it once, when the identity is
// known, and keep it in the session struct.
func SessionLogger(l *slog.Logger, span trace.Span, info SessionInfo) *slog.Logger {
	args := make([]any, 0, 9)
	add := func(k, v string) {
		if v != "" {
			args = append(args, slog.String(k, v))
		}
	}
	add("kind", info.Kind)
	add("id", info.ID)
	add("organization", info.Organization)
	add("client_id", info.ClientID)
	add("viewer", info.Viewer)
	if h := cleanHost(info.UpstreamHost); h != "" {
		add("upstream", info.UpstreamScheme+"://"+h)
	}
	for _, a := range LogAttrs(span) {
		args = append(args, a)
	}
	return l.With(args...)
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
