package tracing_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"vncedge/tracing"
	"vncedge/tracing/jaegertest"
)

// TestJaegerExport sends a session's spans over OTLP (gRPC and HTTP) to a
// real Jaeger and reads them back from its query API.
func TestJaegerExport(t *testing.T) {
	if testing.Short() {
		t.Skip("real Jaeger: not with -short")
	}
	j := jaegertest.Start(t)

	for _, tc := range []struct {
		proto, endpoint, traceID string
	}{
		{tracing.ProtocolGRPC, j.OTLPGRPC, "5bf92f3577b34da6a3ce929d0e0e4701"},
		{tracing.ProtocolHTTP, "http://" + j.OTLPHTTP, "5bf92f3577b34da6a3ce929d0e0e4702"},
	} {
		t.Run(strings.ReplaceAll(tc.proto, "/", "_"), func(t *testing.T) {
			const parentSpan = "00f067aa0ba902b7"
			const secret = "tok-SECRET-9d8e"
			ctx := context.Background()
			cfg := tracing.DefaultConfig()
			cfg.Enabled, cfg.Protocol, cfg.Endpoint, cfg.Insecure = true, tc.proto, tc.endpoint, true
			cfg.ServiceVersion, cfg.InstanceID = "v-jaeger-test", "instance-"+tc.proto
			p, err := tracing.Setup(ctx, cfg, tracing.WithBatchOptions(sdktrace.WithBlocking(), sdktrace.WithBatchTimeout(50*time.Millisecond)))
			if err != nil {
				t.Fatal(err)
			}

			start := time.Now()
			sctx, span := p.StartSession("00-"+tc.traceID+"-"+parentSpan+"-01", tracing.SessionInfo{
				Kind: "browser_session", ID: "bs_jaeger", ClientID: "client-j", Viewer: "127.0.0.1:40000", Start: start,
			})
			_, rs := p.StartChild(sctx, tracing.SpanResolve)
			tracing.EndChild(rs, nil)
			p.AnnotateSession(span, tracing.SessionInfo{Organization: "org_j", UpstreamScheme: "wss",
				UpstreamHost: "edge.example:443/vnc/bs_jaeger/" + secret + "?token=" + secret})
			dctx, ds := p.StartChild(sctx, tracing.SpanDial, attribute.String("vnc.upstream.scheme", "wss"))
			_, hs := p.StartChild(dctx, tracing.SpanDialWS)
			tracing.EndChild(hs, nil)
			tracing.EndChild(ds, errors.New("dial wss://edge.example/vnc/bs_jaeger/"+secret+"?token="+secret+": timeout"))
			var ev tracing.EventLog
			ev.Add(tracing.EventControl, attribute.String("interactor", "user"))
			ev.Add(tracing.EventPolicyDrop, attribute.String("reason", "shortcut"))
			p.EndSession(span, tracing.SessionSummary{
				Interactor: "user", BytesUp: 111, BytesDown: 222222, MessagesUp: 33, FramesUp: 33, FramesDown: 44,
				Dropped: map[string]uint64{"shortcut": 2}, CloseCode: 1000, CloseReason: "viewer-closed",
				Duration: time.Since(start), Events: ev.Events(),
			})
			exported := time.Now()
			sdCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := p.Shutdown(sdCtx); err != nil {
				t.Fatalf("shutdown (flush to jaeger): %v", err)
			}

			// The service's trace list must hold our trace, complete.
			traces, err := j.TracesWhere("vncedge", 15*time.Second, func(ts []jaegertest.Trace) bool {
				for _, tr := range ts {
					if tr.TraceID == tc.traceID && len(tr.Spans) >= 4 {
						return true
					}
				}
				return false
			})
			if err != nil {
				t.Fatalf("query /api/traces?service=vncedge: %v (%d traces)", err, len(traces))
			}
			t.Logf("%s: trace queryable %v after shutdown returned", tc.proto, time.Since(exported).Round(time.Millisecond))
			var tr *jaegertest.Trace
			for i := range traces {
				if traces[i].TraceID == tc.traceID {
					tr = &traces[i]
				}
			}

			sess := tr.Span(tracing.SpanSession)
			if sess == nil {
				t.Fatalf("no %s span in %+v", tracing.SpanSession, tr.Spans)
			}
			if sess.TraceID != tc.traceID || sess.ParentID() != parentSpan {
				t.Errorf("session span trace %s parent %q, want trace %s parent %s (from traceparent)",
					sess.TraceID, sess.ParentID(), tc.traceID, parentSpan)
			}
			for k, want := range map[string]string{
				"vnc.kind": "browser_session", "vnc.session.id": "bs_jaeger", "vnc.organization": "org_j",
				"vnc.client_id": "client-j", "vnc.upstream.scheme": "wss", "vnc.upstream.host": "edge.example:443",
				"vnc.viewer.address": "127.0.0.1:40000", "vnc.interactor": "user",
				"vnc.bytes.up": "111", "vnc.bytes.down": "222222", "vnc.messages.up": "33",
				"vnc.frames.up": "33", "vnc.frames.down": "44", "vnc.dropped": "2", "vnc.dropped.shortcut": "2",
				"vnc.close.code": "1000", "vnc.close.reason": "viewer-closed", "span.kind": "server",
			} {
				if got := sess.TagString(k); got != want {
					t.Errorf("session tag %s = %q, want %q", k, got, want)
				}
			}
			if _, ok := sess.Tag("vnc.duration_ms"); !ok {
				t.Error("session tag vnc.duration_ms missing")
			}
			var logs []string
			for _, l := range sess.Logs {
				for _, f := range l.Fields {
					if f.Key == "event" {
						logs = append(logs, f.Value.(string))
					}
				}
			}
			if strings.Join(logs, ",") != "vnc.control,vnc.policy.drop" {
				t.Errorf("session events %v", logs)
			}

			for _, name := range []string{tracing.SpanResolve, tracing.SpanDial} {
				c := tr.Span(name)
				if c == nil {
					t.Errorf("no %s span", name)
					continue
				}
				if c.ParentID() != sess.SpanID || c.TraceID != tc.traceID {
					t.Errorf("%s: parent %s trace %s, want parent %s", name, c.ParentID(), c.TraceID, sess.SpanID)
				}
			}
			if d := tr.Span(tracing.SpanDial); d != nil {
				if d.TagString("span.kind") != "client" || d.TagString("error") != "true" {
					t.Errorf("dial span tags %+v", d.Tags)
				}
				if hs := tr.Span(tracing.SpanDialWS); hs == nil || hs.ParentID() != d.SpanID {
					t.Errorf("no %s under %s", tracing.SpanDialWS, tracing.SpanDial)
				}
			}

			proc := tr.Processes[sess.ProcessID]
			if proc.ServiceName != "vncedge" {
				t.Errorf("process service %q", proc.ServiceName)
			}
			pt := map[string]string{}
			for _, kv := range proc.Tags {
				pt[kv.Key], _ = kv.Value.(string)
			}
			if pt["service.version"] != "v-jaeger-test" || pt["service.instance.id"] != "instance-"+tc.proto {
				t.Errorf("process tags %v", proc.Tags)
			}

			raw, _ := json.Marshal(tr)
			if strings.Contains(string(raw), secret) || strings.Contains(string(raw), "token=") {
				t.Errorf("trace in jaeger holds a secret: %s", raw)
			}
		})
	}
}
