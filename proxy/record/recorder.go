package record

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// InputMode says which viewer input goes into recordings.
type InputMode uint8

// Input modes. SetPixelFormat and SetEncodings are always kept (replay needs
// them); clipboard contents never are (only their size, as an annotation).
const (
	InputPointer InputMode = iota // pointer events (the default)
	InputNone                     // no input events
	InputAll                      // pointer and key events (keystrokes: passwords!)
)

// ParseInputMode parses none, pointer or all.
func ParseInputMode(s string) (InputMode, error) {
	switch s {
	case "none":
		return InputNone, nil
	case "pointer", "":
		return InputPointer, nil
	case "all":
		return InputAll, nil
	}
	return 0, fmt.Errorf("record input %q: want none, pointer or all", s)
}

func (m InputMode) String() string {
	switch m {
	case InputNone:
		return "none"
	case InputAll:
		return "all"
	}
	return "pointer"
}

// Config configures a Recorder.
type Config struct {
	Dir   string    // root directory of recordings
	Input InputMode // viewer input kept
	// Required ends a session whose recording fails (queue full, disk error)
	// instead of writing a gap annotation and going on.
	Required bool
	// Retention deletes recordings older than this; 0 keeps them.
	Retention time.Duration
	// QueueChunks bounds one recording's queue, in 64 KiB chunks; default 64 (4 MiB).
	QueueChunks int
	// MaxQueued bounds the bytes queued by all recordings; default 256 MiB.
	MaxQueued int64
	// FlushInterval is the longest time bytes wait in a part-filled chunk; default 250ms.
	FlushInterval time.Duration
	// Logger gets file-level errors; default slog.Default().
	Logger *slog.Logger
	// OpenFile opens a new recording file; default os.OpenFile with O_EXCL.
	// Tests use it to inject failing writers.
	OpenFile func(path string) (File, error)
}

// File is what a recording is written to.
type File interface {
	Write(p []byte) (int, error)
	Truncate(size int64) error
	Seek(offset int64, whence int) (int64, error)
	Close() error
}

// Recorder owns the recordings of one server: the chunk pool, the global
// queue bound, retention and the metrics. Safe for concurrent use.
type Recorder struct {
	cfg Config
	// free holds released chunks for reuse, up to the global bound: a
	// channel rather than a sync.Pool, which the GC empties (and the loop
	// would then allocate).
	free   chan *chunk
	queued atomic.Int64 // bytes in chunks handed out and not yet written
	wg     sync.WaitGroup
	stop   chan struct{}
	once   sync.Once

	// Metrics (read by the metrics callback).
	bytesWritten atomic.Int64
	gaps         atomic.Int64
	open         atomic.Int64
	failures     atomic.Int64
}

// New returns a Recorder writing under cfg.Dir; with a Retention it starts the
// deletion loop (stopped by Close).
func New(cfg Config) (*Recorder, error) {
	if cfg.Dir == "" {
		return nil, errors.New("record: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	if cfg.QueueChunks <= 0 {
		cfg.QueueChunks = 64
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 256 << 20
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 250 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OpenFile == nil {
		cfg.OpenFile = openExcl
	}
	r := &Recorder{cfg: cfg, stop: make(chan struct{}), free: make(chan *chunk, min(cfg.MaxQueued/chunkSize+1, 1<<14))}
	if cfg.Retention > 0 {
		r.wg.Add(1)
		go r.retain()
	}
	return r, nil
}

func openExcl(path string) (File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
}

// Input is the configured input mode.
func (r *Recorder) Input() InputMode { return r.cfg.Input }

// Required reports whether a failing recording ends its session.
func (r *Recorder) Required() bool { return r.cfg.Required }

// Stats are the Recorder's counters, for metrics.
type Stats struct {
	BytesWritten int64 // bytes written to recording files
	Gaps         int64 // gaps: chunks dropped or writes failed
	Open         int64 // recordings open now
	Failures     int64 // recordings that could not be opened or written
}

// Stats returns the counters.
func (r *Recorder) Stats() Stats {
	return Stats{BytesWritten: r.bytesWritten.Load(), Gaps: r.gaps.Load(), Open: r.open.Load(), Failures: r.failures.Load()}
}

// Close stops retention and waits until every recording ended so far has
// been written out and closed. Recordings still open keep running.
func (r *Recorder) Close() {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
}

// Wait waits until every recording started so far has been closed.
func (r *Recorder) Wait() { r.wg.Wait() }

// Path is where a recording of this identity starting at start goes:
// DIR/{organization}/{kind}/{id}/{start}-{client_id}.vncrec, each part
// reduced to safe characters.
func (r *Recorder) Path(h *Header) string {
	name := h.Start.UTC().Format("20060102T150405.000000000Z") + "-" + safe(h.ClientID) + ".vncrec"
	return filepath.Join(r.cfg.Dir, safe(h.Organization), safe(h.Kind), safe(h.ID), name)
}

// safe maps s to a path element: letters, digits, '.', '_' and '-' kept,
// anything else '_' (and a '.' first or after a '.'); never empty, never
// "." or "..", at most 80 bytes.
func safe(s string) string {
	if len(s) > 80 {
		s = s[:80]
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '.' && i > 0 && b[i-1] != '.':
		default:
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// retain deletes old recordings every Retention/10 (at most hourly).
func (r *Recorder) retain() {
	defer r.wg.Done()
	every := min(max(r.cfg.Retention/10, time.Second), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r.DeleteOld(time.Now().Add(-r.cfg.Retention))
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
	}
}

// DeleteOld removes recordings last written before cutoff and the
// directories left empty; it returns how many files it removed.
func (r *Recorder) DeleteOld(cutoff time.Time) int {
	n := 0
	var dirs []string
	_ = filepath.WalkDir(r.cfg.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			if p != r.cfg.Dir {
				dirs = append(dirs, p)
			}
			return nil
		}
		if !strings.HasSuffix(p, ".vncrec") || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(cutoff) {
			if os.Remove(p) == nil {
				n++
			}
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- { // deepest first
		_ = os.Remove(dirs[i]) // fails unless empty
	}
	return n
}

// getChunk takes a free chunk or allocates one (until the free list holds
// the peak in use).
func (r *Recorder) getChunk() *chunk {
	select {
	case c := <-r.free:
		return c
	default:
		return new(chunk)
	}
}

func (r *Recorder) putChunk(c *chunk) {
	select {
	case r.free <- c:
	default:
	}
}
