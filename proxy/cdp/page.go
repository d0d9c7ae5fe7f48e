package cdp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// targetInfo is the part of Target.TargetInfo we use.
type targetInfo struct {
	TargetID string `json:"targetId"`
	Type     string `json:"type"`
	URL      string `json:"url"`
}

// maxListed bounds the target ids kept from one Target.getTargets answer to
// prune the session cache; past it the cache is not pruned that time.
const maxListed = 4096

// targetList is a Target.getTargets answer, decoded one target at a time:
// the first maxPages user pages (a browser with more tabs than this is not a
// user's), and the ids of all targets when there are at most maxListed.
// A hostile answer with a huge list costs its bytes, not a value per target.
type targetList struct {
	pages []string
	live  map[string]bool // nil: too many targets to keep
}

// UnmarshalJSON implements json.Unmarshaler.
func (l *targetList) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("Target.getTargets: result is not an object")
	}
	l.live = map[string]bool{}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		if key != "targetInfos" {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
			continue
		}
		if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
			return errors.New("Target.getTargets: targetInfos is not a list")
		}
		for dec.More() {
			var t targetInfo
			if err := dec.Decode(&t); err != nil {
				return err
			}
			if l.live != nil {
				if len(l.live) >= maxListed {
					l.live = nil
				} else {
					l.live[t.TargetID] = true
				}
			}
			if userPage(t) && len(l.pages) < maxPages {
				l.pages = append(l.pages, t.TargetID)
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
	}
	return nil
}

// userPage reports whether t is a page a user can look at: a tab, not the
// DevTools front end or an extension's page.
func userPage(t targetInfo) bool {
	return t.Type == "page" &&
		!strings.HasPrefix(t.URL, "devtools://") &&
		!strings.HasPrefix(t.URL, "chrome-extension://")
}

// probeJS tells whether a page is shown (document.visibilityState) and has
// keyboard focus (document.hasFocus, true only in the focused window's
// active tab).
const probeJS = `({visible: document.visibilityState === "visible", focused: document.hasFocus()})`

// selectionJS reads the selection where the user would copy from: it follows
// focus into same-origin frames, prefers the selected part of a focused text
// field (never a password field), and otherwise uses
// window.getSelection().toString().
const selectionJS = `(() => {
  let doc = document;
  for (let i = 0; i < 16; i++) {
    const f = doc.activeElement;
    if (!f || (f.tagName !== "IFRAME" && f.tagName !== "FRAME")) break;
    let inner = null;
    try { inner = f.contentDocument; } catch (e) {}
    if (!inner) break;
    doc = inner;
  }
  const el = doc.activeElement;
  if (el && el.tagName === "INPUT" && String(el.type).toLowerCase() === "password") return "";
  if (el && (el.tagName === "TEXTAREA" || el.tagName === "INPUT") &&
      typeof el.selectionStart === "number" && el.selectionStart !== el.selectionEnd) {
    return String(el.value).substring(el.selectionStart, el.selectionEnd);
  }
  const win = doc.defaultView || window;
  const sel = win.getSelection();
  return sel ? sel.toString() : "";
})()`

// boundedSelectionJS is selectionJS answering {tooLarge: true} instead of a
// selection longer than MaxText UTF-16 units: the page's text never crosses
// the wire past the bound.
var boundedSelectionJS = `(() => { const s = ` + selectionJS + `; return s.length > ` +
	strconv.Itoa(MaxText) + ` ? {tooLarge: true} : s; })()`

// probe is one page's answer to probeJS; ok is false if it did not answer.
type probe struct {
	ok      bool
	visible bool
	focused bool
	err     error
}

// choosePage picks the page the user is looking at and returns its target
// and attached session:
//
//  1. the page that is visible and has focus (the focused window's active
//     tab), else
//  2. the most recently active visible page (the active tab of an unfocused
//     window), else
//  3. the most recently active page.
//
// "Most recently active" is the order of the HTTP endpoint's /json/list,
// which Chromium sorts by last activity; it is asked only when step 1 finds
// nothing. When /json/list cannot be had (a routed endpoint that only
// forwards the WebSocket), the page this client chose last comes first,
// then Target.getTargets order, which is stable but says nothing about use.
// A page that does not answer its probe within the call timeout (hung
// script, open alert) counts as neither visible nor focused. With a single
// page there is nothing to choose and no probe is made.
func (c *Client) choosePage(ctx context.Context, cn *conn) (targetID, sessionID string, err error) {
	lctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	var list targetList
	err = cn.call(lctx, "", "Target.getTargets", nil, &list)
	cancel()
	if err != nil {
		return "", "", err
	}
	pages := list.pages
	if list.live != nil {
		cn.keepSessions(list.live)
	}
	switch len(pages) {
	case 0:
		return "", "", ErrNoPage
	case 1:
		sid, err := cn.session(ctx, pages[0])
		if err == nil {
			c.remember(pages[0])
		}
		return pages[0], sid, err
	}

	// Probe all pages at once; stop early at the visible, focused one.
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i   int
		sid string
		p   probe
	}
	answers := make(chan answer, len(pages))
	sem := make(chan struct{}, probeConcurrency)
	for i, t := range pages {
		go func() {
			select {
			case sem <- struct{}{}:
			case <-pctx.Done():
				answers <- answer{i, "", probe{err: pctx.Err()}}
				return
			}
			defer func() { <-sem }()
			sid, p := c.probe(pctx, cn, t)
			answers <- answer{i, sid, p}
		}()
	}
	probes := make([]probe, len(pages))
	sids := make([]string, len(pages))
	for range pages {
		a := <-answers
		probes[a.i], sids[a.i] = a.p, a.sid
		if a.p.visible && a.p.focused {
			c.remember(pages[a.i])
			return pages[a.i], a.sid, nil
		}
	}
	order := c.recency(ctx, pages)
	for _, want := range []func(probe) bool{
		func(p probe) bool { return p.visible },
		func(p probe) bool { return p.ok },
	} {
		for _, i := range order {
			if want(probes[i]) {
				c.remember(pages[i])
				return pages[i], sids[i], nil
			}
		}
	}
	// No page answered: report why (all errors are alike in practice).
	return "", "", probes[0].err
}

// remember notes the page last chosen, the fallback recency hint.
func (c *Client) remember(targetID string) {
	c.mu.Lock()
	c.last = targetID
	c.mu.Unlock()
}

// recency returns the indexes of pages, most recently active first: in
// /json/list order when the endpoint answers it, else the last chosen page
// first, then the rest in the given order.
func (c *Client) recency(ctx context.Context, pages []string) []int {
	index := make(map[string]int, len(pages))
	for i, t := range pages {
		index[t] = i
	}
	order := make([]int, 0, len(pages))
	seen := make(map[int]bool, len(pages))
	add := func(t string) {
		if i, ok := index[t]; ok && !seen[i] {
			seen[i] = true
			order = append(order, i)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	if ids, err := listByActivity(ctx, c.http, c.endpoint, c.opts.Header); err == nil {
		for _, t := range ids {
			add(t)
		}
	} else {
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		add(last)
	}
	for _, t := range pages {
		add(t)
	}
	return order
}

// probe attaches to targetID and asks probeJS, within the call timeout.
func (c *Client) probe(ctx context.Context, cn *conn, targetID string) (string, probe) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	sid, err := cn.session(ctx, targetID)
	if err != nil {
		return "", probe{err: err}
	}
	var v struct {
		Visible bool `json:"visible"`
		Focused bool `json:"focused"`
	}
	if err := evaluate(ctx, cn, sid, probeJS, &v); err != nil {
		if isSessionGone(err) {
			cn.forgetSession(targetID, sid)
		}
		return sid, probe{err: err}
	}
	return sid, probe{ok: true, visible: v.Visible, focused: v.Focused}
}

// evaluateParams is the payload of Runtime.evaluate.
type evaluateParams struct {
	Expression    string `json:"expression"`
	ReturnByValue bool   `json:"returnByValue"`
	Silent        bool   `json:"silent"`
}

// evaluateResult is the answer of Runtime.evaluate.
type evaluateResult struct {
	Result struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	} `json:"result"`
	ExceptionDetails *struct {
		ExceptionID int `json:"exceptionId"`
	} `json:"exceptionDetails"`
}

// errScript is returned when an expression throws in the page. The
// exception's text is not kept: it may quote page content.
var errScript = errors.New("script raised an exception in the page")

// evaluate runs expr in the page's main world and decodes its JSON value
// into out. The caller's ctx bounds the call.
func evaluate(ctx context.Context, cn *conn, sessionID, expr string, out any) error {
	var res evaluateResult
	err := cn.call(ctx, sessionID, "Runtime.evaluate", evaluateParams{Expression: expr, ReturnByValue: true, Silent: true}, &res)
	if err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("%s: %w", "Runtime.evaluate", errScript)
	}
	if err := json.Unmarshal(res.Result.Value, out); err != nil {
		return fmt.Errorf("%s: unexpected %s result", "Runtime.evaluate", res.Result.Type)
	}
	return nil
}

// evaluateString runs expr, which must produce a string, or {tooLarge: true}
// (ErrTextTooLarge). The caller's ctx bounds the call.
func evaluateString(ctx context.Context, cn *conn, sessionID, expr string) (string, error) {
	var v json.RawMessage
	if err := evaluate(ctx, cn, sessionID, expr, &v); err != nil {
		return "", err
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		var big struct {
			TooLarge bool `json:"tooLarge"`
		}
		if json.Unmarshal(v, &big) == nil && big.TooLarge {
			return "", ErrTextTooLarge
		}
		return "", fmt.Errorf("%s: unexpected result", "Runtime.evaluate")
	}
	return s, nil
}
