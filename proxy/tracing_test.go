package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
	"vncedge/tracing"
	"vncedge/tracing/jaegertest"
)

// TestTracingIntoJaeger runs sessions through vncedge exporting OTLP to a real
// Jaeger, then reads the trace back: the session span continues the viewer's
// traceparent, carries the session's attributes and counters, has resolve and
// dial children, and holds no credential; the session's log line names the
// trace; /metrics counts the session.
func TestTracingIntoJaeger(t *testing.T) {
	if testing.Short() {
		t.Skip("real Jaeger: not with -short")
	}
	j := jaegertest.Start(t)
	const apiKey = "KEY-secret-7f3a9"
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := fmt.Sprintf("organizations: [{id: org_t, api_keys: [%s]}]\nsessions:\n- {kind: browser_session, id: pbs_trace, organization: org_t, upstream: 'tcp://%s', control: user}\n", apiKey, vnc.Addr())
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	tcfg := tracing.DefaultConfig()
	tcfg.Enabled, tcfg.Protocol, tcfg.Endpoint, tcfg.Insecure = true, tracing.ProtocolGRPC, j.OTLPGRPC, true
	tp, err := tracing.Setup(context.Background(), tcfg, tracing.WithBatchOptions(sdktrace.WithBlocking(), sdktrace.WithBatchTimeout(50*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	srv, addr := startProxy(t, proxy.Config{Resolver: sr, Policy: rfbparse.DefaultPolicy(), Tracing: tp,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})

	hdr := http.Header{"Traceparent": {"00-" + traceID + "-" + parentID + "-01"}}
	ws, err := rfbclient.Dialer{Protocols: []string{"binary"}, Header: hdr}.Dial(ctxT(t),
		"ws://"+addr+"/v1/stream/vnc/browser_session/pbs_trace?client_id=cl_t&apikey="+apiKey)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := rfbclient.Handshake(ws, rfbclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cl.KeyEvent(true, rfbparse.KeysymControlL)
	cl.KeyEvent(true, 'o') // dropped
	cl.KeyEvent(false, 'o')
	cl.KeyEvent(false, rfbparse.KeysymControlL)
	until(t, vnc, cl)
	ws.CloseWith(1000, "bye")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	tp.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	if err := tp.Shutdown(ctx); err != nil { // flush
		t.Fatal(err)
	}

	tr, err := j.Trace(traceID, 3)
	if err != nil {
		t.Fatalf("trace %s in Jaeger: %v\n%s", traceID, err, j.LogTail(20))
	}
	sess := tr.Span(tracing.SpanSession)
	if sess == nil {
		t.Fatalf("no %s span in %+v", tracing.SpanSession, tr)
	}
	if sess.ParentID() != parentID {
		t.Errorf("session span parent %q, want the viewer's %q", sess.ParentID(), parentID)
	}
	for k, want := range map[string]string{
		"vnc.kind": "browser_session", "vnc.session.id": "pbs_trace", "vnc.organization": "org_t",
		"vnc.client_id": "cl_t", "vnc.upstream.scheme": "tcp", "vnc.upstream.host": vnc.Addr(),
		"vnc.interactor": "user", "vnc.close.reason": "viewer-closed",
	} {
		if got := sess.TagString(k); got != want {
			t.Errorf("tag %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"vnc.bytes.up", "vnc.bytes.down", "vnc.close.code", "vnc.dropped.shortcut", "vnc.viewer.address"} {
		if _, ok := sess.Tag(k); !ok {
			t.Errorf("tag %s missing", k)
		}
	}
	// The o key-down is the shortcut; its key-up releases nothing the
	// server holds (rfbparse's server-faithful key state).
	if v, _ := sess.Tag("vnc.dropped.shortcut"); fmt.Sprint(v) != "1" {
		t.Errorf("vnc.dropped.shortcut = %v, want 1 (the Ctrl+O key-down)", v)
	}
	if v, _ := sess.Tag("vnc.dropped.unmatched-release"); fmt.Sprint(v) != "1" {
		t.Errorf("vnc.dropped.unmatched-release = %v, want 1 (the o key-up)", v)
	}
	for _, child := range []string{tracing.SpanResolve, tracing.SpanDial} {
		c := tr.Span(child)
		if c == nil || c.ParentID() != sess.SpanID {
			t.Errorf("child span %s missing or not under the session span", child)
		}
	}
	raw, _ := json.Marshal(tr)
	if strings.Contains(string(raw), apiKey) {
		t.Error("the API key appears in the trace")
	}
	if !strings.Contains(logs.String(), traceID) {
		t.Errorf("no log line names trace %s:\n%s", traceID, logs.String())
	}
	if strings.Contains(logs.String(), apiKey) {
		t.Error("the API key appears in the logs")
	}
	if !strings.Contains(metrics, "vncedge_sessions_total") || !strings.Contains(metrics, "vncedge_policy_dropped_total") {
		t.Errorf("/metrics lacks session counters:\n%s", metrics)
	}
}

// TestTracingDialSpans: a wss upstream's dial has TLS and WebSocket-upgrade
// child spans; a CDP clipboard call has its own span; nothing secret in any.
func TestTracingDialSpans(t *testing.T) {
	const secret = "tok-SECRET-31337"
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		defer conn.Close()
		_ = wsutil.WriteServerBinary(conn, []byte("RFB 003.008\n"))
		_, _ = io.Copy(io.Discard, conn)
	}))
	defer up.Close()
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())

	exp := tracetest.NewInMemoryExporter()
	tp, err := tracing.Setup(context.Background(), tracing.Config{Enabled: true, SampleRatio: 1, ServiceName: "vncedge"},
		tracing.WithExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	cfg := targetConfig(t, "wss://"+strings.TrimPrefix(up.URL, "https://")+"/vnc/pbs_1?token="+secret, rfbparse.User)
	cfg.UpstreamTLS = &tls.Config{RootCAs: pool}
	cfg.Tracing = tp
	srv, addr := startProxy(t, cfg)
	ws, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+"/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	banner := make([]byte, 12)
	if _, err := io.ReadFull(ws, banner); err != nil {
		t.Fatal(err)
	}
	ws.CloseWith(1000, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tp.ForceFlush(ctx); err != nil { // not Shutdown: it empties the in-memory exporter
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	dial, ok := byName[tracing.SpanDial]
	if !ok {
		t.Fatalf("no dial span in %d spans", len(spans))
	}
	for _, child := range []string{tracing.SpanDialTLS, tracing.SpanDialWS} {
		c, ok := byName[child]
		if !ok || c.Parent.SpanID() != dial.SpanContext.SpanID() {
			t.Errorf("span %s missing or not under %s", child, tracing.SpanDial)
		}
	}
	raw, _ := json.Marshal(spans)
	if strings.Contains(string(raw), secret) {
		t.Error("the upstream token appears in a span")
	}
}
