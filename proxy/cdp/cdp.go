// Package cdp bridges the clipboard between a viewer and the remote Chromium
// through the Chrome DevTools Protocol: copy reads the selection of the page
// the user is looking at (Runtime.evaluate), paste types text into it
// (Input.insertText).
//
// The client is deliberately small: one browser-level WebSocket
// (github.com/gobwas/ws, already used by the proxy) carrying JSON commands
// multiplexed by message id, with page sessions flattened onto the same
// socket (Target.attachToTarget {flatten: true}). Only four DevTools methods
// are used (Target.getTargets, Target.attachToTarget, Runtime.evaluate,
// Input.insertText), so a few hand-written structs are shorter and easier to
// audit than a generated protocol package.
//
// The methods block for up to a few round trips, each bounded by
// Options.CallTimeout: call them from their own goroutine, never from a
// network event loop, so that input forwarding never waits for the browser.
package cdp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/upgrade"
)

// Default timeouts, used when the corresponding Options field is zero.
const (
	DefaultDialTimeout = 5 * time.Second
	DefaultCallTimeout = 5 * time.Second
)

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("cdp: client closed")

// ErrNoPage is returned when the browser has no page to read from or type
// into.
var ErrNoPage = errors.New("cdp: no page in the browser")

// Options configures a Client. The zero value is usable.
type Options struct {
	// DialTimeout bounds opening the connection: /json/version discovery
	// (for an http endpoint) plus the WebSocket handshake.
	// Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// CallTimeout bounds every single DevTools round trip (a method makes a
	// few: list pages, attach, probe, act). Zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// Header is sent with every HTTP request (/json/version, /json/list)
	// and the WebSocket handshake, for example x-api-key for routed
	// browsers. It goes only over TLS or to a loopback host.
	Header http.Header
	// Control, when set, checks every address the client connects to
	// (net.Dialer.Control), e.g. an allow list; an error refuses the dial.
	Control func(network, address string, c syscall.RawConn) error
}

// Client is one session's DevTools connection: opened lazily on the first
// call, reused by later calls, dropped when it breaks and reopened on the
// next call. It is safe for concurrent use; calls are multiplexed on the one
// connection by message id.
type Client struct {
	endpoint string
	opts     Options
	http     *http.Client // httpClient, or one dialing through opts.Control

	mu      sync.Mutex
	cn      *conn
	dialing *dialAttempt
	closed  bool
	last    string // targetId of the page chosen last
}

// dialAttempt lets concurrent callers share one dial.
type dialAttempt struct {
	done chan struct{}
	cn   *conn
	err  error
}

// New returns a Client for endpoint without connecting. endpoint is either
// the browser WebSocket ("ws://host:port/devtools/browser/<id>", or wss) or
// the DevTools HTTP address ("http://host:port", or https), from which the
// browser WebSocket is discovered through GET /json/version on every
// (re)connect, so a restarted browser with a new id is found again.
func New(endpoint string, opts Options) *Client {
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	opts.Header = opts.Header.Clone()
	c := &Client{endpoint: endpoint, opts: opts, http: httpClient}
	if opts.Control != nil {
		tr := httpClient.Transport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: DefaultDialTimeout, Control: opts.Control}).DialContext
		tr.DisableKeepAlives = true // nothing to close idle connections of
		c.http = &http.Client{Transport: tr, CheckRedirect: httpClient.CheckRedirect}
	}
	return c
}

// SelectedText returns the text selected in the page the user is looking
// at: the visible page with keyboard focus, else a visible page, else the
// most recently active page. Inside a focused text field it returns the
// field's selected text; in a password field it returns "". Errors never
// contain page text.
func (c *Client) SelectedText(ctx context.Context) (string, error) {
	var text string
	err := c.onPage(ctx, "read selection", func(ctx context.Context, cn *conn, sessionID string) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
		var err error
		text, err = evaluateString(ctx, cn, sessionID, boundedSelectionJS)
		if errors.Is(err, errMessageTooLarge) || err == nil && len(text) > MaxText {
			text, err = "", ErrTextTooLarge
		}
		return err
	})
	return text, err
}

// InsertText types text into the focused element of the page the user is
// looking at (chosen as for SelectedText), as if committed by an input
// method (Input.insertText). Empty text is a no-op. Errors never contain
// the text.
func (c *Client) InsertText(ctx context.Context, text string) error {
	if text == "" {
		return nil
	}
	return c.onPage(ctx, "insert text", func(ctx context.Context, cn *conn, sessionID string) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
		defer cancel()
		return cn.call(ctx, sessionID, "Input.insertText", insertTextParams{Text: text}, nil)
	})
}

// Close closes the connection, if any. Calls in flight and later calls fail
// with ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	cn := c.cn
	c.cn = nil
	c.mu.Unlock()
	if cn != nil {
		cn.close(ErrClosed)
	}
	return nil
}

type insertTextParams struct {
	Text string `json:"text"`
}

// onPage connects, chooses the page and runs fn on its session. A session
// the browser forgot (target detached between choice and use) is dropped
// and the page chosen again, once. Errors are wrapped with op.
func (c *Client) onPage(ctx context.Context, op string, fn func(ctx context.Context, cn *conn, sessionID string) error) error {
	err := c.tryOnPage(ctx, fn)
	if isSessionGone(err) {
		err = c.tryOnPage(ctx, fn)
	}
	if err != nil {
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrNoPage) || errors.Is(err, ErrTextTooLarge) {
			return fmt.Errorf("%w (%s)", err, op)
		}
		return fmt.Errorf("cdp: %s: %w", op, err)
	}
	return nil
}

func (c *Client) tryOnPage(ctx context.Context, fn func(ctx context.Context, cn *conn, sessionID string) error) error {
	cn, err := c.conn(ctx)
	if err != nil {
		return err
	}
	t, sid, err := c.choosePage(ctx, cn)
	if err != nil {
		return err
	}
	err = fn(ctx, cn, sid)
	if isSessionGone(err) {
		cn.forgetSession(t, sid)
	}
	return err
}

// conn returns the live connection, dialing if there is none or the last
// one broke. Concurrent callers share one dial.
func (c *Client) conn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if c.cn != nil && !c.cn.dead() {
			cn := c.cn
			c.mu.Unlock()
			return cn, nil
		}
		c.cn = nil // broken: drop it, the next dial replaces it
		if a := c.dialing; a != nil {
			c.mu.Unlock()
			select {
			case <-a.done:
				if a.err != nil && !isContextErr(a.err) {
					return nil, a.err
				}
				continue // shared dial lost to the dialer's own ctx: try again
			case <-ctx.Done():
				return nil, fmt.Errorf("connect: %w", ctx.Err())
			}
		}
		a := &dialAttempt{done: make(chan struct{})}
		c.dialing = a
		c.mu.Unlock()

		cn, err := c.dial(ctx)

		c.mu.Lock()
		c.dialing = nil
		if err == nil && c.closed {
			cn.close(ErrClosed)
			cn, err = nil, ErrClosed
		}
		if err == nil {
			c.cn = cn
		}
		a.cn, a.err = cn, err
		close(a.done)
		c.mu.Unlock()
		return cn, err
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// dial resolves the browser WebSocket and connects, within DialTimeout.
// Errors name the host only: routed endpoints carry tokens in their path.
func (c *Client) dial(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	u, err := url.Parse(c.endpoint)
	if err != nil || u.Host == "" {
		return nil, errors.New("connect: bad DevTools endpoint")
	}
	wsURL := c.endpoint
	if u.Scheme == "http" || u.Scheme == "https" || u.Path == "" || u.Path == "/" {
		if wsURL, err = discover(ctx, c.http, u, c.opts.Header); err != nil {
			return nil, fmt.Errorf("connect %s: %w", u.Host, err)
		}
	}
	wu, err := url.Parse(wsURL)
	if err != nil {
		return nil, errors.New("connect: bad DevTools WebSocket address")
	}
	var limit *upgrade.HeadLimit
	d := ws.Dialer{
		NetDial: (&net.Dialer{Control: c.opts.Control}).DialContext,
		WrapConn: func(nc net.Conn) net.Conn {
			limit = upgrade.NewHeadLimit(nc)
			return limit
		},
	}
	if h := headersFor(c.opts.Header, wu.Scheme, wu.Hostname()); len(h) > 0 {
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	nc, br, _, err := d.Dial(ctx, wsURL)
	if err == nil && ctx.Err() != nil {
		nc.Close() // the dialer may have poisoned its deadline
		err = ctx.Err()
	}
	if err != nil {
		if isContextErr(ctx.Err()) {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("connect %s: %w", u.Host, err)
	}
	limit.Lift() // the handshake is over: messages have their own bound
	return newConn(nc, br, c.opts.CallTimeout), nil
}

// jsonURL is the DevTools HTTP address of endpoint's /json/<what>.
func jsonURL(endpoint *url.URL, what string) *url.URL {
	u := *endpoint
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	if i := strings.Index(u.Path, "/devtools/"); i >= 0 {
		u.Path = u.Path[:i]
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/json/" + what
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return &u
}

// getJSON GETs /json/<what> from the DevTools HTTP endpoint into out.
// Errors do not repeat the address.
func getJSON(ctx context.Context, client *http.Client, endpoint *url.URL, what string, header http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jsonURL(endpoint, what).String(), nil)
	if err != nil {
		return err
	}
	for k, v := range headersFor(header, req.URL.Scheme, req.URL.Hostname()) {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // *url.Error repeats the whole address
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/json/%s: HTTP %d", what, resp.StatusCode)
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 4<<20)).Decode(out); err != nil {
		return fmt.Errorf("/json/%s: %w", what, err)
	}
	return nil
}

// discover asks the DevTools HTTP endpoint for the browser WebSocket. The
// answer names the address the browser listens on, which differs from ours
// behind port forwarding or a router, so only its path is kept: scheme and
// host stay those of the endpoint we were given (http→ws, https→wss).
func discover(ctx context.Context, client *http.Client, endpoint *url.URL, header http.Header) (string, error) {
	var v struct {
		WebSocketDebuggerURL string `json:"webSocketDebuggerUrl"`
	}
	if err := getJSON(ctx, client, endpoint, "version", header, &v); err != nil {
		return "", fmt.Errorf("discover: %w", err)
	}
	found, err := url.Parse(v.WebSocketDebuggerURL)
	if err != nil || found.Path == "" {
		return "", errors.New("discover: /json/version has no webSocketDebuggerUrl")
	}
	out := url.URL{Scheme: "ws", Host: endpoint.Host, Path: found.Path, RawPath: found.RawPath}
	if endpoint.Scheme == "https" || endpoint.Scheme == "wss" {
		out.Scheme = "wss"
	}
	return out.String(), nil
}

// listByActivity returns the target ids of /json/list, which Chromium sorts
// by last activity, most recent first.
func listByActivity(ctx context.Context, client *http.Client, endpoint string, header http.Header) ([]string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	var list []struct {
		ID string `json:"id"`
	}
	if err := getJSON(ctx, client, u, "list", header, &list); err != nil {
		return nil, err
	}
	ids := make([]string, len(list))
	for i, t := range list {
		ids[i] = t.ID
	}
	return ids, nil
}
