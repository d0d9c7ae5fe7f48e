package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"

	"vncedge/rfbparse"
)

// ParseSessionsFile reads a sessions file strictly: an unknown key, a wrong
// type, a session naming an unlisted organization, an API key listed twice,
// a session listed twice, and a file with no organization or no session are
// errors naming path and the line. defaultControl is who has control when a
// session does not say.
func ParseSessionsFile(path string, b []byte, defaultControl rfbparse.Interactor) (*SessionsFile, error) {
	p := &sessionsParser{path: path}
	if len(b) > MaxSessionsFileSize {
		return nil, fmt.Errorf("sessions file %s: larger than %d bytes (1 MiB)", path, MaxSessionsFileSize)
	}
	var doc, more yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("sessions file %s: %w", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("sessions file %s: empty: no organizations and no sessions", path)
	}
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, p.errf(&more, "a second YAML document: one file is one table")
	}
	root := doc.Content[0]
	f := &SessionsFile{}
	orgLine := map[string]int{}
	keyLine := map[string]int{}
	var sessions *yaml.Node
	err := p.mapping(root, map[string]func(*yaml.Node) error{
		"organizations": func(v *yaml.Node) error {
			return p.sequence(v, "organizations", func(item *yaml.Node) error {
				var o Organization
				err := p.mapping(item, map[string]func(*yaml.Node) error{
					"id": func(v *yaml.Node) error { return p.str(v, "id", &o.ID) },
					"api_keys": func(v *yaml.Node) error {
						return p.sequence(v, "api_keys", func(k *yaml.Node) error {
							ak, err := p.apiKey(k)
							if err != nil {
								return err
							}
							if l, dup := keyLine[ak.Key]; dup {
								return p.errf(k, "an api key is listed twice (first on line %d); one key belongs to one organization", l)
							}
							keyLine[ak.Key] = k.Line
							o.APIKeys = append(o.APIKeys, ak)
							return nil
						})
					},
				}, "id")
				if err != nil {
					return err
				}
				if o.ID == "" {
					return p.errf(item, "organization id is empty")
				}
				if l, dup := orgLine[o.ID]; dup {
					return p.errf(item, "organization %q is listed twice (first on line %d)", o.ID, l)
				}
				orgLine[o.ID] = item.Line
				f.Organizations = append(f.Organizations, o)
				return nil
			})
		},
		"sessions": func(v *yaml.Node) error { sessions = v; return nil },
	})
	if err != nil {
		return nil, err
	}
	if len(f.Organizations) == 0 {
		return nil, p.errf(root, "no organizations")
	}
	if sessions == nil {
		return nil, p.errf(root, "no sessions")
	}
	sessionLine := map[string]int{}
	err = p.sequence(sessions, "sessions", func(item *yaml.Node) error {
		rt, err := p.session(item, defaultControl)
		if err != nil {
			return err
		}
		if _, ok := orgLine[rt.Organization]; !ok {
			return p.errf(item, "session %s/%s: organization %q is not listed under organizations", rt.Kind, rt.ID, rt.Organization)
		}
		k := rt.Kind + "/" + rt.ID
		if l, dup := sessionLine[k]; dup {
			return p.errf(item, "session %s is listed twice (first on line %d)", k, l)
		}
		sessionLine[k] = item.Line
		f.Sessions = append(f.Sessions, rt)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(f.Sessions) == 0 {
		return nil, p.errf(sessions, "no sessions")
	}
	return f, nil
}

type sessionsParser struct{ path string }

func (p *sessionsParser) errf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("sessions file %s: line %d: %s", p.path, n.Line, fmt.Sprintf(format, args...))
}

// mapping calls fields[key] for each key of n; unknown and repeated keys are
// errors, and so are required keys that are missing.
func (p *sessionsParser) mapping(n *yaml.Node, fields map[string]func(*yaml.Node) error, required ...string) error {
	if n.Kind != yaml.MappingNode {
		return p.errf(n, "want a mapping of keys, got %s", nodeKind(n))
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		fn, ok := fields[k.Value]
		if !ok || k.Kind != yaml.ScalarNode {
			return p.errf(k, "unknown key %q", k.Value)
		}
		if seen[k.Value] {
			return p.errf(k, "key %q given twice", k.Value)
		}
		seen[k.Value] = true
		if err := fn(v); err != nil {
			return err
		}
	}
	for _, r := range required {
		if !seen[r] {
			return p.errf(n, "%s is required", r)
		}
	}
	return nil
}

func (p *sessionsParser) sequence(n *yaml.Node, name string, each func(*yaml.Node) error) error {
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, "%s: want a list, got %s", name, nodeKind(n))
	}
	for _, item := range n.Content {
		if err := each(item); err != nil {
			return err
		}
	}
	return nil
}

func (p *sessionsParser) str(n *yaml.Node, name string, dst *string) error {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return p.errf(n, "%s: want a string, got %s", name, nodeKind(n))
	}
	*dst = n.Value
	return nil
}

func (p *sessionsParser) headers(n *yaml.Node, name string) (http.Header, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "%s: want a mapping of header names to values, got %s", name, nodeKind(n))
	}
	h := http.Header{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var val string
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return nil, p.errf(k, "%s: bad header name", name)
		}
		if err := p.str(v, name+"."+k.Value, &val); err != nil {
			return nil, err
		}
		// The rules SafeHeaders applies when it sends them: what it would
		// drop is an error here, not a header silently never sent.
		if err := CheckUpstreamHeader(k.Value, val); err != nil {
			return nil, p.errf(k, "%s: %v", name, err)
		}
		if _, dup := h[http.CanonicalHeaderKey(k.Value)]; dup {
			return nil, p.errf(k, "%s: header %q given twice", name, k.Value)
		}
		h.Set(k.Value, val)
	}
	return h, nil
}

// apiKey reads "key" or {key: …, role: controller|viewer}.
func (p *sessionsParser) apiKey(n *yaml.Node) (APIKey, error) {
	var ak APIKey
	if n.Kind == yaml.ScalarNode {
		if err := p.str(n, "api key", &ak.Key); err != nil {
			return ak, err
		}
	} else {
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind == yaml.ScalarNode && (k.Value == "key" || k.Value == "role") {
					continue
				}
				if k.Kind == yaml.ScalarNode && fieldLike(k.Value) {
					return ak, p.errf(k, "unknown key %q", k.Value) // a typo of key or role
				}
				// Not quoted: "- sk_live_…: viewer" makes the api key a key.
				return ak, p.errf(k, "api key: unknown key (not shown: it may be an api key); write {key: …, role: viewer}")
			}
		}
		var role string
		roleSet := false
		err := p.mapping(n, map[string]func(*yaml.Node) error{
			"key":  func(v *yaml.Node) error { return p.str(v, "key", &ak.Key) },
			"role": func(v *yaml.Node) error { roleSet = true; return p.str(v, "role", &role) },
		}, "key")
		if err != nil {
			return ak, err
		}
		if roleSet && role == "" {
			return ak, p.errf(n, "api key: role is empty: write controller or viewer, or leave role out for controller")
		}
		if ak.Role, err = ParseRole(role); err != nil {
			return ak, p.errf(n, "%v", err)
		}
	}
	if ak.Key == "" {
		return ak, p.errf(n, "empty api key")
	}
	return ak, nil
}

func (p *sessionsParser) session(n *yaml.Node, defaultControl rfbparse.Interactor) (*Route, error) {
	rt := &Route{Control: defaultControl, Header: http.Header{}}
	var upstream, control string
	str := func(name string, dst *string) func(*yaml.Node) error {
		return func(v *yaml.Node) error { return p.str(v, name, dst) }
	}
	err := p.mapping(n, map[string]func(*yaml.Node) error{
		"kind":         str("kind", &rt.Kind),
		"id":           str("id", &rt.ID),
		"organization": str("organization", &rt.Organization),
		"upstream":     str("upstream", &upstream),
		"control":      str("control", &control),
		"cdp_url":      str("cdp_url", &rt.CDPURL),
		"record": func(v *yaml.Node) error { // overrides --record for this session
			var b bool
			if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
				return p.errf(v, "record: want true or false, got %s", nodeKind(v))
			}
			rt.Record = &b
			return nil
		},
		"upstream_headers": func(v *yaml.Node) (err error) {
			rt.Header, err = p.headers(v, "upstream_headers")
			return err
		},
		"cdp_headers": func(v *yaml.Node) (err error) {
			rt.CDPHeader, err = p.headers(v, "cdp_headers")
			return err
		},
	}, "kind", "id", "organization", "upstream")
	if err != nil {
		return nil, err
	}
	if !kinds[rt.Kind] {
		return nil, p.errf(n, "session kind %q: want browser_session, task or workflow_run", rt.Kind)
	}
	if rt.ID == "" {
		return nil, p.errf(n, "session id is empty")
	}
	if rt.Upstream, err = ParseUpstream(upstream); err != nil {
		return nil, p.errf(n, "session %s/%s: %v", rt.Kind, rt.ID, redactURLError(err, upstream))
	}
	switch control {
	case "":
	case "user":
		rt.Control = rfbparse.User
	case "agent":
		rt.Control = rfbparse.Agent
	default:
		return nil, p.errf(n, "session %s/%s: control must be user or agent", rt.Kind, rt.ID)
	}
	if rt.CDPURL != "" {
		if err := checkCDPURL(rt.CDPURL); err != nil {
			return nil, p.errf(n, "session %s/%s: cdp_url: %v", rt.Kind, rt.ID, redactURLError(err, rt.CDPURL))
		}
	} else if len(rt.CDPHeader) > 0 {
		return nil, p.errf(n, "session %s/%s: cdp_headers without cdp_url", rt.Kind, rt.ID)
	}
	return rt, nil
}

// checkCDPURL accepts what a DevTools client opens: http(s)://host:port or a
// ws(s)://…/devtools/… address.
func checkCDPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch u.Scheme {
	case "http", "https", "ws", "wss":
	default:
		return errors.New("scheme must be http, https, ws or wss")
	}
	if u.Hostname() == "" {
		return errors.New("no host")
	}
	return nil
}

// fieldLike reports whether an unknown key of an api key mapping looks like
// a mistyped field name (at most 12 lowercase letters and underscores), not
// like an api key, and may be quoted in an error.
func fieldLike(s string) bool {
	if len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "nothing"
	}
	return "a " + strings.TrimPrefix(n.ShortTag(), "!!") + " value"
}
