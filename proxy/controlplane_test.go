package proxy_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/resolve"
	"vncedge/rfbparse"
)

// controlPlane is a real HTTP control plane (httptest) whose session status
// the test changes.
type controlPlane struct {
	*httptest.Server
	mu     sync.Mutex
	status map[string]string // id → status; missing = 404
	org    string
	vncURL string
	calls  atomic.Int64
}

func startControlPlane(t *testing.T, vncURL string) *controlPlane {
	cp := &controlPlane{status: map[string]string{}, org: "o1", vncURL: vncURL}
	cp.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.calls.Add(1)
		if r.Header.Get("x-api-key") != "k1" {
			http.Error(w, "bad key", http.StatusUnauthorized)
			return
		}
		var id string
		if n, _ := fmt.Sscanf(r.URL.Path, "/browser_session/%s", &id); n != 1 {
			http.NotFound(w, r)
			return
		}
		cp.mu.Lock()
		st, ok := cp.status[id]
		cp.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"organization_id": cp.org, "status": st, "vnc_url": cp.vncURL})
	}))
	t.Cleanup(cp.Close)
	return cp
}

func (cp *controlPlane) set(id, status string) {
	cp.mu.Lock()
	cp.status[id] = status
	cp.mu.Unlock()
}

// TestControlPlaneLiveness: viewers resolved through a real HTTP control plane
// are closed with 1000 session-ended once it reports the browser session
// completed, and many viewers of one session share its calls.
func TestControlPlaneLiveness(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	cp := startControlPlane(t, "tcp://"+vnc.Addr())
	cp.set("pbs_1", "running")
	hr, err := resolve.NewHTTPResolver(resolve.HTTPConfig{Base: cp.URL, CacheTTL: 50 * time.Millisecond, DefaultControl: rfbparse.User})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: hr, EndReason: resolve.Reason, Policy: rfbparse.DefaultPolicy(),
		LivenessPeriod: 100 * time.Millisecond})

	if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/browser_session/pbs_404?client_id=a&apikey=k1"); st != 404 {
		t.Fatalf("unknown session: %d, want 404", st)
	}
	if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/browser_session/pbs_1?client_id=a&apikey=nope"); st != 401 {
		t.Fatalf("bad key: %d, want 401", st)
	}
	if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/browser_session/pbs_1?apikey=k1"); st != 400 {
		t.Fatalf("no client_id: %d, want 400", st)
	}
	cp.set("pbs_done", "completed")
	if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/browser_session/pbs_done?client_id=a&apikey=k1"); st != 409 {
		t.Fatalf("finished session: %d, want 409", st)
	}

	const viewers = 20
	var conns []*viewerConn
	for i := range viewers {
		ws, cl := vncViewer(t, addr, fmt.Sprintf("/v1/stream/vnc/browser_session/pbs_1?client_id=c%d&apikey=k1", i))
		conns = append(conns, &viewerConn{ws, cl})
	}
	before := cp.calls.Load()
	cp.set("pbs_1", "completed")
	for _, c := range conns {
		if ce := awaitCloseOf(t, c.ws, c.cl); ce.Code != 1000 || ce.Reason != "session-ended" {
			t.Fatalf("close %d %q, want 1000 session-ended", ce.Code, ce.Reason)
		}
	}
	if calls := cp.calls.Load() - before; calls > 10 {
		t.Errorf("%d control-plane calls for %d viewers in a few periods: not shared", calls, viewers)
	}
}

// TestTokenRoutes: a viewer with a signed token reaches its upstream with no
// network call; a forged token gets 401; expiry closes with token-expired.
func TestTokenRoutes(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	secret := make([]byte, 32)
	rand.Read(secret)
	tr, err := resolve.NewTokenResolver(resolve.TokenConfig{HS256Secret: secret, DefaultControl: rfbparse.User})
	if err != nil {
		t.Fatal(err)
	}
	_, addr := startProxy(t, proxy.Config{Resolver: tr, EndReason: resolve.Reason, LivenessPeriod: 50 * time.Millisecond})
	sign := func(key []byte, exp time.Time) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
			"org": "o1", "kind": "task", "id": "tsk_1", "upstream": "tcp://" + vnc.Addr(), "exp": exp.Unix(),
		})
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	forged := make([]byte, 32)
	rand.Read(forged)
	if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/task/tsk_1?client_id=a&token=Bearer%20"+sign(forged, time.Now().Add(time.Hour))); st != 401 {
		t.Fatalf("forged token: %d, want 401", st)
	}
	if st, _ := upgradeStatus(t, addr, "/v1/stream/vnc/task/other?client_id=a&token="+sign(secret, time.Now().Add(time.Hour))); st != 403 {
		t.Fatalf("token for another task: %d, want 403", st)
	}
	ws, cl := vncViewer(t, addr, "/v1/stream/vnc/task/tsk_1?client_id=a&token="+sign(secret, time.Now().Add(1500*time.Millisecond)))
	if ce := awaitCloseOf(t, ws, cl); ce.Code != 1000 || ce.Reason != "token-expired" {
		t.Fatalf("close %d %q, want 1000 token-expired", ce.Code, ce.Reason)
	}
}

type viewerConn struct {
	ws *rfbclient.WSConn
	cl *rfbclient.Client
}
