package resolve

import (
	"errors"
	"net/url"
	"testing"

	"vncedge/proxy/upgrade"
)

// request builds an upgrade request for path with query q and header fields.
func request(path string, q url.Values, hdr ...[2]string) *upgrade.Request {
	if q == nil {
		q = url.Values{}
	}
	return &upgrade.Request{Method: "GET", Path: path, RawQuery: q.Encode(), Query: q, Header: hdr}
}

func status(err error) int {
	var ue *upgrade.Error
	if errors.As(err, &ue) {
		return ue.Status
	}
	return 0
}

func TestCredentials(t *testing.T) {
	const path = "/v1/stream/vnc/browser_session/pbs_1"
	tests := []struct {
		name     string
		q        url.Values
		hdr      [][2]string
		status   int
		clientID string
		cred     string
		kind     CredKind
	}{
		{name: "missing client_id", q: url.Values{"apikey": {"k"}}, status: 400},
		{name: "blank client_id", q: url.Values{"client_id": {" "}, "apikey": {"k"}}, status: 400},
		{name: "no credential", q: url.Values{"client_id": {"c"}}, status: 401},
		{name: "query apikey", q: url.Values{"client_id": {"c"}, "apikey": {"k1"}}, clientID: "c", cred: "k1", kind: CredAPIKey},
		{name: "query token bearer", q: url.Values{"client_id": {"c"}, "token": {"Bearer a.b.c"}}, clientID: "c", cred: "a.b.c", kind: CredJWT},
		{name: "query token lowercase bearer", q: url.Values{"client_id": {"c"}, "token": {"bearer a.b.c"}}, clientID: "c", cred: "a.b.c", kind: CredJWT},
		{name: "query token bare", q: url.Values{"client_id": {"c"}, "token": {"a.b.c"}}, clientID: "c", cred: "a.b.c", kind: CredJWT},
		{name: "query token only scheme", q: url.Values{"client_id": {"c"}, "token": {"Bearer "}}, status: 401},
		{name: "header x-api-key", q: url.Values{"client_id": {"c"}}, hdr: [][2]string{{"x-api-key", "k2"}}, clientID: "c", cred: "k2", kind: CredAPIKey},
		{name: "header authorization", q: url.Values{"client_id": {"c"}}, hdr: [][2]string{{"authorization", "Bearer x.y.z"}}, clientID: "c", cred: "x.y.z", kind: CredJWT},
		{name: "authorization basic ignored", q: url.Values{"client_id": {"c"}}, hdr: [][2]string{{"authorization", "Basic dTpw"}}, status: 401},
		{name: "apikey before token", q: url.Values{"client_id": {"c"}, "apikey": {"k1"}, "token": {"Bearer a.b.c"}}, clientID: "c", cred: "k1", kind: CredAPIKey},
		{name: "token before x-api-key", q: url.Values{"client_id": {"c"}, "token": {"a.b.c"}}, hdr: [][2]string{{"x-api-key", "k2"}}, clientID: "c", cred: "a.b.c", kind: CredJWT},
		{name: "x-api-key before authorization", q: url.Values{"client_id": {"c"}}, hdr: [][2]string{{"authorization", "Bearer x.y.z"}, {"x-api-key", "k2"}}, clientID: "c", cred: "k2", kind: CredAPIKey},
		{name: "empty apikey falls through", q: url.Values{"client_id": {"c"}, "apikey": {""}}, hdr: [][2]string{{"x-api-key", "k2"}}, clientID: "c", cred: "k2", kind: CredAPIKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientID, cred, kind, err := Credentials(request(path, tt.q, tt.hdr...))
			if tt.status != 0 {
				if got := status(err); got != tt.status {
					t.Fatalf("err = %v, want status %d", err, tt.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if clientID != tt.clientID || cred != tt.cred || kind != tt.kind {
				t.Fatalf("got (%q, %q, %v), want (%q, %q, %v)", clientID, cred, kind, tt.clientID, tt.cred, tt.kind)
			}
		})
	}
}

func TestStreamPath(t *testing.T) {
	tests := []struct {
		path              string
		channel, kind, id string
		wantErr           bool
	}{
		{path: "/v1/stream/vnc/browser_session/pbs_1", channel: "vnc", kind: "browser_session", id: "pbs_1"},
		{path: "/api/v1/stream/messages/task/tsk_1", channel: "messages", kind: "task", id: "tsk_1"},
		{path: "/v1/stream/vnc/workflow_run/wr_1", channel: "vnc", kind: "workflow_run", id: "wr_1"},
		{path: "/v1/stream/vnc/workflow/wr_1", wantErr: true},
		{path: "/v1/stream/screenshot/task/tsk_1", wantErr: true},
		{path: "/v1/stream/vnc/task/", wantErr: true},
		{path: "/v1/stream/vnc/task/a/b", wantErr: true},
		{path: "/", wantErr: true},
	}
	for _, tt := range tests {
		ch, kind, id, err := StreamPath(request(tt.path, nil))
		if tt.wantErr {
			if status(err) != 404 {
				t.Errorf("%s: err = %v, want 404", tt.path, err)
			}
			continue
		}
		if err != nil || ch != tt.channel || kind != tt.kind || id != tt.id {
			t.Errorf("%s: got (%q, %q, %q, %v)", tt.path, ch, kind, id, err)
		}
	}
}

func TestForwardHeader(t *testing.T) {
	if n, v := forwardHeader(wireCredential(CredJWT, "a.b.c")); n != "Authorization" || v != "Bearer a.b.c" {
		t.Errorf("jwt: %s: %s", n, v)
	}
	if n, v := forwardHeader(wireCredential(CredAPIKey, "key")); n != "X-Api-Key" || v != "key" {
		t.Errorf("api key: %s: %s", n, v)
	}
}
