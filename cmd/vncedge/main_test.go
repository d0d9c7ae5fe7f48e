package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/rfbparse"
)

func TestFlagsFromEnv(t *testing.T) {
	t.Setenv("VNCEDGE_DIAL_TIMEOUT", "3s")
	t.Setenv("VNCEDGE_LISTEN", "127.0.0.1:7000")
	o, err := parseFlags([]string{"--listen", "127.0.0.1:7001", "--target", "tcp://127.0.0.1:5900"})
	if err != nil {
		t.Fatal(err)
	}
	if o.dialTimeout != 3*time.Second {
		t.Errorf("dial timeout %v, want 3s from VNCEDGE_DIAL_TIMEOUT", o.dialTimeout)
	}
	if o.listen != "127.0.0.1:7001" {
		t.Errorf("listen %q: the command line must win over the environment", o.listen)
	}
}

func TestFlagsBadEnv(t *testing.T) {
	t.Setenv("VNCEDGE_DIAL_TIMEOUT", "soon")
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "VNCEDGE_DIAL_TIMEOUT") {
		t.Fatalf("err = %v, want one naming VNCEDGE_DIAL_TIMEOUT", err)
	}
}

func TestBuildConfig(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
		check   func(t *testing.T, cfg proxy.Config)
	}{
		{name: "no route", args: nil, wantErr: "is required"},
		{name: "both routes", args: []string{"--target", "tcp://h:1", "--sessions", "f.yaml"}, wantErr: "exclusive"},
		{name: "target and control plane", args: []string{"--target", "tcp://h:1", "--control-plane", "http://cp"}, wantErr: "exclusive"},
		{name: "short token secret", args: []string{"--token-secret-file", "/dev/null"}, wantErr: "secret"},
		{name: "bad target scheme", args: []string{"--target", "http://h:1"}, wantErr: "scheme"},
		{name: "tcp without port", args: []string{"--target", "tcp://h"}, wantErr: "host:port"},
		{name: "bad shortcut", args: []string{"--target", "tcp://h:1", "--forbidden", "hyper+o"}, wantErr: "unknown modifier"},
		{name: "bad right button", args: []string{"--target", "tcp://h:1", "--right-button", "left"}, wantErr: "strip, drop or allow"},
		{name: "bad control", args: []string{"--target", "tcp://h:1", "--control", "bot"}, wantErr: "user or agent"},
		{name: "target defaults to user control", args: []string{"--target", "ws://h:1/websockify", "--upstream-header", "x-api-key: k"},
			check: func(t *testing.T, cfg proxy.Config) {
				r := cfg.Resolver.(*proxy.TargetResolver)
				if r.Control != rfbparse.User || r.Header.Get("X-Api-Key") != "k" {
					t.Errorf("control %v header %v", r.Control, r.Header)
				}
				if cfg.Policy == nil || len(cfg.Policy.Forbidden) != 1 {
					t.Errorf("default policy missing: %+v", cfg.Policy)
				}
			}},
		{name: "no policy", args: []string{"--target", "tcp://h:1", "--no-policy"},
			check: func(t *testing.T, cfg proxy.Config) {
				if cfg.Policy != nil {
					t.Error("policy set with --no-policy")
				}
			}},
		{name: "origins", args: []string{"--target", "tcp://h:1", "--allowed-origins", "https://a.example, https://b.example"},
			check: func(t *testing.T, cfg proxy.Config) {
				if len(cfg.AllowedOrigins) != 2 || cfg.AllowedOrigins[1] != "https://b.example" {
					t.Errorf("origins %q", cfg.AllowedOrigins)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := buildConfig(o, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestSessionsFileDefaultsToAgent(t *testing.T) {
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	if err := os.WriteFile(f, []byte("organizations: [{id: o1, api_keys: [k1]}]\nsessions:\n- {kind: task, id: t1, organization: o1, upstream: 'tcp://127.0.0.1:5900'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--sessions", f})
	if err != nil {
		t.Fatal(err)
	}
	_, static, err := buildConfig(o, nil)
	if err != nil || static == nil {
		t.Fatalf("buildConfig: %v", err)
	}
	if static.DefaultControl != rfbparse.Agent {
		t.Errorf("platform routes start with %v, want agent", static.DefaultControl)
	}
}

func TestAdminEndpoints(t *testing.T) {
	srv, err := proxy.New(proxy.Config{Addr: "127.0.0.1:0", Resolver: &proxy.TargetResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	h := adminHandler(srv, nil, nil)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if c := get("/healthz"); c != 200 {
		t.Errorf("/healthz = %d", c)
	}
	if c := get("/readyz"); c != 503 {
		t.Errorf("/readyz before the listener is up = %d, want 503", c)
	}
}

func TestVersionFlag(t *testing.T) {
	if err := run([]string{"--version"}); err != nil {
		t.Fatal(err)
	}
}
