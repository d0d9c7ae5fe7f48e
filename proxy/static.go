package proxy

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"

	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// APIKey is one credential of an organization in a sessions file, and the
// role it gives its viewers.
type APIKey struct {
	Key  string
	Role Role
}

// SessionsFile is the document behind StaticResolver, as ParseSessionsFile
// reads it (see deploy/sessions.example.yaml for the format).
type SessionsFile struct {
	Organizations []Organization
	Sessions      []*Route // Kind, ID, Organization, Upstream, Header, Control, CDPURL, CDPHeader
}

// Organization is an organization of a sessions file and its API keys.
type Organization struct {
	ID      string
	APIKeys []APIKey
}

type staticTable struct {
	keys     map[string]APIKey // API key → organization (in Key) and role
	sessions map[string]*Route // kind/id → route
	raw      []byte            // the file's bytes, to tell a real change from a touch
}

// StaticResolver maps platform routes to upstreams from a YAML file and checks
// the viewer's API key (query apikey or header x-api-key) against the
// session's organization. Reload swaps the table atomically; live sessions
// keep their upstream, and those whose session left the file end (the
// resolver is their Verifier: "session-ended" at the next liveness check).
type StaticResolver struct {
	table atomic.Pointer[staticTable]
	// DefaultControl is who has control at start when a session does not say.
	DefaultControl rfbparse.Interactor
}

// LoadStaticResolver reads a sessions file.
func LoadStaticResolver(path string, defaultControl rfbparse.Interactor) (*StaticResolver, error) {
	s := &StaticResolver{DefaultControl: defaultControl}
	if _, err := s.Reload(path); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the sessions file; on error the old table stays. changed
// is false when the file's bytes are those of the table in use (nothing was
// swapped).
func (s *StaticResolver) Reload(path string) (changed bool, err error) {
	b, err := readSessionsFile(path)
	if err != nil {
		return false, err
	}
	if old := s.table.Load(); old != nil && bytes.Equal(old.raw, b) {
		return false, nil
	}
	f, err := ParseSessionsFile(path, b, s.DefaultControl)
	if err != nil {
		return false, err
	}
	t := &staticTable{keys: map[string]APIKey{}, sessions: map[string]*Route{}, raw: b}
	for _, o := range f.Organizations {
		for _, k := range o.APIKeys {
			t.keys[k.Key] = APIKey{Key: o.ID, Role: k.Role}
		}
	}
	for _, rt := range f.Sessions {
		rt.Live = s
		t.sessions[rt.Kind+"/"+rt.ID] = rt
	}
	s.table.Store(t)
	return true, nil
}

// MaxSessionsFileSize bounds a sessions file: 1 MiB, the limit of a
// Kubernetes ConfigMap or Secret. A bigger file is refused before it is
// parsed (its YAML tree would cost tens of times its size); past a few
// thousand sessions, signed tokens or a control plane fit better.
const MaxSessionsFileSize = 1 << 20

// readSessionsFile reads at most MaxSessionsFileSize bytes of path.
func readSessionsFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sessions file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSessionsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("sessions file: %w", err)
	}
	if len(b) > MaxSessionsFileSize {
		return nil, fmt.Errorf("sessions file %s: larger than %d bytes (1 MiB): refused unread; use tokens or a control plane for more sessions", path, MaxSessionsFileSize)
	}
	return b, nil
}

// Verify implements Verifier: a channel ends once the table in use no
// longer lists its session for its organization, or no longer lists the API
// key that admitted it in that organization with the role it was given (a
// revoked key, a key moved to another organization, a role changed: the
// simple and safe answer to a downgrade is to end the channel; the viewer
// reconnects with what the key now allows).
func (s *StaticResolver) Verify(_ context.Context, rt *Route) error {
	t := s.table.Load()
	if r, ok := t.sessions[rt.Kind+"/"+rt.ID]; !ok || r.Organization != rt.Organization {
		return fmt.Errorf("%w: %s/%s is no longer in the sessions file", ErrSessionEnded, rt.Kind, rt.ID)
	}
	k, ok := t.lookup(rt.Credential)
	if !ok || k.Key != rt.Organization {
		return fmt.Errorf("%w: its api key is no longer in the sessions file for %s", ErrSessionEnded, rt.Organization)
	}
	if k.Role != rt.Role {
		return fmt.Errorf("%w: its api key's role is now %s", ErrSessionEnded, k.Role)
	}
	return nil
}

// lookup finds an API key, comparing in constant time per key: no timing
// oracle on the key.
func (t *staticTable) lookup(key string) (APIKey, bool) {
	var found APIKey
	known := false
	if key == "" {
		return found, false
	}
	for k, o := range t.keys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			found, known = o, true
		}
	}
	return found, known
}

// Sessions returns how many sessions the table in use has.
func (s *StaticResolver) Sessions() int { return len(s.table.Load().sessions) }

// Resolve implements Resolver: both channels of a platform route.
func (s *StaticResolver) Resolve(_ context.Context, r *upgrade.Request) (*Route, error) {
	_, kind, id, ok := ParseStreamPath(r.Path)
	if !ok {
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
	found, known := t.lookup(key)
	if !known {
		return nil, &upgrade.Error{Status: http.StatusUnauthorized, Message: "invalid api key"}
	}
	route, ok := t.sessions[kind+"/"+id]
	if !ok {
		return nil, &upgrade.Error{Status: http.StatusNotFound, Message: "unknown session"}
	}
	if route.Organization != found.Key {
		return nil, &upgrade.Error{Status: http.StatusForbidden, Message: "session belongs to another organization"}
	}
	rt := *route
	rt.ClientID = r.Query.Get("client_id")
	rt.Role = found.Role
	rt.Credential = key // for Verify
	return &rt, nil
}
