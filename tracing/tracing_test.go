package tracing

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID  = "00f067aa0ba902b7"
	traceparent   = "00-" + parentTraceID + "-" + parentSpanID + "-01"
)

// Values that must never reach a span, a metric or a log line.
const (
	secretToken  = "tok-SECRET-7f3a9c"
	secretAPIKey = "key-SECRET-c0ffee"
	secretPass   = "pw-SECRET-1234"
)

func newTestProvider(t *testing.T, enabled bool) (*Provider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	cfg := DefaultConfig()
	cfg.Enabled = enabled
	cfg.ServiceVersion = "v-test"
	cfg.InstanceID = "instance-1"
	p, err := Setup(context.Background(), cfg, WithExporter(exp), WithBatchOptions(sdktrace.WithBlocking()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, exp
}

func testInfo() SessionInfo {
	return SessionInfo{
		Kind: "browser_session", ID: "bs_123", Organization: "org_9", ClientID: "client-a",
		UpstreamScheme: "wss",
		UpstreamHost:   "user:" + secretPass + "@edge.example:443/vnc/bs_123/" + secretToken + "?token=" + secretToken,
		Viewer:         "203.0.113.7:50123",
	}
}

func spansByName(spans tracetest.SpanStubs) map[string]tracetest.SpanStub {
	m := make(map[string]tracetest.SpanStub, len(spans))
	for _, s := range spans {
		m[s.Name] = s
	}
	return m
}

func attrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := make(map[string]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

// runSession does what the proxy does: start, resolve, dial, events, end.
func runSession(t *testing.T, p *Provider, tp string) {
	t.Helper()
	ctx, span := p.StartSession(tp, SessionInfo{Kind: "browser_session", ID: "bs_123", ClientID: "client-a", Viewer: "203.0.113.7:50123"})
	_, rs := p.StartChild(ctx, SpanResolve)
	EndChild(rs, nil)
	p.AnnotateSession(span, testInfo()) // organization and upstream, known after resolve
	dctx, ds := p.StartChild(ctx, SpanDial)
	_, ws := p.StartChild(dctx, SpanDialWS)
	EndChild(ws, errors.New("dial wss://user:"+secretPass+"@edge.example/vnc/bs_123/"+secretToken+"?token="+secretToken+": x-api-key: "+secretAPIKey+" refused"))
	EndChild(ds, nil)
	p.DialLatency(12*time.Millisecond, true)

	var log EventLog
	log.PerName = 2
	log.Add(EventControl, attribute.String("interactor", "agent"))
	for range 5 {
		log.Add(EventPolicyDrop, attribute.String("reason", "shortcut"))
	}
	p.EndSession(span, SessionSummary{
		Interactor: "user", BytesUp: 100, BytesDown: 20000, MessagesUp: 7, FramesUp: 7, FramesDown: 30,
		Dropped:   map[string]uint64{"shortcut": 5, "clipboard": 1},
		CloseCode: 1000, CloseReason: "upstream-closed", Duration: 1500 * time.Millisecond,
		Events: log.Events(), EventsOmitted: log.Omitted(),
	})
}

func TestSessionSpanContinuesTraceparent(t *testing.T) {
	p, exp := newTestProvider(t, true)
	runSession(t, p, traceparent)
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := spansByName(exp.GetSpans())
	sess, ok := spans[SpanSession]
	if !ok {
		t.Fatalf("no %s span in %d spans", SpanSession, len(exp.GetSpans()))
	}
	if got := sess.SpanContext.TraceID().String(); got != parentTraceID {
		t.Errorf("session trace id %s, want %s (from traceparent)", got, parentTraceID)
	}
	if got := sess.Parent.SpanID().String(); got != parentSpanID || !sess.Parent.IsRemote() {
		t.Errorf("session parent %s remote=%v, want remote %s", got, sess.Parent.IsRemote(), parentSpanID)
	}
	if sess.SpanKind != trace.SpanKindServer {
		t.Errorf("session kind %v", sess.SpanKind)
	}
	for _, name := range []string{SpanResolve, SpanDial} {
		c, ok := spans[name]
		if !ok {
			t.Fatalf("no %s span", name)
		}
		if c.Parent.SpanID() != sess.SpanContext.SpanID() || c.SpanContext.TraceID() != sess.SpanContext.TraceID() {
			t.Errorf("%s is not a child of the session span", name)
		}
	}
	if spans[SpanDial].SpanKind != trace.SpanKindClient {
		t.Errorf("dial kind %v, want client", spans[SpanDial].SpanKind)
	}
	ws := spans[SpanDialWS]
	if ws.Parent.SpanID() != spans[SpanDial].SpanContext.SpanID() {
		t.Errorf("%s is not a child of %s", SpanDialWS, SpanDial)
	}
	if ws.Status.Code != codes.Error || !strings.Contains(ws.Status.Description, "refused") {
		t.Errorf("ws handshake status %+v", ws.Status)
	}

	a := attrMap(sess.Attributes)
	want := map[attribute.Key]any{
		AttrKind: "browser_session", AttrSessionID: "bs_123", AttrOrganization: "org_9", AttrClientID: "client-a",
		AttrUpstreamScheme: "wss", AttrUpstreamHost: "edge.example:443", AttrViewer: "203.0.113.7:50123",
		AttrInteractor: "user", AttrBytesUp: int64(100), AttrBytesDown: int64(20000), AttrMessagesUp: int64(7),
		AttrFramesUp: int64(7), AttrFramesDown: int64(30), AttrDroppedTotal: int64(6),
		AttrDroppedPrefix + "shortcut": int64(5), AttrDroppedPrefix + "clipboard": int64(1),
		AttrCloseCode: int64(1000), AttrCloseReason: "upstream-closed", AttrDurationMS: int64(1500),
		AttrOmitted: int64(3),
	}
	for k, w := range want {
		v, ok := a[string(k)]
		if !ok {
			t.Errorf("attribute %s missing", k)
			continue
		}
		if got := v.AsInterface(); got != w {
			t.Errorf("attribute %s = %v (%T), want %v", k, got, got, w)
		}
	}
	if sess.Status.Code == codes.Error {
		t.Errorf("normal close marked as error: %+v", sess.Status)
	}

	// Events: the control change, the first 2 drops, then the omitted count.
	var names []string
	for _, e := range sess.Events {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "vnc.control,vnc.policy.drop,vnc.policy.drop,vnc.events.omitted" {
		t.Errorf("events %s", got)
	}
	if om := attrMap(sess.Events[len(sess.Events)-1].Attributes); om[EventPolicyDrop].AsInt64() != 3 {
		t.Errorf("omitted event attrs %v", sess.Events[len(sess.Events)-1].Attributes)
	}

	// Resource.
	ra := attrMap(sess.Resource.Attributes())
	if ra["service.name"].AsString() != "vncedge" || ra["service.version"].AsString() != "v-test" || ra["service.instance.id"].AsString() != "instance-1" {
		t.Errorf("resource %v", sess.Resource.Attributes())
	}
	assertNoSecrets(t, exp.GetSpans())
}

func assertNoSecrets(t *testing.T, spans tracetest.SpanStubs) {
	t.Helper()
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.Name + " " + s.Status.Description + "\n")
		for _, kv := range s.Attributes {
			b.WriteString(string(kv.Key) + "=" + kv.Value.String() + "\n")
		}
		for _, e := range s.Events {
			for _, kv := range e.Attributes {
				b.WriteString(e.Name + " " + string(kv.Key) + "=" + kv.Value.String() + "\n")
			}
		}
	}
	checkNoSecrets(t, "spans", b.String())
}

func checkNoSecrets(t *testing.T, what, text string) {
	t.Helper()
	for _, s := range []string{secretToken, secretAPIKey, secretPass, "SECRET", "token=", "user:"} {
		if strings.Contains(text, s) {
			t.Errorf("%s contain %q:\n%s", what, s, text)
		}
	}
}

func TestSessionWithoutOrWithBadTraceparent(t *testing.T) {
	for _, tp := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "ff-" + parentTraceID + "-" + parentSpanID + "-01"} {
		p, exp := newTestProvider(t, true)
		_, span := p.StartSession(tp, SessionInfo{Kind: "task", ID: "t1"})
		p.EndSession(span, SessionSummary{CloseCode: 1011, CloseReason: "internal"})
		_ = p.ForceFlush(context.Background())
		spans := exp.GetSpans()
		if len(spans) != 1 {
			t.Fatalf("traceparent %q: %d spans", tp, len(spans))
		}
		s := spans[0]
		if s.Parent.IsValid() {
			t.Errorf("traceparent %q: span has parent %v", tp, s.Parent)
		}
		if s.SpanContext.TraceID().String() == parentTraceID {
			t.Errorf("traceparent %q: reused trace id", tp)
		}
		if s.Status.Code != codes.Error || s.Status.Description != "internal" {
			t.Errorf("close 1011: status %+v", s.Status)
		}
	}
}

func TestUnsampledParentIsNotExported(t *testing.T) {
	p, exp := newTestProvider(t, true)
	_, span := p.StartSession("00-"+parentTraceID+"-"+parentSpanID+"-00", SessionInfo{Kind: "task", ID: "t1"})
	if span.IsRecording() {
		t.Error("span under an unsampled parent is recording")
	}
	p.EndSession(span, SessionSummary{CloseCode: 1000})
	_ = p.ForceFlush(context.Background())
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans exported", n)
	}
}

func TestSampleRatioZero(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	cfg := DefaultConfig()
	cfg.Enabled, cfg.SampleRatio = true, 0
	p, err := Setup(context.Background(), cfg, WithExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	_, span := p.StartSession("", SessionInfo{Kind: "task", ID: "t1"})
	p.EndSession(span, SessionSummary{})
	_, span = p.StartSession(traceparent, SessionInfo{Kind: "task", ID: "t2"}) // sampled parent wins
	p.EndSession(span, SessionSummary{})
	_ = p.ForceFlush(context.Background())
	if n := len(exp.GetSpans()); n != 1 {
		t.Errorf("%d spans exported, want only the one under a sampled parent", n)
	}
}

func TestDisabledIsNoopButMetricsWork(t *testing.T) {
	p, exp := newTestProvider(t, false)
	if p.Enabled() {
		t.Fatal("enabled")
	}
	ctx, span := p.StartSession(traceparent, SessionInfo{Kind: "task", ID: "t1"})
	if span.IsRecording() {
		t.Error("no-op span records")
	}
	// The viewer's trace id is still there for logs.
	if la := LogAttrs(span); len(la) != 2 || la[0].Value.String() != parentTraceID {
		t.Errorf("LogAttrs %v", la)
	}
	_, c := p.StartChild(ctx, SpanDial)
	EndChild(c, errors.New("x"))
	p.SessionOpened()
	p.EndSession(span, SessionSummary{BytesUp: 5, CloseReason: "viewer-closed", CloseCode: 1000})
	p.SessionClosed()
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans with tracing off", n)
	}
	text := scrape(t, p)
	for _, want := range []string{`vncedge_sessions_total{close_reason="viewer-closed"} 1`, `vncedge_relay_bytes_total{direction="up"} 5`} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if LogAttrs(trace.SpanFromContext(context.Background())) != nil {
		t.Error("LogAttrs of an invalid span context")
	}
}

func scrape(t *testing.T, p *Provider) string {
	t.Helper()
	rec := httptest.NewRecorder()
	p.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

func TestMetricsExposition(t *testing.T) {
	p, _ := newTestProvider(t, true)
	p.SessionOpened()
	p.SessionOpened()
	p.SessionClosed()
	runSession(t, p, traceparent)
	p.UpgradeFailed(403)
	p.UpgradeFailed(403)
	p.UpgradeFailed(502)
	p.DialLatency(3*time.Second, false)
	p.EndSession(nil, SessionSummary{CloseReason: "a reason with token=" + secretToken + " in it"})
	text := scrape(t, p)
	for _, want := range []string{
		"vncedge_sessions_active 1",
		`vncedge_sessions_total{close_reason="upstream-closed"} 1`,
		`vncedge_sessions_total{close_reason="other"} 1`,
		`vncedge_relay_bytes_total{direction="up"} 100`,
		`vncedge_relay_bytes_total{direction="down"} 20000`,
		`vncedge_relay_messages_total{direction="up"} 7`,
		`vncedge_relay_frames_total{direction="down"} 30`,
		`vncedge_policy_dropped_total{reason="shortcut"} 5`,
		`vncedge_policy_dropped_total{reason="other"} 1`, // not one of rfbparse's drop reasons
		`vncedge_upgrade_failures_total{status="403"} 2`,
		`vncedge_upgrade_failures_total{status="502"} 1`,
		`vncedge_upstream_dial_duration_seconds_bucket{result="ok",le="0.025"} 1`,
		`vncedge_upstream_dial_duration_seconds_count{result="error"} 1`,
		`target_info{`,
		`service_name="vncedge"`,
		"go_goroutines",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
	checkNoSecrets(t, "metrics", text)
}

func TestCloseReasonCardinalityBounded(t *testing.T) {
	p, _ := newTestProvider(t, false)
	for i := range 200 {
		p.EndSession(nil, SessionSummary{CloseReason: "r" + strings.Repeat("x", i%100)})
	}
	if n := strings.Count(scrape(t, p), "vncedge_sessions_total{"); n > maxCloseReasons+1 {
		t.Errorf("%d close_reason series", n)
	}
}

func TestSessionLogger(t *testing.T) {
	p, _ := newTestProvider(t, true)
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil))
	_, span := p.StartSession(traceparent, testInfo())
	l := SessionLogger(base, span, testInfo())
	l.Info("session start")
	l.Warn("upstream dial failed", "err", Redact("dial wss://edge.example/vnc/bs_123/"+secretToken+"?token="+secretToken+": refused"))
	p.EndSession(span, SessionSummary{})
	out := buf.String()
	for _, want := range []string{`"trace_id":"` + parentTraceID + `"`, `"span_id":"`, `"kind":"browser_session"`, `"id":"bs_123"`,
		`"organization":"org_9"`, `"client_id":"client-a"`, `"viewer":"203.0.113.7:50123"`, `"upstream":"wss://edge.example:443"`} {
		if strings.Count(out, want) != 2 {
			t.Errorf("log lines lack %s:\n%s", want, out)
		}
	}
	checkNoSecrets(t, "logs", out)
}

func TestEventLogLimitsAndAllocs(t *testing.T) {
	var l EventLog
	for range 100 {
		l.Add(EventPolicyDrop, attribute.String("reason", "shortcut"))
	}
	l.Add(EventControl, attribute.String("interactor", "user"))
	if n := len(l.Events()); n != DefaultEventsPerKey+2 {
		t.Errorf("%d events", n)
	}
	if l.Omitted() != 100-DefaultEventsPerKey {
		t.Errorf("omitted %d", l.Omitted())
	}
	allocs := testing.AllocsPerRun(1000, func() {
		l.Add(EventPolicyDrop, attribute.String("reason", "shortcut"), attribute.Int("keysym", 0x6f))
	})
	if allocs != 0 {
		t.Errorf("Add over the limit allocates %v times", allocs)
	}
	var m EventLog
	m.Max = 3
	for range 10 {
		m.Add("a")
		m.Add("b")
	}
	if len(m.Events()) != 4 || m.Omitted() != 17 {
		t.Errorf("max: %d events, %d omitted", len(m.Events()), m.Omitted())
	}
}

func TestMetricHelpersDoNotAllocate(t *testing.T) {
	p, _ := newTestProvider(t, false)
	for name, f := range map[string]func(){
		"SessionOpened": p.SessionOpened,
		"SessionClosed": p.SessionClosed,
		"DialLatency":   func() { p.DialLatency(time.Millisecond, true) },
		"EndSession": func() {
			p.EndSession(nil, SessionSummary{BytesUp: 1, BytesDown: 2, MessagesUp: 3, CloseCode: 1000, CloseReason: "upstream-closed"})
		},
	} {
		f()
		if a := testing.AllocsPerRun(100, f); a > 0 {
			t.Errorf("%s: %v allocs", name, a)
		}
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"dial wss://u:p@h.example:443/vnc/sid/tok?token=abc: refused", "dial wss://h.example:443/…: refused"},
		{"GET http://cp.internal/v1/x?apikey=k1 failed", "GET http://cp.internal/… failed"},
		{"see (https://h/x?token=abc).", "see (https://h/…)."},
		{"token=Bearer abc.def", "token=REDACTED"},
		{`{"x-api-key": "k-123", "n": 1}`, `{"x-api-key": "REDACTED", "n": 1}`},
		{"authorization: Bearer eyJhbGciOi", "authorization: REDACTED"},
		{"Bearer eyJhbGciOi.x.y expired", "Bearer REDACTED expired"},
		{"apikey=k1&client_id=c", "apikey=REDACTED&client_id=c"},
		{"upstream-closed", "upstream-closed"},
		{"tcp://127.0.0.1:5955", "tcp://127.0.0.1:5955"},
		{"", ""},
	} {
		got := Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
		"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SERVICE_NAME"} {
		t.Setenv(k, "")
	}
	c := DefaultConfig()
	c.FromEnv()
	if c != DefaultConfig() {
		t.Errorf("empty env changed config: %+v", c)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
	t.Setenv("OTEL_SERVICE_NAME", "edge-eu")
	c = DefaultConfig()
	c.FromEnv()
	want := Config{Enabled: true, Protocol: ProtocolHTTP, Insecure: true, SampleRatio: 0.25, ServiceName: "edge-eu"}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	c.FromEnv()
	if c.Enabled || c.Protocol != ProtocolGRPC {
		t.Errorf("got %+v", c)
	}
}

func TestSetupExporters(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Enabled: true, Protocol: ProtocolGRPC, Endpoint: "127.0.0.1:1", SampleRatio: 1}, true},
		{Config{Enabled: true, Protocol: ProtocolHTTP, Endpoint: "http://127.0.0.1:1", SampleRatio: 1}, true},
		{Config{Enabled: true, Protocol: ProtocolHTTP, Endpoint: "https://h:4318/custom/traces", SampleRatio: 1}, true},
		{Config{Enabled: true, Protocol: "", SampleRatio: 1}, true},
		{Config{Enabled: true, Protocol: "zmq", SampleRatio: 1}, false},
		{Config{Enabled: true, Protocol: ProtocolGRPC, Endpoint: "ftp://h:1", SampleRatio: 1}, false},
		{Config{Enabled: true, Protocol: ProtocolGRPC, SampleRatio: 2}, false},
	} {
		p, err := Setup(ctx, tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err %v", tc.cfg, err)
		}
		if p != nil {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			_ = p.Shutdown(sctx)
			cancel()
		}
	}
}
