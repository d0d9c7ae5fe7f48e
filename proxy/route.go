package proxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// A Resolver turns an upgrade request into the upstream it must reach. It runs
// off the event loop (it may do network I/O) and must be safe for concurrent
// use. Errors that are *upgrade.Error answer the viewer with their HTTP status;
// any other error answers 502.
type Resolver interface {
	Resolve(ctx context.Context, r *upgrade.Request) (*Route, error)
}

// Route is where a viewer's stream goes and who it belongs to.
type Route struct {
	Kind, ID     string // platform route: browser_session, task or workflow_run, and its id
	Organization string
	ClientID     string
	Upstream     *url.URL    // tcp://host:port, ws://host:port/path or wss://host:port/path
	Header       http.Header // extra headers for ws/wss upstreams (e.g. x-api-key); never logged
	Control      rfbparse.Interactor
	// CDPURL is the browser's DevTools endpoint (ws://…/devtools/browser/…
	// or http://host:port), used for the clipboard; empty: no clipboard.
	CDPURL string
	// Expires ends the session with close 1000 "token-expired"; zero: never.
	Expires time.Time
	// Live, when set, is asked periodically whether the session still runs.
	Live Verifier
	// Credential is what the viewer authenticated with, for resolvers that
	// forward it on liveness calls. Never logged or put in spans.
	Credential string
	// Record overrides whether this session is recorded: nil follows the
	// server (Config.Recorder), false never records it, true records it when
	// the server has a Recorder (resolvers may set it from a sessions-file
	// field, a token claim or the control-plane answer).
	Record *bool
}

// ErrSessionEnded is returned (possibly wrapped) by a Verifier when the
// browser session, task or workflow run is over.
var ErrSessionEnded = errors.New("session ended")

// A Verifier re-checks a route's liveness off the event loop. Verify returns
// nil while the session is live, an error wrapping ErrSessionEnded once it is
// over, and any other error when it cannot tell (the proxy keeps the session
// through a grace period of such errors). Implementations dedupe: many viewers
// of one session must cost one upstream call per period.
type Verifier interface {
	Verify(ctx context.Context, rt *Route) error
}

// Kinds of platform session a stream can belong to.
var kinds = map[string]bool{"browser_session": true, "task": true, "workflow_run": true}

// ParseStreamPath splits /v1/stream/{channel}/{kind}/{id} (also under /api)
// into its parts; ok is false for any other path.
func ParseStreamPath(path string) (channel, kind, id string, ok bool) {
	path = strings.TrimPrefix(path, "/api")
	rest, found := strings.CutPrefix(path, "/v1/stream/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] == "" || !kinds[parts[1]] {
		return "", "", "", false
	}
	if parts[0] != "vnc" && parts[0] != "messages" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// ParseUpstream parses and checks an upstream URL.
func ParseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", raw, err)
	}
	switch u.Scheme {
	case "tcp":
		if u.Port() == "" {
			return nil, fmt.Errorf("upstream %q: tcp needs host:port", raw)
		}
	case "ws", "wss":
	default:
		return nil, fmt.Errorf("upstream %q: scheme must be tcp, ws or wss", raw)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: no host", raw)
	}
	return u, nil
}

// TargetResolver sends every path to one upstream, as websockify does.
type TargetResolver struct {
	Upstream *url.URL
	Header   http.Header
	Control  rfbparse.Interactor
	CDPURL   string // DevTools endpoint of the browser behind Upstream, for the clipboard
}

// Resolve implements Resolver.
func (t *TargetResolver) Resolve(_ context.Context, r *upgrade.Request) (*Route, error) {
	rt := &Route{Upstream: t.Upstream, Header: t.Header, Control: t.Control,
		ClientID: r.Query.Get("client_id"), CDPURL: t.CDPURL}
	if _, kind, id, ok := ParseStreamPath(r.Path); ok {
		rt.Kind, rt.ID = kind, id // pairs a viewer's VNC and message channels
	}
	return rt, nil
}

// SessionsFile is the YAML document behind StaticResolver.
type SessionsFile struct {
	Organizations []struct {
		ID      string   `yaml:"id"`
		APIKeys []string `yaml:"api_keys"`
	} `yaml:"organizations"`
	Sessions []struct {
		Kind            string            `yaml:"kind"`
		ID              string            `yaml:"id"`
		Organization    string            `yaml:"organization"`
		Upstream        string            `yaml:"upstream"`
		UpstreamHeaders map[string]string `yaml:"upstream_headers"`
		Control         string            `yaml:"control"`
	} `yaml:"sessions"`
}

type staticTable struct {
	keys     map[string]string // API key → organization
	sessions map[string]*Route // kind/id → route
}

// StaticResolver maps platform routes to upstreams from a YAML file and checks
// the viewer's API key (query apikey or header x-api-key) against the
// session's organization. Reload swaps the table atomically; live sessions
// are not touched.
type StaticResolver struct {
	table atomic.Pointer[staticTable]
	// DefaultControl is who has control at start when a session does not say.
	DefaultControl rfbparse.Interactor
}

// LoadStaticResolver reads a sessions file.
func LoadStaticResolver(path string, defaultControl rfbparse.Interactor) (*StaticResolver, error) {
	s := &StaticResolver{DefaultControl: defaultControl}
	if err := s.Reload(path); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the sessions file; on error the old table stays.
func (s *StaticResolver) Reload(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("sessions file: %w", err)
	}
	var f SessionsFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("sessions file %s: %w", path, err)
	}
	t := &staticTable{keys: map[string]string{}, sessions: map[string]*Route{}}
	for _, o := range f.Organizations {
		for _, k := range o.APIKeys {
			if k == "" {
				return fmt.Errorf("sessions file %s: organization %q: empty api key", path, o.ID)
			}
			t.keys[k] = o.ID
		}
	}
	for i, e := range f.Sessions {
		if !kinds[e.Kind] || e.ID == "" {
			return fmt.Errorf("sessions file %s: session %d: kind must be browser_session, task or workflow_run, and id set", path, i)
		}
		u, err := ParseUpstream(e.Upstream)
		if err != nil {
			return fmt.Errorf("sessions file %s: session %s/%s: %w", path, e.Kind, e.ID, err)
		}
		ctl := s.DefaultControl
		switch e.Control {
		case "":
		case "user":
			ctl = rfbparse.User
		case "agent":
			ctl = rfbparse.Agent
		default:
			return fmt.Errorf("sessions file %s: session %s/%s: control must be user or agent", path, e.Kind, e.ID)
		}
		h := http.Header{}
		for k, v := range e.UpstreamHeaders {
			h.Set(k, v)
		}
		t.sessions[e.Kind+"/"+e.ID] = &Route{Kind: e.Kind, ID: e.ID, Organization: e.Organization,
			Upstream: u, Header: h, Control: ctl}
	}
	s.table.Store(t)
	return nil
}

// Resolve implements Resolver.
func (s *StaticResolver) Resolve(_ context.Context, r *upgrade.Request) (*Route, error) {
	channel, kind, id, ok := ParseStreamPath(r.Path)
	if !ok || channel != "vnc" {
		return nil, &upgrade.Error{Status: http.StatusNotFound, Message: "unknown route"}
	}
	key := r.Query.Get("apikey")
	if key == "" {
		key = r.Get("x-api-key")
	}
	if key == "" {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "missing api key"}
	}
	t := s.table.Load()
	org, known := "", false
	for k, o := range t.keys { // constant-time compare per key: no timing oracle on the key
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			org, known = o, true
		}
	}
	if !known {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "invalid api key"}
	}
	route, ok := t.sessions[kind+"/"+id]
	if !ok {
		return nil, &upgrade.Error{Status: http.StatusNotFound, Message: "unknown session"}
	}
	if route.Organization != org {
		return nil, &upgrade.Error{Status: http.StatusForbidden, Message: "session belongs to another organization"}
	}
	rt := *route
	rt.ClientID = r.Query.Get("client_id")
	return &rt, nil
}
