package proxy_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// stalledResolver routes to one upstream; its Verifier never answers (a
// control plane that accepts and stalls) until the caller gives up.
type stalledResolver struct{ up *url.URL }

func (s *stalledResolver) Resolve(_ context.Context, r *upgrade.Request) (*proxy.Route, error) {
	_, kind, id, _ := proxy.ParseStreamPath(r.Path)
	return &proxy.Route{Kind: kind, ID: id, Organization: "o1", ClientID: r.Query.Get("client_id"),
		Upstream: s.up, Control: rfbparse.User, Live: s}, nil
}

func (s *stalledResolver) Verify(ctx context.Context, _ *proxy.Route) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestHostileStalledControlPlaneEndsSessions: through the real server, with
// a Verifier that stalls every check, live sessions end (fail closed) once
// LivenessGrace has passed without a successful check, within one period
// of it. Before, a stalled check was a transient error forever.
func TestHostileStalledControlPlaneEndsSessions(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	u, _ := url.Parse("tcp://" + vnc.Addr())
	const period, grace = 50 * time.Millisecond, 400 * time.Millisecond
	_, addr := startProxy(t, proxy.Config{Resolver: &stalledResolver{up: u}, Policy: rfbparse.DefaultPolicy(),
		LivenessPeriod: period, LivenessGrace: grace})
	start := time.Now()
	type viewer struct {
		ws *rfbclient.WSConn
		cl *rfbclient.Client
	}
	var vs []viewer
	for i := range 3 {
		ws, cl := vncViewer(t, addr, fmt.Sprintf("/v1/stream/vnc/browser_session/pbs_%d?client_id=c", i))
		vs = append(vs, viewer{ws, cl})
	}
	for _, v := range vs {
		ce := awaitCloseOf(t, v.ws, v.cl)
		if ce.Code != 1000 || ce.Reason != "liveness-unverified" {
			t.Fatalf("close %d %q, want 1000 liveness-unverified", ce.Code, ce.Reason)
		}
	}
	el := time.Since(start)
	t.Logf("stalled checks: sessions ended %v after they started (grace %v, period %v)", el, grace, period)
	if el < grace || el > grace+period+latencyLimit(200*time.Millisecond) {
		t.Errorf("sessions ended %v after the start, want within grace %v + period %v", el, grace, period)
	}
}
