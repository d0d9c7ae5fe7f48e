package record

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// ReplayOptions configure a replay server.
type ReplayOptions struct {
	Speed  float64 // playback speed; 0 means 1
	Logger *slog.Logger
	// AnyFormat serves recordings in pixel formats noVNC cannot show (for
	// other viewers that accept the ServerInit's format as it is).
	AnyFormat bool
	// AllowedOrigins lists browser origins allowed besides the replay's own
	// host ("*": any). A recording is sensitive: without this check any web
	// page the user visits could read it from a local replay server.
	AllowedOrigins []string
}

// Replayer serves one loaded recording to WebSocket VNC viewers: each viewer
// sees the session as it happened, from the start or from ?offset=SECONDS.
type Replayer struct {
	s    *Session
	opts ReplayOptions
}

// NewReplayer returns a Replayer for s.
func NewReplayer(s *Session, opts ReplayOptions) *Replayer {
	if opts.Speed <= 0 {
		opts.Speed = 1
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Replayer{s: s, opts: opts}
}

// Check reports why the recording cannot be replayed to noVNC, or nil.
func (rp *Replayer) Check() error {
	if err := rp.s.Replayable(); err != nil {
		return err
	}
	if !rp.opts.AnyFormat {
		if err := NoVNCFormat(rp.s.PixelFormat); err != nil {
			return fmt.Errorf("recording cannot be shown in noVNC: %w", err)
		}
	}
	return nil
}

// ServeHTTP upgrades to a WebSocket (subprotocol "binary" when offered) and
// replays.
func (rp *Replayer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	offset := time.Duration(0)
	q := r.URL.Query()
	if i := strings.IndexByte(r.URL.Path, '?'); i >= 0 && q.Get("offset") == "" {
		// noVNC escapes its path setting: "replay%3Foffset%3D30" arrives
		// as the path "/replay?offset=30".
		q, _ = url.ParseQuery(r.URL.Path[i+1:])
	}
	if v := q.Get("offset"); v != "" {
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil || sec < 0 {
			http.Error(w, "offset: want seconds ≥ 0", http.StatusBadRequest)
			return
		}
		offset = time.Duration(sec * float64(time.Second))
	}
	if !rp.originAllowed(r) {
		rp.opts.Logger.Warn("replay: origin refused", "origin", r.Header.Get("Origin"), "viewer", r.RemoteAddr)
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	u := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == "binary" }}
	conn, _, _, err := u.Upgrade(r, w)
	if err != nil {
		rp.opts.Logger.Info("replay: upgrade failed", "err", err)
		return
	}
	defer conn.Close()
	log := rp.opts.Logger.With("viewer", r.RemoteAddr)
	if err := rp.Replay(conn, offset, log); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Info("replay ended", "err", err)
	}
}

// wsRW is a viewer WebSocket seen as an RFB byte stream.
type wsRW struct {
	c  net.Conn
	rd *wsutil.Reader
}

func (w *wsRW) Read(p []byte) (int, error) {
	for {
		n, err := w.rd.Read(p)
		if errors.Is(err, wsutil.ErrNoFrameAdvance) || (n == 0 && errors.Is(err, io.EOF)) {
			hdr, herr := w.rd.NextFrame()
			if herr != nil {
				return 0, herr
			}
			if hdr.OpCode == ws.OpClose {
				return 0, io.EOF
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return n, err
	}
}

func (w *wsRW) Write(p []byte) (int, error) {
	if err := wsutil.WriteServerBinary(w.c, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Replay runs the server side of RFB 3.8 on conn (a WebSocket) with the
// recorded ServerInit, then sends the recorded stream at its pace, after
// sending everything before offset at once. The viewer's own messages
// (SetPixelFormat, SetEncodings, input) are read and ignored.
func (rp *Replayer) Replay(conn net.Conn, offset time.Duration, log *slog.Logger) error {
	rd := &wsutil.Reader{Source: conn, State: ws.StateServerSide, CheckUTF8: false,
		OnIntermediate: wsutil.ControlFrameHandler(conn, ws.StateServerSide)}
	rw := &wsRW{c: conn, rd: rd}
	in := bufio.NewReader(rw)
	if _, err := rw.Write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	var v [12]byte
	if _, err := io.ReadFull(in, v[:]); err != nil {
		return fmt.Errorf("reading version: %w", err)
	}
	if string(v[:]) != "RFB 003.008\n" && string(v[:]) != "RFB 003.007\n" {
		return fmt.Errorf("viewer version %q: replay needs 3.7 or 3.8", v[:])
	}
	if err := rp.Check(); err != nil {
		reason := "vncedge replay: " + err.Error()
		msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(reason)))
		_, _ = rw.Write(append(msg, reason...))
		log.Warn("replay refused", "reason", reason)
		return nil
	}
	if _, err := rw.Write([]byte{1, 1}); err != nil { // one type: None
		return err
	}
	var b [1]byte
	if _, err := io.ReadFull(in, b[:]); err != nil {
		return err
	}
	if b[0] != 1 {
		return fmt.Errorf("viewer chose security type %d", b[0])
	}
	if string(v[:]) == "RFB 003.008\n" {
		if _, err := rw.Write([]byte{0, 0, 0, 0}); err != nil {
			return err
		}
	}
	if _, err := io.ReadFull(in, b[:]); err != nil { // ClientInit
		return err
	}
	si := append([]byte(nil), rp.s.ServerInit...)
	copy(si[4:20], rp.s.PixelFormat) // the format the stream is in
	if _, err := rw.Write(si); err != nil {
		return err
	}
	gone := make(chan struct{})
	go func() { // the viewer's messages: ignored
		_, _ = io.Copy(io.Discard, in)
		close(gone)
	}()
	log.Info("replay start", "kind", rp.s.Header.Kind, "id", rp.s.Header.ID, "offset", offset, "speed", rp.opts.Speed)
	if err := rp.stream(rw, offset, log); err != nil {
		return err
	}
	<-gone // keep the last picture up until the viewer leaves
	return nil
}

// stream sends the chunks after ServerInit, paced, logging annotations as
// their time comes.
func (rp *Replayer) stream(w io.Writer, offset time.Duration, log *slog.Logger) error {
	began := time.Now()
	ai := 0
	notes := rp.s.Events
	logNotes := func(upTo time.Duration) {
		for ; ai < len(notes) && notes[ai].Time <= upTo; ai++ {
			if a := notes[ai].Annotation; a != nil {
				log.Info("replay annotation", "at", notes[ai].Time.Round(time.Millisecond).String(), "kind", a.Kind,
					"to", a.To, "reason", a.Reason, "size", a.Size, "code", a.Code, "count", a.Count)
			}
		}
	}
	var pending []byte // chunks before offset are merged into one write
	for _, c := range rp.s.Stream {
		if c.Time < offset {
			pending = append(pending, c.Data...)
			continue
		}
		if len(pending) > 0 {
			if _, err := w.Write(pending); err != nil {
				return err
			}
			pending = nil
		}
		at := time.Duration(float64(c.Time-offset) / rp.opts.Speed)
		if d := at - time.Since(began); d > 0 {
			time.Sleep(d)
		}
		logNotes(c.Time)
		if _, err := w.Write(c.Data); err != nil {
			return err
		}
	}
	if len(pending) > 0 {
		if _, err := w.Write(pending); err != nil {
			return err
		}
	}
	logNotes(rp.s.Duration)
	log.Info("replay done", "duration", rp.s.Duration.String(), "truncated", rp.s.Truncated, "gaps", rp.s.Gaps)
	return nil
}

// originAllowed: no Origin (not a browser), the same host, or a listed one.
func (rp *Replayer) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	for _, a := range rp.opts.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, o) {
			return true
		}
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
