package proxy

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

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
