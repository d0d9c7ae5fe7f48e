package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// handshake38 is a 3.8 None handshake: server bytes, then client bytes.
func handshake38(w, h int, name string) (srv, cli []byte) {
	srv = append(srv, "RFB 003.008\n"...)
	srv = append(srv, 1, 1)       // one security type: None
	srv = append(srv, 0, 0, 0, 0) // SecurityResult OK
	srv = binary.BigEndian.AppendUint16(srv, uint16(w))
	srv = binary.BigEndian.AppendUint16(srv, uint16(h))
	srv = append(srv, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	srv = binary.BigEndian.AppendUint32(srv, uint32(len(name)))
	srv = append(srv, name...)
	cli = append(cli, "RFB 003.008\n"...)
	cli = append(cli, 1, 1) // choice None, ClientInit shared
	return srv, cli
}

var noVNCPF = []byte{32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0}

func setPixelFormat(pf []byte) []byte { return append([]byte{0, 0, 0, 0}, pf...) }

func newTestRecorder(t *testing.T, mut func(*Config)) *Recorder {
	t.Helper()
	cfg := Config{Dir: t.TempDir(), FlushInterval: time.Hour}
	if mut != nil {
		mut(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// start starts a recording that the test's cleanup ends (a failed test
// must not leave Recorder.Close waiting).
func start(t *testing.T, r *Recorder, h Header, onFail func()) *Recording {
	rec := r.Start(h, onFail)
	t.Cleanup(func() { rec.End(0, "test-end") })
	return rec
}

func finish(t *testing.T, rec *Recording) *Session {
	t.Helper()
	rec.End(1000, "viewer-closed")
	select {
	case <-rec.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("recording not written out")
	}
	s, err := Load(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRoundTripAndInputModes records a handshake, updates and input, and
// reads back exactly the server bytes; keys only with InputAll, clipboard
// as a size only, the VNC auth response never.
func TestRoundTripAndInputModes(t *testing.T) {
	srv, cli := handshake38(4, 2, "desk")
	update := bytes.Repeat([]byte{0xAB}, 200<<10) // crosses chunks
	key := []byte{4, 1, 0, 0, 0, 0, 0, 'q'}
	ptr := []byte{5, 0, 0, 10, 0, 20}
	cut := append([]byte{6, 0, 0, 0, 0, 0, 0, 6}, "secret"...)
	qemuKey := []byte{255, 0, 0, 1, 0, 0, 0, 'w', 0, 0, 0, 0x11}
	for _, mode := range []InputMode{InputNone, InputPointer, InputAll} {
		t.Run(mode.String(), func(t *testing.T) {
			r := newTestRecorder(t, func(c *Config) { c.Input = mode })
			rec := start(t, r, Header{Kind: "task", ID: "../../etc", Organization: "o/rg", ClientID: "c 1"}, nil)
			if strings.Contains(strings.TrimPrefix(rec.Path(), r.cfg.Dir), "..") {
				t.Fatalf("path %q escapes the directory", rec.Path())
			}
			must(t, rec.Server(srv[:5]))
			must(t, rec.Client(cli[:12]))
			must(t, rec.Server(srv[5:]))
			// Input split at odd places: the filter must reassemble.
			in := append(append(append(append(append([]byte{}, cli[12:]...), setPixelFormat(noVNCPF)...), key...), ptr...), cut...)
			in = append(in, qemuKey...)
			for i := 0; i < len(in); i += 3 {
				must(t, rec.Client(in[i:min(i+3, len(in))]))
			}
			must(t, rec.Server(update))
			must(t, rec.Note(NoteControl, 0, "agent"))
			s := finish(t, rec)
			var got []byte
			var inputs [][]byte
			kinds := map[string]int{}
			for _, ev := range s.Events {
				switch ev.Type {
				case TypeServer:
					got = append(got, ev.Data...)
				case TypeInput:
					inputs = append(inputs, ev.Data)
				case TypeAnnotation:
					kinds[ev.Annotation.Kind]++
					if ev.Annotation.Kind == "clipboard" && ev.Annotation.Size != 6 {
						t.Errorf("clipboard size %d, want 6", ev.Annotation.Size)
					}
				}
			}
			if !bytes.Equal(got, append(append([]byte{}, srv...), update...)) {
				t.Fatalf("server bytes differ: %d recorded, want %d", len(got), len(srv)+len(update))
			}
			if err := s.Replayable(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(s.PixelFormat, noVNCPF) || NoVNCFormat(s.PixelFormat) != nil {
				t.Fatalf("pixel format %v, want the viewer's", s.PixelFormat)
			}
			if len(s.Stream) == 0 || !bytes.Equal(concat(s.Stream), update) {
				t.Fatal("stream after ServerInit is not the update")
			}
			has := func(m []byte) bool {
				for _, i := range inputs {
					if bytes.Equal(i, m) {
						return true
					}
				}
				return false
			}
			if has(key) != (mode == InputAll) || has(qemuKey) != (mode == InputAll) {
				t.Errorf("key events recorded: %v, want %v", has(key), mode == InputAll)
			}
			if has(ptr) != (mode != InputNone) {
				t.Errorf("pointer recorded: %v, want %v", has(ptr), mode != InputNone)
			}
			raw, _ := os.ReadFile(rec.Path())
			if bytes.Contains(raw, []byte("secret")) {
				t.Error("clipboard text in the file")
			}
			if kinds["clipboard"] != 1 || kinds["control"] != 1 || kinds["end"] != 1 {
				t.Errorf("annotations %v", kinds)
			}
		})
	}
}

// TestVNCAuthResponseNeverRecorded: the 16-byte response to the challenge
// (a DES of the password) stays out of the file.
func TestVNCAuthResponseNeverRecorded(t *testing.T) {
	r := newTestRecorder(t, func(c *Config) { c.Input = InputAll })
	rec := start(t, r, Header{}, nil)
	must(t, rec.Server([]byte("RFB 003.008\n\x01\x02")))
	must(t, rec.Client([]byte("RFB 003.008\n\x02")))
	must(t, rec.Server(bytes.Repeat([]byte{7}, 16))) // challenge
	resp := []byte("AUTHRESPONSE0123")
	must(t, rec.Client(resp))
	must(t, rec.Client([]byte{1}))
	must(t, rec.Client([]byte{4, 1, 0, 0, 0, 0, 0, 'z'}))
	s := finish(t, rec)
	raw, _ := os.ReadFile(rec.Path())
	if bytes.Contains(raw, resp) {
		t.Fatal("auth response recorded")
	}
	if s.Input != 1 {
		t.Fatalf("%d input messages after auth, want 1", s.Input)
	}
}

// TestTruncatedFileReadsToLastRecord cuts a file at every length inside
// its last records: it reads, marked truncated, with a prefix of the stream.
func TestTruncatedFileReadsToLastRecord(t *testing.T) {
	r := newTestRecorder(t, nil)
	rec := start(t, r, Header{Kind: "task", ID: "t"}, nil)
	srv, cli := handshake38(4, 2, "x")
	must(t, rec.Server(srv))
	must(t, rec.Client(cli))
	for i := 0; i < 20; i++ {
		must(t, rec.Server(bytes.Repeat([]byte{byte(i)}, 1000)))
	}
	full := finish(t, rec)
	raw, _ := os.ReadFile(rec.Path())
	whole := concat(full.Stream)
	for cut := len(raw) - 1; cut > len(raw)-3000; cut -= 97 {
		s, err := ReadSession(bytes.NewReader(raw[:cut]))
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if !s.Truncated {
			t.Fatalf("cut at %d: not marked truncated", cut)
		}
		got := concat(s.Stream)
		if len(got) > len(whole) || !bytes.Equal(got, whole[:len(got)]) || len(got) < len(whole)-3000 {
			t.Fatalf("cut at %d: %d stream bytes, not a prefix of %d", cut, len(got), len(whole))
		}
	}
	// A flipped byte is caught by the checksum.
	bad := append([]byte{}, raw...)
	bad[len(bad)-200] ^= 0xff
	if s, err := ReadSession(bytes.NewReader(bad)); err != nil || !s.Corrupt {
		t.Fatalf("corrupt file: %v, corrupt=%v", err, s != nil && s.Corrupt)
	}
}

// blockingFile blocks every Write until released, then fails or succeeds.
type blockingFile struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	release chan struct{}
	failN   int // writes after the first that fail
	writes  int
}

func (f *blockingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	f.writes++
	n := f.writes
	f.mu.Unlock()
	if n > 1 && f.release != nil {
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if n > 1 && f.failN > 0 {
		f.failN--
		f.buf.Write(p[:len(p)/2]) // a short write
		return len(p) / 2, errors.New("no space left on device")
	}
	return f.buf.Write(p)
}
func (f *blockingFile) Truncate(n int64) error {
	f.mu.Lock()
	f.buf.Truncate(int(n))
	f.mu.Unlock()
	return nil
}
func (f *blockingFile) Seek(int64, int) (int64, error) { return 0, nil }
func (f *blockingFile) Close() error                   { return nil }

// TestSlowDiskNeverBlocks: with the writer stuck, the loop side keeps
// returning at once; the overflow becomes a gap annotation (or, required,
// ErrFailed and one onFail call).
func TestSlowDiskNeverBlocks(t *testing.T) {
	for _, required := range []bool{false, true} {
		t.Run(map[bool]string{false: "gap", true: "required"}[required], func(t *testing.T) {
			f := &blockingFile{release: make(chan struct{})}
			r := newTestRecorder(t, func(c *Config) {
				c.QueueChunks, c.Required = 2, required
				c.OpenFile = func(string) (File, error) { return f, nil }
			})
			failed := make(chan struct{}, 4)
			rec := start(t, r, Header{}, func() { failed <- struct{}{} })
			big := make([]byte, 60<<10)
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < 50 && err == nil; i++ {
					err = rec.Server(big)
				}
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Server blocked on a stuck disk")
			}
			if required != errors.Is(err, ErrFailed) {
				t.Fatalf("err %v with required=%v", err, required)
			}
			if r.Stats().Gaps == 0 {
				t.Fatal("no gap counted")
			}
			if required {
				select {
				case <-failed:
				case <-time.After(10 * time.Second):
					t.Fatal("onFail not called")
				}
			}
			close(f.release)
			rec.End(1000, "x")
			<-rec.Done()
			s, err := ReadSession(bytes.NewReader(f.buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if !required && s.Gaps == 0 {
				t.Fatal("no gap annotation in the file")
			}
			if s.Truncated || s.Corrupt {
				t.Fatalf("file truncated=%v corrupt=%v", s.Truncated, s.Corrupt)
			}
		})
	}
}

// TestWriteErrorLeavesReadableFile: a failing write (disk full) is cut back
// to the last whole record and the loss noted once writes work again.
func TestWriteErrorLeavesReadableFile(t *testing.T) {
	f := &blockingFile{failN: 1}
	r := newTestRecorder(t, func(c *Config) { c.OpenFile = func(string) (File, error) { return f, nil } })
	rec := start(t, r, Header{}, nil)
	srv, cli := handshake38(4, 2, "x")
	must(t, rec.Server(srv))
	must(t, rec.Client(cli))
	big := make([]byte, 60<<10)
	for i := 0; i < 4; i++ {
		must(t, rec.Server(big))
	}
	rec.End(1000, "x")
	<-rec.Done()
	s, err := ReadSession(bytes.NewReader(f.buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if s.Truncated || s.Corrupt || s.Gaps != 1 {
		t.Fatalf("truncated=%v corrupt=%v gaps=%d, want a clean file with one gap", s.Truncated, s.Corrupt, s.Gaps)
	}
	if last := s.Events[len(s.Events)-1]; last.Annotation == nil || last.Annotation.Kind != "end" {
		t.Fatal("end annotation missing after the failed write")
	}
}

func TestSafePath(t *testing.T) {
	r := newTestRecorder(t, nil)
	for _, id := range []string{"..", ".", "", "../..", "a/../../b", "\x00", strings.Repeat("x", 500), ".hidden"} {
		p := r.Path(&Header{Organization: id, Kind: id, ID: id, ClientID: id, Start: time.Unix(0, 0)})
		rel, err := filepath.Rel(r.cfg.Dir, p)
		if err != nil || strings.HasPrefix(rel, "..") || strings.Count(rel, string(filepath.Separator)) != 3 {
			t.Errorf("id %q: path %q (rel %q) leaves the layout", id, p, rel)
		}
		for _, part := range strings.Split(rel, string(filepath.Separator)) {
			if part == ".." || part == "." || strings.HasPrefix(part, ".") {
				t.Errorf("id %q: element %q", id, part)
			}
		}
	}
}

func TestRetentionDeletesOld(t *testing.T) {
	r := newTestRecorder(t, nil)
	rec := start(t, r, Header{Kind: "task", ID: "old"}, nil)
	finish(t, rec)
	rec2 := start(t, r, Header{Kind: "task", ID: "new"}, nil)
	finish(t, rec2)
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(rec.Path(), old, old); err != nil {
		t.Fatal(err)
	}
	if n := r.DeleteOld(time.Now().Add(-24 * time.Hour)); n != 1 {
		t.Fatalf("deleted %d, want 1", n)
	}
	if _, err := os.Stat(rec.Path()); !os.IsNotExist(err) {
		t.Fatal("old recording still there")
	}
	if _, err := os.Stat(filepath.Dir(rec.Path())); !os.IsNotExist(err) {
		t.Fatal("empty directory left")
	}
	if _, err := os.Stat(rec2.Path()); err != nil {
		t.Fatal("new recording deleted")
	}
}

// TestLoopSideDoesNotAllocate: Server, Client and Note on the loop.
func TestLoopSideDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates; run without -race")
	}
	r := newTestRecorder(t, func(c *Config) { c.QueueChunks = 1 << 14; c.MaxQueued = 1 << 40 })
	rec := start(t, r, Header{}, nil)
	p := make([]byte, 1500)
	for i := 0; i < 200; i++ { // warm the pool
		_ = rec.Server(p)
	}
	n := testing.AllocsPerRun(1000, func() {
		_ = rec.Server(p)
		_ = rec.Client(p[:6])
		_ = rec.Note(NoteDrop, 1, "shortcut")
	})
	if n > 0.05 {
		t.Fatalf("%.2f allocs per call set", n)
	}
	rec.End(0, "")
	<-rec.Done()
}

func concat(cs []Chunk) []byte {
	var b []byte
	for _, c := range cs {
		b = append(b, c.Data...)
	}
	return b
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
