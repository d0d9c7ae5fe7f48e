package proxy

import (
	"bytes"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/upgrade"
)

// Static files on the viewer port (websockify's --web DIR). A request that
// is not a WebSocket upgrade leaves the event loop: its socket is dup'd out
// of gnet and handed, with the bytes already read, to a net/http server
// that serves Config.Web. net/http streams files (sendfile on plain
// sockets), keeps connections alive, answers HEAD, Range and conditional
// requests, and bounds a slow reader with WriteTimeout: memory per request
// is a copy buffer, not the file. A handed-off connection is no longer a
// session: it leaves the session counts, the caps and the loop (one
// goroutine per connection, at most maxWebConns at once; more get 503).

const (
	maxWebConns     = 256
	webWriteTimeout = 2 * time.Minute
	webIdleTimeout  = 30 * time.Second
)

// isWebRequest reports whether req is a plain GET or HEAD: not a WebSocket
// upgrade (an offer of another protocol, such as h2c, is ignored).
func isWebRequest(req *upgrade.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && !req.UpgradeWebSocket
}

// webServer serves the connections handed off the loop.
type webServer struct {
	ln   *handoffListener
	srv  *http.Server
	done chan struct{}
}

func newWebServer(h http.Handler, log *slog.Logger, headTimeout time.Duration) *webServer {
	w := &webServer{ln: newHandoffListener(maxWebConns), done: make(chan struct{})}
	w.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headTimeout,
		WriteTimeout:      webWriteTimeout,
		IdleTimeout:       webIdleTimeout,
		MaxHeaderBytes:    upgrade.MaxRequestSize,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(w.done)
		_ = w.srv.Serve(w.ln)
	}()
	return w
}

func (w *webServer) close() {
	_ = w.srv.Close()
	<-w.done
}

// serveWeb hands the viewer's connection to the web server, on the loop.
func (s *session) serveWeb(c gnet.Conn) gnet.Action {
	srv := s.srv
	s.state, s.logged = stClosed, true
	s.deadline.Store(0)
	srv.total.Add(-1) // never a session
	buf, _ := c.Peek(-1)
	pending := bytes.Clone(buf) // the request head and anything pipelined
	_, _ = c.Discard(-1)
	busy := func() gnet.Action {
		_, _ = c.Write(upgrade.AppendError(nil, &upgrade.Error{Status: http.StatusServiceUnavailable, Message: "busy", Header: [][2]string{{"Retry-After", "1"}}}))
		return gnet.Close
	}
	if srv.web == nil || !srv.web.ln.reserve() {
		return busy()
	}
	fd, err := c.Dup()
	if err != nil {
		srv.web.ln.release()
		return busy()
	}
	f := os.NewFile(uintptr(fd), "vncedge-web")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		srv.web.ln.release()
		return busy()
	}
	wc := &webConn{Conn: nc, pending: pending, remote: s.viewerAddr(), bridge: s.vbridge, release: srv.web.ln.release}
	s.vbridge = nil // a TLS viewer's bridge now lives as long as the web conn
	srv.web.ln.push(wc)
	return gnet.Close // gnet lets go of its descriptor; the dup keeps the socket
}

// webConn is a handed-off connection: the bytes the loop already read come
// first, its address is the viewer's (not a socketpair's behind TLS).
type webConn struct {
	net.Conn
	pending []byte
	remote  net.Addr
	bridge  io.Closer // a TLS viewer's bridge, if any
	once    sync.Once
	release func()
}

func (c *webConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *webConn) RemoteAddr() net.Addr { return c.remote }

func (c *webConn) Close() error {
	c.once.Do(func() {
		c.release()
		closeBridge(c.bridge)
	})
	return c.Conn.Close()
}

// handoffListener is a net.Listener fed by the loops, with a bound on the
// connections alive at once.
type handoffListener struct {
	conns  chan net.Conn
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(n int) *handoffListener {
	return &handoffListener{conns: make(chan net.Conn, n), slots: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *handoffListener) reserve() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *handoffListener) release() { <-l.slots }

// push never blocks: a reserved slot guarantees room in conns.
func (l *handoffListener) push(c net.Conn) {
	select {
	case <-l.closed:
		_ = c.Close()
	default:
		l.conns <- c
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// WebDir returns the handler for --web DIR: the files under dir, with
// index.html for directories that have one; no directory listings, no
// dot-files or dot-directories (also behind a symlink), nothing outside dir
// (symlinks included).
func WebDir(dir string) (http.Handler, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	return http.FileServerFS(webFS{fs: root.FS(), dir: abs}), nil
}

// webFS hides dot-files and directories without an index.html.
type webFS struct {
	fs  fs.FS
	dir string
}

func (w webFS) Open(name string) (fs.File, error) {
	if hiddenPath(name) {
		return nil, fs.ErrNotExist
	}
	// Where symlinks lead (inside dir: os.Root refuses the rest) must not
	// be hidden either.
	if real, err := filepath.EvalSymlinks(filepath.Join(w.dir, filepath.FromSlash(name))); err == nil {
		rel, err := filepath.Rel(w.dir, real)
		if err != nil || hiddenPath(filepath.ToSlash(rel)) {
			return nil, fs.ErrNotExist
		}
	}
	f, err := w.fs.Open(name)
	if err != nil {
		return nil, fs.ErrNotExist // also a symlink out of the root: 404, not 500
	}
	if st, err := f.Stat(); err == nil && st.IsDir() {
		idx, err := w.fs.Open(path.Join(name, "index.html"))
		if err != nil {
			f.Close()
			return nil, fs.ErrNotExist
		}
		idx.Close()
	}
	return f, nil
}

// hiddenPath reports whether a slash-separated path has a dot-file or
// dot-directory in it.
func hiddenPath(name string) bool {
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return true
		}
	}
	return false
}
