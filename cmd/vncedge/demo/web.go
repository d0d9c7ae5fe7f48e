package demo

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// The page itself is embedded, so `go build` needs no npm. noVNC is not: it
// is served at /novnc/ from node_modules on disk (npm ci in WebDir, which the
// Makefile runs), and the page says so when it is missing.
//
//go:embed web/index.html web/app.js
var webFiles embed.FS

// NoVNCVersion is the @novnc/novnc version web/package.json pins.
const NoVNCVersion = "1.7.0"

// NoVNCDirEnv names a directory holding noVNC's core/ and vendor/ (the
// @novnc/novnc package), overriding the search of DefaultNoVNCDir.
const NoVNCDirEnv = "VNCEDGE_NOVNC_DIR"

// installHint is what the page shows when noVNC is missing.
const installHint = "noVNC is not installed: run `make web` (npm ci in cmd/vncedge/demo/web), " +
	"or set " + NoVNCDirEnv + " to a directory holding @novnc/novnc " + NoVNCVersion + " (core/rfb.js)."

// WebDir is the source directory of the page (web/ beside this file), where
// `npm ci` puts node_modules; empty when the source is not on this machine.
func WebDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	dir := filepath.Join(filepath.Dir(file), "web")
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		return ""
	}
	return dir
}

// DefaultNoVNCDir finds noVNC on disk: $VNCEDGE_NOVNC_DIR; then
// node_modules/@novnc/novnc under cmd/vncedge/demo/web relative to the
// working directory (make run from the repository root), beside the
// executable's share directory (../share/vncedge/novnc, as the container
// image installs it), and in the source tree this binary was built from. It
// returns "" when none holds core/rfb.js.
func DefaultNoVNCDir() string {
	var dirs []string
	if d := os.Getenv(NoVNCDirEnv); d != "" {
		return d // explicit: no fallback to something else
	}
	dirs = append(dirs, filepath.Join("cmd", "vncedge", "demo", "web", "node_modules", "@novnc", "novnc"))
	if exe, err := os.Executable(); err == nil {
		dirs = append(dirs, filepath.Join(filepath.Dir(exe), "..", "share", "vncedge", "novnc"))
	}
	if w := WebDir(); w != "" {
		dirs = append(dirs, filepath.Join(w, "node_modules", "@novnc", "novnc"))
	}
	for _, d := range dirs {
		if hasNoVNC(d) {
			if abs, err := filepath.Abs(d); err == nil {
				return abs
			}
			return d
		}
	}
	return ""
}

func hasNoVNC(dir string) bool {
	if dir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(dir, "core", "rfb.js"))
	return err == nil
}

// PageConfig configures the viewer page.
type PageConfig struct {
	// ListenPort is the port of vncedge's viewer listener; the page opens
	// its WebSockets to the host it was loaded from on this port (a "port"
	// query parameter overrides it).
	ListenPort int
	// WSBase, when set, is the WebSocket origin to use instead
	// ("wss://edge.example.com"); a "ws" query parameter overrides it.
	WSBase string
	// Kind and ID name the session; default browser_session and demo.
	Kind, ID string
	// NoVNCDir holds @novnc/novnc (core/, vendor/); empty: DefaultNoVNCDir().
	NoVNCDir string
	// Clipboard says the session has a DevTools endpoint (--cdp-url), so
	// Copy and Paste can reach the remote browser; without one the page
	// disables them and says why.
	Clipboard bool
}

// pageConfig is /config.json.
type pageConfig struct {
	Port         int    `json:"port"`
	WSBase       string `json:"ws_base,omitempty"`
	VNCPath      string `json:"vnc_path"`
	MessagesPath string `json:"messages_path"`
	NoVNC        bool   `json:"novnc"`
	NoVNCVersion string `json:"novnc_version"`
	Hint         string `json:"hint,omitempty"`
	Clipboard    bool   `json:"clipboard"`
	// ClipboardHint says why Copy and Paste are off.
	ClipboardHint string `json:"clipboard_hint,omitempty"`
}

// noClipboardHint is what the page says on its Copy and Paste buttons when
// the session has no DevTools endpoint.
const noClipboardHint = "no DevTools endpoint for this session: start vncedge with --cdp-url http://HOST:9222 " +
	"(a Chromium started with --remote-debugging-port) for Copy and Paste"

// Handler serves the viewer page at /, its settings at /config.json and
// noVNC's ES modules at /novnc/ (core/ and vendor/ only).
func Handler(cfg PageConfig) http.Handler {
	if cfg.Kind == "" {
		cfg.Kind = "browser_session"
	}
	if cfg.ID == "" {
		cfg.ID = "demo"
	}
	if cfg.NoVNCDir == "" {
		cfg.NoVNCDir = DefaultNoVNCDir()
	}
	web, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	noVNC := hasNoVNC(cfg.NoVNCDir)
	conf := pageConfig{
		Port: cfg.ListenPort, WSBase: cfg.WSBase,
		VNCPath:      "/v1/stream/vnc/" + cfg.Kind + "/" + cfg.ID,
		MessagesPath: "/v1/stream/messages/" + cfg.Kind + "/" + cfg.ID,
		NoVNC:        noVNC, NoVNCVersion: NoVNCVersion,
	}
	if !noVNC {
		conf.Hint = installHint
	}
	if conf.Clipboard = cfg.Clipboard; !cfg.Clipboard {
		conf.ClipboardHint = noClipboardHint
	}
	confJSON, _ := json.Marshal(conf)

	mux := http.NewServeMux()
	page := http.FileServerFS(web)
	serveFile := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-cache")
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/" + name
			page.ServeHTTP(w, r2)
		}
	}
	mux.HandleFunc("GET /{$}", serveFile("")) // index.html
	mux.HandleFunc("GET /app.js", serveFile("app.js"))
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(confJSON)
	})
	var files http.Handler = http.NotFoundHandler()
	if noVNC {
		files = http.StripPrefix("/novnc", http.FileServer(noListing{http.Dir(cfg.NoVNCDir)}))
	}
	mux.HandleFunc("GET /novnc/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/novnc/")
		if !noVNC {
			http.Error(w, installHint, http.StatusNotFound)
			return
		}
		if !strings.HasPrefix(rest, "core/") && !strings.HasPrefix(rest, "vendor/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	return mux
}

// noListing serves files but never directory listings.
type noListing struct{ fs http.FileSystem }

func (n noListing) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		_ = f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}

// PageURL is the address to open for the page served by an admin server
// listening on admin (host:port): an unspecified host (0.0.0.0, ::, "")
// becomes 127.0.0.1.
func PageURL(admin string) string {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return "http://" + admin + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// AdminOrigins is the --allowed-origins value that lets the page, loaded
// from the admin server on admin (host:port), open WebSockets to the viewer
// listener (another port, so another origin): the admin host's origin, and
// for loopback the usual names of it. An unspecified host (0.0.0.0, ::)
// could be reached under any name: then "*" (acceptable for the demo only).
func AdminOrigins(admin string) string {
	host, port, err := net.SplitHostPort(admin)
	if err != nil {
		return ""
	}
	ip := net.ParseIP(host)
	switch {
	case host == "" || (ip != nil && ip.IsUnspecified()):
		return "*"
	case host == "localhost" || (ip != nil && ip.IsLoopback()):
		return "http://127.0.0.1:" + port + ",http://localhost:" + port + ",http://[::1]:" + port
	}
	return "http://" + net.JoinHostPort(host, port)
}
