package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	// CDPHeader is sent to CDPURL (e.g. x-api-key for a routed browser);
	// Header never is. Never logged.
	CDPHeader http.Header
	// Expires ends the session with close 1000 "token-expired"; zero: never.
	Expires time.Time
	// Live, when set, is asked periodically whether the session still runs.
	Live Verifier
	// Credential is what the viewer authenticated with, for resolvers that
	// forward it on liveness calls. Never logged or put in spans.
	Credential string
	// Role is what the viewer may do: RoleController (the default) or RoleViewer.
	Role Role
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

// MaxIDLength bounds a platform id.
const MaxIDLength = 128

// ValidID reports whether id is a platform id vncedge accepts: 1 to
// MaxIDLength bytes of ASCII letters, digits, '_', '-' and '.', and not "."
// or ".." (dot segments would climb the control plane's path).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// ParseStreamPath splits /v1/stream/{channel}/{kind}/{id} (also under /api)
// into its parts; ok is false for any other path, and for an id that is not
// ValidID.
func ParseStreamPath(path string) (channel, kind, id string, ok bool) {
	path = strings.TrimPrefix(path, "/api")
	rest, found := strings.CutPrefix(path, "/v1/stream/")
	if !found {
		return "", "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !ValidID(parts[2]) || !kinds[parts[1]] {
		return "", "", "", false
	}
	if parts[0] != "vnc" && parts[0] != "messages" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// ParseStreamTarget is ParseStreamPath on the request's raw target: the path
// is split on "/" before percent-decoding, so an encoded slash (%2F) is part
// of a segment, never a separator, and each segment must match once decoded.
func ParseStreamTarget(r *upgrade.Request) (channel, kind, id string, ok bool) {
	raw, _, _ := strings.Cut(r.Target, "?")
	if r.Target == "" { // a Request built by hand, not parsed
		raw = r.Path
	}
	if !strings.Contains(raw, "%") {
		return ParseStreamPath(raw)
	}
	segs := strings.Split(raw, "/")
	for i, seg := range segs {
		d, err := url.PathUnescape(seg)
		if err != nil || strings.Contains(d, "/") {
			return "", "", "", false
		}
		segs[i] = d
	}
	return ParseStreamPath(strings.Join(segs, "/"))
}

// checkStreamTarget refuses (404) a request under a stream route's prefix
// whose raw target is not a valid stream route: a bad or dot-segment id, an
// encoded slash. Other paths are the resolver's to judge.
func checkStreamTarget(r *upgrade.Request) error {
	raw, _, _ := strings.Cut(r.Target, "?")
	if !IsStreamPath(r.Path) && !IsStreamPath(raw) {
		return nil
	}
	if _, _, _, ok := ParseStreamTarget(r); !ok {
		return &upgrade.Error{Status: http.StatusNotFound, Message: "unknown route"}
	}
	return nil
}

// IsStreamPath reports whether path is under a stream route's prefix
// (/v1/stream/ or /api/v1/stream/), valid or not.
func IsStreamPath(path string) bool {
	return strings.HasPrefix(strings.TrimPrefix(path, "/api"), "/v1/stream/")
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
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("upstream %q: port %s out of range (1 to 65535)", raw, u.Port())
		}
	case "ws", "wss":
	case "unix":
		return nil, fmt.Errorf("upstream %q: a unix socket only as the operator's --target (or --unix-target)", raw)
	default:
		return nil, fmt.Errorf("upstream %q: scheme must be tcp, ws or wss", raw)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("upstream %q: no host", raw)
	}
	return u, nil
}

// ParseTarget parses the operator's --target: an upstream URL as
// ParseUpstream reads it, or unix:///path for a VNC server's unix socket.
// Resolver answers (a sessions file, tokens, a control plane) go through
// ParseUpstream, which refuses unix sockets: a resolver's answer must not
// aim vncedge at a local socket.
func ParseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "unix" {
		return ParseUpstream(raw)
	}
	if u.Host != "" || u.Path == "" {
		return nil, fmt.Errorf("upstream %q: unix needs unix:///path/to/socket", raw)
	}
	return u, nil
}

// TargetResolver sends every path to one upstream, as websockify does.
type TargetResolver struct {
	Upstream *url.URL
	Header   http.Header
	Control  rfbparse.Interactor
	CDPURL   string // DevTools endpoint of the browser behind Upstream, for the clipboard
	// CDPHeader goes to CDPURL; Header never does.
	CDPHeader http.Header
}

// Resolve implements Resolver.
func (t *TargetResolver) Resolve(_ context.Context, r *upgrade.Request) (*Route, error) {
	rt := &Route{Upstream: t.Upstream, Header: t.Header, Control: t.Control,
		ClientID: r.Query.Get("client_id"), CDPURL: t.CDPURL, CDPHeader: t.CDPHeader}
	if _, kind, id, ok := ParseStreamPath(r.Path); ok {
		rt.Kind, rt.ID = kind, id // pairs a viewer's VNC and message channels
	}
	return rt, nil
}
