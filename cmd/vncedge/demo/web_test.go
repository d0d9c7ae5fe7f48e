package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header(), string(body)
}

func TestHandlerServesPageConfigAndNoVNC(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "core"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "core", "rfb.js"), []byte("export default class RFB {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := Handler(PageConfig{ListenPort: 6080, NoVNCDir: dir})

	code, _, body := get(t, h, "/")
	if code != 200 || !strings.Contains(body, `src="app.js"`) || !strings.Contains(body, `id="control"`) {
		t.Fatalf("/: %d %.200q", code, body)
	}
	code, hdr, body := get(t, h, "/app.js")
	if code != 200 || !strings.Contains(hdr.Get("Content-Type"), "javascript") || !strings.Contains(body, "./novnc/core/rfb.js") {
		t.Fatalf("/app.js: %d %q", code, hdr.Get("Content-Type"))
	}
	code, _, body = get(t, h, "/config.json")
	var cfg pageConfig
	if err := json.Unmarshal([]byte(body), &cfg); err != nil || code != 200 {
		t.Fatalf("/config.json: %d %q %v", code, body, err)
	}
	want := pageConfig{Port: 6080, VNCPath: "/v1/stream/vnc/browser_session/demo",
		MessagesPath: "/v1/stream/messages/browser_session/demo", NoVNC: true, NoVNCVersion: NoVNCVersion,
		ClipboardHint: noClipboardHint}
	if cfg != want {
		t.Errorf("config %+v, want %+v", cfg, want)
	}
	_, _, body = get(t, Handler(PageConfig{ListenPort: 6080, NoVNCDir: dir, Clipboard: true}), "/config.json")
	var withCDP pageConfig
	if err := json.Unmarshal([]byte(body), &withCDP); err != nil || !withCDP.Clipboard || withCDP.ClipboardHint != "" {
		t.Errorf("with a DevTools endpoint: %+v %v", withCDP, err)
	}
	code, hdr, body = get(t, h, "/novnc/core/rfb.js")
	if code != 200 || !strings.Contains(hdr.Get("Content-Type"), "javascript") || !strings.Contains(body, "class RFB") {
		t.Errorf("/novnc/core/rfb.js: %d %q %q", code, hdr.Get("Content-Type"), body)
	}
	for _, p := range []string{"/novnc/", "/novnc/core/", "/novnc/package.json", "/novnc/../web.go", "/nothing", "/index.html/x"} {
		if code, _, _ := get(t, h, p); code != 404 && code/100 != 3 { // redirects lead to a clean path
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
}

func TestHandlerWithoutNoVNCSaysHowToInstall(t *testing.T) {
	h := Handler(PageConfig{ListenPort: 6080, NoVNCDir: t.TempDir(), Kind: "task", ID: "t1"})
	_, _, body := get(t, h, "/config.json")
	var cfg pageConfig
	if err := json.Unmarshal([]byte(body), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.NoVNC || !strings.Contains(cfg.Hint, "npm ci") || cfg.VNCPath != "/v1/stream/vnc/task/t1" {
		t.Errorf("config %+v", cfg)
	}
	code, _, body := get(t, h, "/novnc/core/rfb.js")
	if code != 404 || !strings.Contains(body, "npm ci") {
		t.Errorf("/novnc/core/rfb.js without noVNC: %d %q", code, body)
	}
}

func TestPackageJSONPinsNoVNC(t *testing.T) {
	web := WebDir()
	if web == "" {
		t.Fatal("no web directory beside the source")
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	for name, v := range map[string]any{"package.json": &pkg, "package-lock.json": &lock} {
		b, err := os.ReadFile(filepath.Join(web, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if got := pkg.Dependencies["@novnc/novnc"]; got != NoVNCVersion {
		t.Errorf("package.json pins @novnc/novnc %q, want exactly %q", got, NoVNCVersion)
	}
	if got := lock.Packages["node_modules/@novnc/novnc"].Version; got != NoVNCVersion {
		t.Errorf("package-lock.json has @novnc/novnc %q, want %q", got, NoVNCVersion)
	}
}

func TestPageURLAndAdminOrigins(t *testing.T) {
	for _, c := range []struct{ admin, url, origins string }{
		{"127.0.0.1:6081", "http://127.0.0.1:6081/", "http://127.0.0.1:6081,http://localhost:6081,http://[::1]:6081"},
		{"0.0.0.0:6081", "http://127.0.0.1:6081/", "*"},
		{":6081", "http://127.0.0.1:6081/", "*"},
		{"edge.example.com:8081", "http://edge.example.com:8081/", "http://edge.example.com:8081"},
	} {
		if got := PageURL(c.admin); got != c.url {
			t.Errorf("PageURL(%q) = %q, want %q", c.admin, got, c.url)
		}
		if got := AdminOrigins(c.admin); got != c.origins {
			t.Errorf("AdminOrigins(%q) = %q, want %q", c.admin, got, c.origins)
		}
	}
}
