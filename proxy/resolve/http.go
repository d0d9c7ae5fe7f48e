package resolve

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/sync/singleflight"

	"vncedge/proxy"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// maxControlBody bounds a control-plane response body.
const maxControlBody = 1 << 20

// HTTPConfig configures an [HTTPResolver].
type HTTPConfig struct {
	// Base is the control-plane endpoint; sessions are fetched with
	// GET {Base}/{kind}/{id}.
	Base string
	// Client makes the calls; nil means a client with a Timeout of 5 s.
	Client *http.Client
	// Timeout bounds one control-plane call; 0 means 5 s.
	Timeout time.Duration
	// CacheTTL is how long an answer (or failure) is shared by all callers
	// with the same session and credential; 0 means 1 s.
	CacheTTL time.Duration
	// Grace is how long control-plane failures may last before Verify
	// reports the session ended; 0 means 15 s.
	Grace time.Duration
	// VNCPort is the websockify port for upstreams derived from a browser
	// address; 0 means DefaultVNCPort.
	VNCPort int
	// DefaultControl is who has control when a session starts.
	DefaultControl rfbparse.Interactor
	// Now is the clock for the cache and the grace period; nil means
	// time.Now.
	Now func() time.Time
}

// SessionInfo is the control plane's answer for one session.
type SessionInfo struct {
	OrganizationID  string            `json:"organization_id"`
	Status          string            `json:"status"`
	BrowserAddress  string            `json:"browser_address"`
	VNCURL          string            `json:"vnc_url"`
	UpstreamHeaders map[string]string `json:"upstream_headers"`
	CDPURL          string            `json:"cdp_url"`
	Role            string            `json:"role"` // the viewer's role: controller (default) or viewer
	// CDPHeaders are sent to the DevTools endpoint (cdp_url) only; the
	// upstream's headers never are.
	CDPHeaders map[string]string `json:"cdp_headers"`
	// Record overrides --record for this session (absent: follow it).
	Record *bool `json:"record"`
}

// HTTPResolver resolves streams by asking a control plane, forwarding the
// viewer's credential, and is the routes' Verifier. Answers are shared: calls
// for the same session and credential that overlap make one request
// (singleflight), and its answer, success or failure, serves later calls for
// CacheTTL.
type HTTPResolver struct {
	cfg  HTTPConfig
	base string

	group singleflight.Group

	mu        sync.Mutex
	cache     map[string]cached
	lastOK    map[string]time.Time // kind/id → its last successful answer (or first failure)
	lastSweep time.Time

	testHookBeforeFetch func() // test only: runs before a call joins the flight
}

type cached struct {
	info *SessionInfo
	err  error
	at   time.Time
}

// NewHTTPResolver checks cfg and fills in its defaults.
func NewHTTPResolver(cfg HTTPConfig) (*HTTPResolver, error) {
	u, err := url.Parse(cfg.Base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("http resolver: base must be an http:// or https:// URL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = newControlPlaneClient(cfg.Timeout)
	} else {
		c := *cfg.Client
		c.CheckRedirect = noRedirects // never: the viewer's credential would follow
		cfg.Client = &c
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = time.Second
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &HTTPResolver{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.Base, "/"),
		cache:  map[string]cached{},
		lastOK: map[string]time.Time{},
	}, nil
}

// statusError is a control-plane answer other than 200.
type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("control plane answered %d %s", e.code, http.StatusText(e.code))
}

// errMalformed is a 200 answer that is not a usable session.
var errMalformed = errors.New("control plane sent a malformed session")

// Resolve implements proxy.Resolver.
func (h *HTTPResolver) Resolve(ctx context.Context, r *upgrade.Request) (*proxy.Route, error) {
	_, kind, id, err := StreamPath(r)
	if err != nil {
		return nil, err
	}
	clientID, cred, ck, err := Credentials(r)
	if err != nil {
		return nil, err
	}
	wire := wireCredential(ck, cred)
	info, err := h.lookup(ctx, kind, id, wire)
	if err != nil {
		return nil, connectError(err)
	}
	if !Live(kind, info.Status) {
		return nil, &upgrade.Error{Status: http.StatusConflict, Message: "session is not live"}
	}
	h.clearFailure(kind + "/" + id)
	apiKey := ""
	if ck == CredAPIKey {
		apiKey = cred
	}
	up, hdr, err := UpstreamFromBrowserAddress(info.BrowserAddress, info.VNCURL, h.cfg.VNCPort, apiKey)
	if errors.Is(err, ErrNoBrowserAddress) {
		return nil, &upgrade.Error{Status: http.StatusConflict, Message: "session has no browser yet"}
	}
	if err != nil {
		return nil, &upgrade.Error{Status: http.StatusBadGateway, Message: "control plane sent an unusable browser address"}
	}
	for k, v := range info.UpstreamHeaders {
		hdr.Set(k, v)
	}
	role, err := proxy.ParseRole(info.Role)
	if err != nil {
		return nil, &upgrade.Error{Status: http.StatusBadGateway, Message: "control plane sent an unknown role"}
	}
	cdp := cdpURL(info.CDPURL, info.BrowserAddress)
	return &proxy.Route{
		Role: role,
		Kind: kind, ID: id, Organization: info.OrganizationID, ClientID: clientID,
		Upstream: up, Header: hdr, Control: h.cfg.DefaultControl,
		CDPURL:     cdp,
		CDPHeader:  cdpHeader(nil, nil, cdp, info.CDPHeaders), // cdp_headers only: never the viewer's key
		Live:       h,
		Credential: wire,
		Record:     info.Record,
	}, nil
}

// connectError maps a failed lookup to the viewer's answer.
func connectError(err error) *upgrade.Error {
	var se *statusError
	switch {
	case errors.As(err, &se) && se.code == http.StatusUnauthorized:
		return &upgrade.Error{Status: http.StatusUnauthorized, Message: "invalid credentials"}
	case errors.As(err, &se) && se.code == http.StatusForbidden:
		return &upgrade.Error{Status: http.StatusForbidden, Message: "session belongs to another organization"}
	case errors.As(err, &se) && se.code == http.StatusNotFound:
		return &upgrade.Error{Status: http.StatusNotFound, Message: "unknown session"}
	case errors.As(err, &se) && !transientStatus(se.code), errors.Is(err, errMalformed):
		return &upgrade.Error{Status: http.StatusBadGateway, Message: "unexpected control-plane answer"}
	}
	return &upgrade.Error{Status: http.StatusServiceUnavailable, Message: "control plane unavailable"}
}

// transientStatus reports whether a control-plane status is worth retrying.
func transientStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// Verify implements proxy.Verifier. It returns nil while the session is
// live; [ErrSessionFinished] on a final status, 404, 401 or 403 (credentials
// revoked) or an organization other than the route's; a plain error on
// network errors, 5xx and other unexpected answers; and
// [ErrControlPlaneUnreachable] once such errors have lasted, without a
// success in between, for the grace period.
func (h *HTTPResolver) Verify(ctx context.Context, rt *proxy.Route) error {
	info, err := h.lookup(ctx, rt.Kind, rt.ID, rt.Credential)
	sess := rt.Kind + "/" + rt.ID
	var se *statusError
	if errors.As(err, &se) {
		switch se.code {
		case http.StatusNotFound:
			h.clearFailure(sess)
			return fmt.Errorf("%w: control plane no longer knows it", ErrSessionFinished)
		case http.StatusUnauthorized, http.StatusForbidden:
			h.clearFailure(sess)
			return fmt.Errorf("%w: credentials no longer grant access (%d)", ErrSessionFinished, se.code)
		}
	}
	if err != nil {
		return h.failed(sess, err)
	}
	h.clearFailure(sess)
	if rt.Organization != "" && info.OrganizationID != rt.Organization {
		return fmt.Errorf("%w: session now belongs to another organization", ErrSessionFinished)
	}
	if !Live(rt.Kind, info.Status) {
		return fmt.Errorf("%w: status %q", ErrSessionFinished, info.Status)
	}
	return nil
}

// failed records a failed check of sess and says whether the failures have
// outlasted the grace period, counted from the session's last successful
// answer (or from the first failure, when none is known). Gaps between
// checks never restart the count: a control plane too slow to be asked
// often still fails closed.
func (h *HTTPResolver) failed(sess string, cause error) error {
	now := h.cfg.Now()
	h.mu.Lock()
	since, ok := h.lastOK[sess]
	if !ok {
		since = now
		h.lastOK[sess] = now
	}
	ended := now.Sub(since) >= h.cfg.Grace
	h.mu.Unlock()
	if ended {
		return fmt.Errorf("%w: %w", ErrControlPlaneUnreachable, cause)
	}
	return fmt.Errorf("liveness check: %w", cause)
}

// clearFailure records a successful answer for sess.
func (h *HTTPResolver) clearFailure(sess string) {
	h.mu.Lock()
	h.lastOK[sess] = h.cfg.Now()
	h.mu.Unlock()
}

// lookup returns the session as the control plane sees it with credential
// wire, from the cache, from a call in flight, or from a new call.
func (h *HTTPResolver) lookup(ctx context.Context, kind, id, wire string) (*SessionInfo, error) {
	key := cacheKey(kind, id, wire)
	if c, ok := h.fromCache(key); ok {
		return c.info, c.err
	}
	if h.testHookBeforeFetch != nil {
		h.testHookBeforeFetch()
	}
	ch := h.group.DoChan(key, func() (any, error) {
		// A flight that ended just before this one may have filled the cache.
		if c, ok := h.fromCache(key); ok {
			return c, nil
		}
		// The call is shared: one caller giving up must not cancel it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.Timeout)
		defer cancel()
		info, err := h.fetch(cctx, kind, id, wire)
		c := cached{info: info, err: err, at: h.cfg.Now()}
		h.store(key, c)
		return c, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("control plane: %w", ctx.Err())
	case res := <-ch:
		c := res.Val.(cached)
		return c.info, c.err
	}
}

func (h *HTTPResolver) fromCache(key string) (cached, bool) {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.cache[key]
	if !ok || now.Sub(c.at) >= h.cfg.CacheTTL || now.Before(c.at) {
		return cached{}, false
	}
	return c, true
}

// store caches c and, at most once per TTL, drops expired entries and stale
// failure streaks.
func (h *HTTPResolver) store(key string, c cached) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cache[key] = c
	if c.at.Sub(h.lastSweep) < h.cfg.CacheTTL {
		return
	}
	h.lastSweep = c.at
	for k, e := range h.cache {
		if c.at.Sub(e.at) >= h.cfg.CacheTTL {
			delete(h.cache, k)
		}
	}
	for k, t := range h.lastOK {
		if c.at.Sub(t) > 4*h.cfg.Grace { // asked about by nobody for long: gone
			delete(h.lastOK, k)
		}
	}
}

// cacheKey identifies a session as seen with one credential; the credential
// enters only as a hash.
func cacheKey(kind, id, wire string) string {
	sum := sha256.Sum256([]byte(wire))
	return kind + "/" + id + "/" + string(sum[:])
}

// fetch makes one control-plane call.
func (h *HTTPResolver) fetch(ctx context.Context, kind, id, wire string) (*SessionInfo, error) {
	u := h.base + "/" + url.PathEscape(kind) + "/" + url.PathEscape(id)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("control plane request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header)) // the resolve span, when tracing
	if wire != "" {
		name, value := forwardHeader(wire)
		req.Header.Set(name, value)
	}
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxControlBody))
		return nil, &statusError{code: resp.StatusCode}
	}
	var info SessionInfo
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxControlBody))
	if err := dec.Decode(&info); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	if info.OrganizationID == "" {
		return nil, fmt.Errorf("%w: no organization_id", errMalformed)
	}
	if err := checkHeaders("upstream_headers", info.UpstreamHeaders); err != nil {
		return nil, err
	}
	if err := checkHeaders("cdp_headers", info.CDPHeaders); err != nil {
		return nil, err
	}
	return &info, nil
}
