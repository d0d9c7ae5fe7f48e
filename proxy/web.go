package proxy

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/panjf2000/gnet/v2"

	"vncedge/proxy/upgrade"
)

// Static files on the viewer port (websockify's --web DIR): a plain GET or
// HEAD that is not an upgrade is answered by Config.Web and the connection
// closed (no keep-alive: a page is a few dozen requests).
//
// The handler runs in a goroutine, off the loop (it reads files); it gets a
// copy of the request and touches no session field: it hands its response
// to the conn with AsyncWrite, which is safe from any goroutine, and closes
// it in the write's callback. At most maxWebInFlight requests run at once
// server-wide (more get 503), each response at most maxWebResponse bytes
// (more get 500): memory stays bounded whatever the clients do.

const (
	maxWebInFlight = 64
	maxWebResponse = 16 << 20
)

// isWebRequest reports whether req is a plain GET or HEAD, not an upgrade.
func isWebRequest(req *upgrade.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && req.Get("upgrade") == ""
}

// serveWeb answers req with Config.Web.
func (s *session) serveWeb(c gnet.Conn, req *upgrade.Request) gnet.Action {
	_, _ = c.Discard(-1) // a request body or pipelined requests are not read
	s.state, s.logged = stClosed, true
	s.deadline.Store(0)
	srv := s.srv
	if srv.webInFlight.Add(1) > maxWebInFlight {
		srv.webInFlight.Add(-1)
		_, _ = c.Write(upgrade.AppendError(nil, &upgrade.Error{Status: http.StatusServiceUnavailable, Message: "busy", Header: [][2]string{{"Retry-After", "1"}}}))
		return gnet.Close
	}
	hr := &http.Request{
		Method: req.Method, URL: &url.URL{Path: req.Path, RawQuery: req.RawQuery}, RequestURI: req.Target,
		Proto: req.Proto, ProtoMajor: req.ProtoMajor, ProtoMinor: req.ProtoMinor,
		Header: http.Header{}, Host: req.Host, RemoteAddr: addrString(s.viewerAddr()),
	}
	for _, f := range req.Header {
		hr.Header.Add(f[0], f[1])
	}
	h := srv.cfg.Web
	go func() {
		defer srv.webInFlight.Add(-1)
		w := &webResponse{header: http.Header{}}
		h.ServeHTTP(w, hr)
		_ = c.AsyncWrite(w.bytes(req.Method == http.MethodHead), func(c gnet.Conn, _ error) error {
			return c.Close()
		})
	}()
	return gnet.None
}

// webResponse is an http.ResponseWriter that keeps one bounded response.
type webResponse struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (w *webResponse) Header() http.Header { return w.header }

func (w *webResponse) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *webResponse) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(p) > maxWebResponse {
		w.overflow = true
		return 0, http.ErrContentLength
	}
	return w.body.Write(p)
}

// bytes serializes the response (HTTP/1.1, Connection: close).
func (w *webResponse) bytes(head bool) []byte {
	if w.overflow {
		return upgrade.AppendError(nil, &upgrade.Error{Status: http.StatusInternalServerError, Message: "response too large"})
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(w.status) + " " + http.StatusText(w.status) + "\r\n")
	w.header.Del("Connection")
	w.header.Set("Connection", "close")
	if w.header.Get("Content-Length") == "" && !head {
		w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	}
	_ = w.header.Write(&b)
	b.WriteString("\r\n")
	if !head {
		b.Write(w.body.Bytes())
	}
	return b.Bytes()
}

// WebDir returns the handler for --web DIR: the files under dir, with
// index.html for directories that have one; no directory listings, no
// dot-files, nothing outside dir (symlinks included).
func WebDir(dir string) (http.Handler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return http.FileServerFS(webFS{root.FS()}), nil
}

// webFS hides dot-files and directories without an index.html.
type webFS struct{ fs fs.FS }

func (w webFS) Open(name string) (fs.File, error) {
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") && part != "." {
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
