package record

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestReplayRefusesForeignOrigin: a page from another origin cannot read a
// recording from a local replay server; no Origin, the same host and a
// listed origin can.
func TestReplayRefusesForeignOrigin(t *testing.T) {
	s := recordedSession(t, noVNCPF)
	hs := httptest.NewServer(NewReplayer(s, ReplayOptions{Logger: quiet(), AllowedOrigins: []string{"http://viewer.test"}}))
	defer hs.Close()
	for origin, want := range map[string]int{"": 101, "http://evil.test": 403, "http://viewer.test": 101, "http://" + hs.Listener.Addr().String(): 101} {
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})}
		if origin == "" {
			d.Header = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, _, _, err := d.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"))
		cancel()
		got := 101
		var se ws.StatusError
		if err != nil {
			if !asStatus(err, &se) {
				t.Fatalf("origin %q: %v", origin, err)
			}
			got = int(se)
		} else {
			c.Close()
		}
		if got != want {
			t.Errorf("origin %q: status %d, want %d", origin, got, want)
		}
	}
}

// TestReplayRefusesFormatNoVNCCannotShow: a recording in another pixel
// format gets the RFB 3.8 failure reason, which noVNC shows.
func TestReplayRefusesFormatNoVNCCannotShow(t *testing.T) {
	other := append([]byte{}, noVNCPF...)
	other[10], other[12] = 16, 0 // red at 16: TigerVNC's viewer's layout
	s := recordedSession(t, other)
	hs := httptest.NewServer(NewReplayer(s, ReplayOptions{Logger: quiet()}))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, br, _, err := ws.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var rw io.ReadWriter = c
	if br != nil { // the server's first frame may ride with the 101
		rw = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, c), c}
	}
	var got []byte
	read := func() {
		b, err := wsutil.ReadServerBinary(rw)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	read()
	if err := wsutil.WriteClientBinary(c, []byte("RFB 003.008\n")); err != nil {
		t.Fatal(err)
	}
	read()
	if !bytes.HasPrefix(got, []byte("RFB 003.008\n\x00")) || !bytes.Contains(got, []byte("noVNC shows only 32 bpp")) {
		t.Fatalf("refusal %q", got)
	}
}

func asStatus(err error, se *ws.StatusError) bool {
	s, ok := err.(ws.StatusError)
	if ok {
		*se = s
	}
	return ok
}

// recordedSession records a small session whose viewer asked for pf.
func recordedSession(t *testing.T, pf []byte) *Session {
	t.Helper()
	r := newTestRecorder(t, nil)
	rec := start(t, r, Header{Kind: "task", ID: "t"}, nil)
	srv, cli := handshake38(4, 2, "x")
	must(t, rec.Server(srv))
	must(t, rec.Client(append(cli, setPixelFormat(pf)...)))
	must(t, rec.Server([]byte{0, 0, 0, 0}))
	return finish(t, rec)
}
