package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// liveResolver routes to one upstream and reports liveness from a flag,
// counting Verify calls.
type liveResolver struct {
	up      *url.URL
	ended   atomic.Bool
	calls   atomic.Int64
	called  chan struct{} // one token per Verify call, when not nil
	expires time.Time
}

func (l *liveResolver) Resolve(_ context.Context, r *upgrade.Request) (*proxy.Route, error) {
	_, kind, id, _ := proxy.ParseStreamPath(r.Path)
	return &proxy.Route{Kind: kind, ID: id, Organization: "o1", ClientID: r.Query.Get("client_id"),
		Upstream: l.up, Control: rfbparse.User, Live: l, Expires: l.expires}, nil
}

func (l *liveResolver) Verify(context.Context, *proxy.Route) error {
	l.calls.Add(1)
	if l.called != nil {
		select {
		case l.called <- struct{}{}:
		default:
		}
	}
	if l.ended.Load() {
		return fmt.Errorf("browser session completed: %w", proxy.ErrSessionEnded)
	}
	return errors.New("control plane flapping") // not an end: sessions stay
}

func awaitCloseOf(t *testing.T, ws *rfbclient.WSConn, cl *rfbclient.Client) *rfbclient.CloseError {
	t.Helper()
	_ = ws.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	var err error
	for err == nil {
		_, err = cl.ReadMessage()
	}
	var ce *rfbclient.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read %v, want a close frame", err)
	}
	return ce
}

// TestLivenessEndsEveryViewer: when the platform session ends, every viewer of
// it is closed with 1000 session-ended, with one Verify call per period for
// all of them, even while the screen is idle.
func TestLivenessEndsEveryViewer(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	u, _ := url.Parse("tcp://" + vnc.Addr())
	lr := &liveResolver{up: u, called: make(chan struct{}, 1)}
	cfg := proxy.Config{Resolver: lr, Policy: rfbparse.DefaultPolicy(), LivenessPeriod: 100 * time.Millisecond}
	_, addr := startProxy(t, cfg)
	type viewer struct {
		ws *rfbclient.WSConn
		cl *rfbclient.Client
	}
	var vs []viewer
	for i := range 5 {
		ws, cl := vncViewer(t, addr, fmt.Sprintf("/v1/stream/vnc/browser_session/pbs_live?client_id=c%d", i))
		vs = append(vs, viewer{ws, cl})
	}
	// Let a few periods pass with errors that are not an end: nobody is closed.
	for range 3 {
		select {
		case <-lr.called:
		case <-time.After(5 * time.Second):
			t.Fatal("no liveness check")
		}
	}
	lr.ended.Store(true)
	for _, v := range vs {
		if ce := awaitCloseOf(t, v.ws, v.cl); ce.Code != 1000 || ce.Reason != "session-ended" {
			t.Fatalf("close %d %q, want 1000 session-ended", ce.Code, ce.Reason)
		}
	}
	// One call per period for the five viewers: far fewer calls than viewers × periods.
	if c := lr.calls.Load(); c > 20 {
		t.Errorf("%d Verify calls: not shared between viewers", c)
	}
}

func TestTokenExpiryEndsSession(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	u, _ := url.Parse("tcp://" + vnc.Addr())
	lr := &liveResolver{up: u, expires: time.Now().Add(300 * time.Millisecond)}
	_, addr := startProxy(t, proxy.Config{Resolver: lr, Policy: rfbparse.DefaultPolicy(), LivenessPeriod: 50 * time.Millisecond})
	ws, cl := vncViewer(t, addr, "/v1/stream/vnc/task/tsk_exp?client_id=c1")
	if ce := awaitCloseOf(t, ws, cl); ce.Code != 1000 || ce.Reason != "token-expired" {
		t.Fatalf("close %d %q, want 1000 token-expired", ce.Code, ce.Reason)
	}
}

// TestCompatRefusals: with --compat=skyvern a refused viewer is upgraded and
// then closed: 1002 for credentials, 1013 for a session that is not there.
func TestCompatRefusals(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	doc := "organizations: [{id: o1, api_keys: [k1]}]\nsessions:\n- {kind: task, id: t1, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n"
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	sr, err := proxy.LoadStaticResolver(f, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: sr, Compat: true})
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/v1/stream/vnc/task/t1?client_id=c&apikey=wrong", 1002},
		{"/v1/stream/vnc/task/nope?client_id=c&apikey=k1", 1013},
	} {
		ws, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+tc.path, nil, nil)
		if err != nil {
			t.Fatalf("%s: the upgrade must succeed in compat mode: %v", tc.path, err)
		}
		_ = ws.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = ws.Read(make([]byte, 16))
		var ce *rfbclient.CloseError
		if !errors.As(err, &ce) || int(ce.Code) != tc.code {
			t.Errorf("%s: %v, want close %d", tc.path, err, tc.code)
		}
		ws.Close()
	}
}
