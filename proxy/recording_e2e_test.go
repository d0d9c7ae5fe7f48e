package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/proxy/record"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// noVNCFormat is the pixel format noVNC asks for: 32 bpp little-endian
// true colour, red at shift 0.
var noVNCFormat = rfbclient.PixelFormat{BPP: 32, Depth: 24, TrueColor: true,
	RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 0, GreenShift: 8, BlueShift: 16}

// teeRW is a viewer connection whose reads are copied to got.
type teeRW struct {
	io.Reader
	io.Writer
}

func tee(c io.ReadWriter, got *bytes.Buffer) io.ReadWriter {
	return teeRW{io.TeeReader(c, got), c}
}

// liveSession is one recorded session through vncedge: what the viewer
// read, its framebuffer, and the recording.
type liveSession struct {
	got  []byte
	fb   []byte
	path string
	rec  *record.Session
}

// recordLive drives a viewer through vncedge (recording with rc) to
// upstream: handshake, noVNC's pixel format, one full update, a key press,
// a pointer move and a forbidden shortcut; then closes and waits for the file.
func recordLive(t *testing.T, upstream string, rc *record.Recorder) liveSession {
	t.Helper()
	cfg := targetConfig(t, upstream, rfbparse.User)
	cfg.Recorder = rc
	_, addr, stop := startOwnedProxy(t, cfg)
	c := dialWS(t, addr, "/websockify")
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	var got bytes.Buffer
	cl, err := rfbclient.Handshake(tee(c, &got), rfbclient.Options{})
	if err != nil {
		t.Fatalf("handshake through vncedge: %v", err)
	}
	if err := cl.SetPixelFormat(noVNCFormat); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetEncodings(); err != nil {
		t.Fatal(err)
	}
	fb, err := cl.ReadFull()
	if err != nil {
		t.Fatalf("update through vncedge: %v", err)
	}
	for _, step := range []func() error{
		func() error { return cl.KeyEvent(true, 'q') }, func() error { return cl.KeyEvent(false, 'q') },
		func() error { return cl.PointerEvent(0, 7, 9) },
		func() error { return cl.KeyEvent(true, 0xffe3) }, func() error { return cl.KeyEvent(true, 'o') }, // ctrl+o: forbidden
		func() error { return cl.KeyEvent(false, 'o') }, func() error { return cl.KeyEvent(false, 0xffe3) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	stop()
	rc.Close()
	files, _ := filepath.Glob(filepath.Join(rcDir(t, rc), "*", "*", "*", "*.vncrec"))
	if len(files) != 1 {
		t.Fatalf("%d recording files, want 1: %v", len(files), files)
	}
	s, err := record.Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return liveSession{got: got.Bytes(), fb: fb, path: files[0], rec: s}
}

var recDirs sync.Map // *record.Recorder → dir

func newRecorder(t *testing.T, cfg record.Config) *record.Recorder {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	rc, err := record.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	recDirs.Store(rc, cfg.Dir)
	t.Cleanup(rc.Close)
	return rc
}

func rcDir(t *testing.T, rc *record.Recorder) string {
	d, ok := recDirs.Load(rc)
	if !ok {
		t.Fatal("unknown recorder")
	}
	return d.(string)
}

func serverBytes(s *record.Session) []byte {
	var b []byte
	for _, ev := range s.Events {
		if ev.Type == record.TypeServer {
			b = append(b, ev.Data...)
		}
	}
	return b
}

func streamBytes(s *record.Session) []byte {
	var b []byte
	for _, c := range s.Stream {
		b = append(b, c.Data...)
	}
	return b
}

// replayTo replays s on a test server and reads it with a Go RFB client:
// the framebuffer and every byte after the replay's own handshake.
func replayTo(t *testing.T, s *record.Session, query string) (fb []byte, after []byte) {
	t.Helper()
	rp := record.NewReplayer(s, record.ReplayOptions{Speed: 1000, Logger: quietLog})
	hs := httptest.NewServer(rp)
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rfbclient.DialWS(ctx, "ws://"+strings.TrimPrefix(hs.URL, "http://")+"/replay"+query, []string{"binary"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	var got bytes.Buffer
	cl, err := rfbclient.Handshake(tee(c, &got), rfbclient.Options{})
	if err != nil {
		t.Fatalf("handshake with the replay: %v", err)
	}
	hsLen := got.Len()
	// The replay ignores the viewer's own format and encodings.
	if err := cl.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		t.Fatal(err)
	}
	if err := cl.SetEncodings(7, 16, 5); err != nil {
		t.Fatal(err)
	}
	fb, err = cl.ReadFull()
	if err != nil {
		t.Fatalf("update from the replay: %v", err)
	}
	return fb, got.Bytes()[hsLen:]
}

// TestRecordAndReplayRealXvnc records sessions through vncedge to real
// Xvnc, straight (tcp) and through real websockify (ws), in each input
// mode: the recorded server bytes are exactly what the viewer read; a Go
// client replaying the file completes the handshake, gets the recorded
// bytes after ServerInit and the live framebuffer; keystrokes are in the
// file only with --record-input all; the blocked shortcut is annotated.
func TestRecordAndReplayRealXvnc(t *testing.T) {
	teststack.Require(t, "Xvnc", "websockify", "xwud")
	x := teststack.StartXvnc(t)
	x.ShowNoise(t, 320, 240, 17)
	wsAddr := teststack.StartWebsockify(t, x.Addr())
	cases := []struct {
		name, upstream string
		mode           record.InputMode
	}{
		{"tcp-pointer", "tcp://" + x.Addr(), record.InputPointer},
		{"tcp-none", "tcp://" + x.Addr(), record.InputNone},
		{"tcp-all", "tcp://" + x.Addr(), record.InputAll},
		{"ws-websockify", "ws://" + wsAddr + "/", record.InputPointer},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRecorder(t, record.Config{Input: tc.mode})
			live := recordLive(t, tc.upstream, rc)
			s := live.rec
			if s.Truncated || s.Corrupt || s.Gaps != 0 {
				t.Fatalf("recording truncated=%v corrupt=%v gaps=%d", s.Truncated, s.Corrupt, s.Gaps)
			}
			if rec := serverBytes(s); !bytes.Equal(rec, live.got) {
				t.Fatalf("recorded %d server bytes; the viewer read %d (equal prefix: %v)", len(rec), len(live.got),
					bytes.HasPrefix(live.got, rec) || bytes.HasPrefix(rec, live.got))
			}
			if err := s.Replayable(); err != nil {
				t.Fatal(err)
			}
			if err := record.NoVNCFormat(s.PixelFormat); err != nil {
				t.Fatal(err)
			}
			fb, after := replayTo(t, s, "")
			if want := streamBytes(s); !bytes.Equal(after, want) {
				t.Fatalf("replay sent %d bytes after ServerInit, recorded %d", len(after), len(want))
			}
			if !bytes.Equal(fb, live.fb) {
				t.Fatal("replayed framebuffer differs from the live one")
			}
			keys, pointers := 0, 0
			drops := map[string]uint64{}
			var end *record.Annotation
			for _, ev := range s.Events {
				switch {
				case ev.Type == record.TypeInput && (ev.Data[0] == 4 || ev.Data[0] == 255):
					keys++
				case ev.Type == record.TypeInput && ev.Data[0] == 5:
					pointers++
				case ev.Annotation != nil && ev.Annotation.Kind == "drop":
					drops[ev.Annotation.Reason] += ev.Annotation.Count
				case ev.Annotation != nil && ev.Annotation.Kind == "end":
					end = ev.Annotation
				}
			}
			if wantKeys := tc.mode == record.InputAll; (keys > 0) != wantKeys {
				t.Errorf("%d key events recorded with --record-input %s", keys, tc.mode)
			}
			if (pointers > 0) != (tc.mode != record.InputNone) {
				t.Errorf("%d pointer events recorded with --record-input %s", pointers, tc.mode)
			}
			if drops["shortcut"] == 0 {
				t.Errorf("no shortcut drop annotated: %v", drops)
			}
			if end == nil || end.Reason == "" {
				t.Errorf("end annotation %+v", end)
			}
			h := s.Header
			if h.Kind == "" && h.Start.IsZero() || h.Input != tc.mode.String() {
				t.Errorf("header %+v", h)
			}
		})
	}
}

// TestReplayTruncatedRecording cuts a real recording inside its last
// records (a crash): it replays up to its last complete chunk.
func TestReplayTruncatedRecording(t *testing.T) {
	teststack.Require(t, "Xvnc", "xwud")
	x := teststack.StartXvnc(t)
	x.ShowNoise(t, 320, 240, 23)
	rc := newRecorder(t, record.Config{})
	live := recordLive(t, "tcp://"+x.Addr(), rc)
	raw, err := os.ReadFile(live.path)
	if err != nil {
		t.Fatal(err)
	}
	full := streamBytes(live.rec)
	// Cut in the middle of the framebuffer update's records.
	cut := bytes.Index(raw, full[len(full)/2:len(full)/2+64])
	if cut < 0 {
		t.Fatal("update bytes not found in the file")
	}
	s, err := record.ReadSession(bytes.NewReader(raw[:cut+10]))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Truncated {
		t.Fatal("not marked truncated")
	}
	part := streamBytes(s)
	if len(part) == 0 || len(part) >= len(full) || !bytes.Equal(part, full[:len(part)]) {
		t.Fatalf("truncated stream %d bytes is not a proper prefix of %d", len(part), len(full))
	}
	// A replay sends exactly the complete chunks, then nothing more: the
	// client's full-update read cannot finish, so read the raw bytes.
	rp := record.NewReplayer(s, record.ReplayOptions{Speed: 1000, Logger: quietLog})
	hs := httptest.NewServer(rp)
	t.Cleanup(hs.Close)
	c, err := rfbclient.DialWS(ctxT(t), "ws://"+strings.TrimPrefix(hs.URL, "http://")+"/", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := rfbclient.Handshake(c, rfbclient.Options{}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(part))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, part) {
		t.Fatalf("replayed truncated stream: %v, equal %v", err, bytes.Equal(buf, part))
	}
}

// failingFile fails every write after the first (the header): a full disk.
type failingFile struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (f *failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.writes > 1 {
		return 0, errors.New("no space left on device")
	}
	return f.buf.Write(p)
}
func (f *failingFile) Truncate(n int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.buf.Truncate(int(n))
	return nil
}
func (f *failingFile) Seek(int64, int) (int64, error) { return 0, nil }
func (f *failingFile) Close() error                   { return nil }

// TestRecordDiskFull: with --record-required a full disk ends the session
// with 1011 record-failed; without, the session goes on and the file keeps
// its header and notes what was lost.
func TestRecordDiskFull(t *testing.T) {
	teststack.Require(t, "Xvnc")
	x := teststack.StartXvnc(t)
	for _, required := range []bool{true, false} {
		t.Run(map[bool]string{true: "required", false: "best-effort"}[required], func(t *testing.T) {
			f := &failingFile{}
			rc := newRecorder(t, record.Config{Required: required, FlushInterval: 10 * time.Millisecond,
				OpenFile: func(string) (record.File, error) { return f, nil }})
			cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
			cfg.Recorder = rc
			_, addr := startProxy(t, cfg)
			c := dialWS(t, addr, "/")
			_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
			// The session must end (required) or keep going (best effort)
			// as the writes fail: from the handshake on, while updates flow.
			cl, err := rfbclient.Handshake(c, rfbclient.Options{})
			if err == nil {
				_ = cl.SetEncodings()
				for i := 0; i < 20 && err == nil; i++ {
					_, err = cl.ReadFull()
				}
			}
			if !required {
				if err != nil {
					t.Fatalf("best-effort session ended: %v", err)
				}
				if rc.Stats().Gaps == 0 {
					t.Fatal("no gap counted")
				}
				return
			}
			var ce *rfbclient.CloseError
			if !errors.As(err, &ce) || ce.Code != 1011 || ce.Reason != "record-failed" {
				t.Fatalf("required recording on a full disk: %v, want close 1011 record-failed", err)
			}
		})
	}
}

// optOut is a resolver whose routes say Record false.
type optOut struct{ proxy.Resolver }

func (o optOut) Resolve(ctx context.Context, r *upgrade.Request) (*proxy.Route, error) {
	rt, err := o.Resolver.Resolve(ctx, r)
	if rt != nil {
		no := false
		rt.Record = &no
	}
	return rt, err
}

// TestRecordRouteOptOut: a route with Record false is not recorded.
func TestRecordRouteOptOut(t *testing.T) {
	teststack.Require(t, "Xvnc")
	x := teststack.StartXvnc(t)
	rc := newRecorder(t, record.Config{})
	cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
	cfg.Resolver, cfg.Recorder = optOut{cfg.Resolver}, rc
	_, addr, stop := startOwnedProxy(t, cfg)
	c := dialWS(t, addr, "/")
	_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := rfbclient.Handshake(c, rfbclient.Options{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	stop()
	rc.Close()
	if files, _ := filepath.Glob(filepath.Join(rcDir(t, rc), "*", "*", "*", "*")); len(files) != 0 {
		t.Fatalf("recorded despite Record false: %v", files)
	}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestRecordPathFromHostileIDs: ids and client_ids from the viewer's URL
// cannot put a recording outside the directory.
func TestRecordPathFromHostileIDs(t *testing.T) {
	teststack.Require(t, "Xvnc")
	x := teststack.StartXvnc(t)
	rc := newRecorder(t, record.Config{})
	cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
	cfg.Recorder = rc
	_, addr, stop := startOwnedProxy(t, cfg)
	accepted := 0
	for _, path := range []string{
		"/v1/stream/vnc/task/t_1?client_id=..%2F..%2F..%2Ftmp%2Fevil", // a valid id, a hostile client_id
		"/v1/stream/vnc/task/..?client_id=../../../../tmp/evil",
		"/v1/stream/vnc/task/%2e%2e%2f%2e%2e%2fx?client_id=%2F..%2F..%2F",
		"/v1/stream/vnc/browser_session/a%00b?client_id=.",
	} {
		c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path, []string{"binary"}, nil)
		if err != nil {
			continue // refused before the relay: nothing recorded
		}
		accepted++
		_ = c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := rfbclient.Handshake(c, rfbclient.Options{}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		c.Close()
	}
	stop()
	rc.Close()
	dir := rcDir(t, rc)
	n := 0
	_ = filepath.WalkDir(filepath.Dir(dir), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			if strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 3 {
				t.Errorf("recording at %q (relative %q)", p, rel)
			}
			n++
		}
		return nil
	})
	if n != accepted {
		t.Fatalf("%d sessions relayed, %d recordings", accepted, n)
	}
}
