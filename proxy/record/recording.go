package record

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// chunkSize is the size of one queued chunk of in-memory records.
const chunkSize = 64 << 10

// chunk is a fixed buffer of records in the disk layout (type u8, time u64,
// length u32, payload, CRC-32) with the CRC left for the writer to fill in,
// so a chunk of server bytes is written as it is, without another copy.
type chunk struct {
	n int
	b [chunkSize]byte
}

// ErrFailed is returned on the loop once a required recording has failed:
// the session must end (close reason record-failed).
var ErrFailed = errors.New("record: recording failed")

// Recording is one session's recording. Its loop-side methods (Server,
// Client, Note, End) are called from the session's event loop only; they
// never block and never allocate per call. They copy bytes into pooled
// fixed chunks; a goroutine per recording writes the chunks out.
//
// Concurrency: cur (the chunk being filled) is shared with the writer
// goroutine, which takes it when it has waited FlushInterval; mu guards it
// and every push to ch. This is the one exception to the loop owning the
// session's state, an uncontended lock per call.
type Recording struct {
	r      *Recorder
	hdr    Header
	path   string
	start  time.Time
	onFail func() // called once, off the loop, when a Required recording fails

	mu      sync.Mutex
	cur     *chunk
	ch      chan *chunk
	lost    int64 // bytes dropped since the last gap note (guarded by mu)
	closed  bool  // End was called (guarded by mu)
	failed  bool  // guarded by mu
	dropped [8]uint64
	strip   uint64

	done chan struct{}
}

// Start begins a recording of the session h describes (h.Start is its start
// time; h.Input is filled in). onFail, if not nil, is called once from
// another goroutine when the recording fails and Required is set. The file
// is opened off the loop by the writer goroutine.
func (r *Recorder) Start(h Header, onFail func()) *Recording {
	h.Format = "vncrec/1.0"
	h.Input = r.cfg.Input.String()
	if h.Start.IsZero() {
		h.Start = time.Now()
	}
	rec := &Recording{r: r, hdr: h, start: h.Start, onFail: onFail,
		ch: make(chan *chunk, r.cfg.QueueChunks+1), done: make(chan struct{})}
	rec.path = r.Path(&h)
	r.open.Add(1)
	r.wg.Add(1)
	go rec.run()
	return rec
}

// Path is the recording's file name (a suffix is added if it exists: the
// final name is known once Done is closed).
func (rec *Recording) Path() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.path
}

// Done is closed once the file is written out and closed.
func (rec *Recording) Done() <-chan struct{} { return rec.done }

// Server records server→viewer bytes. It returns ErrFailed when the session
// must end because a Required recording failed.
func (rec *Recording) Server(p []byte) error {
	return rec.add(TypeServer, p, time.Now())
}

// Client records viewer→server bytes that passed policy; the writer keeps
// what the input mode allows.
func (rec *Recording) Client(p []byte) error {
	return rec.add(memClient, p, time.Now())
}

// Note records an annotation of a fixed kind (Note* constants).
func (rec *Recording) Note(kind uint8, value uint64, text string) error {
	var b [9 + 64]byte
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:9], value)
	n := copy(b[9:], text)
	return rec.add(memNote, b[:9+n], time.Now())
}

// Policy notes what the policy dropped or rewrote since the last call:
// dropped holds the running counts by reason (names gives each reason's
// name), stripped the running count of rewritten pointer events.
func (rec *Recording) Policy(dropped []uint64, names func(int) string, stripped uint64) error {
	var err error
	for i, d := range dropped {
		if i < len(rec.dropped) && d > rec.dropped[i] {
			if e := rec.Note(NoteDrop, d-rec.dropped[i], names(i)); e != nil {
				err = e
			}
			rec.dropped[i] = d
		}
	}
	if stripped > rec.strip {
		if e := rec.Note(NoteStripped, stripped-rec.strip, ""); e != nil {
			err = e
		}
		rec.strip = stripped
	}
	return err
}

// End records the close and hands the rest to the writer, which closes the
// file. Later calls do nothing.
func (rec *Recording) End(code int, reason string) {
	_ = rec.Note(NoteEnd, uint64(code), reason)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.closed {
		return
	}
	rec.closed = true
	if rec.cur != nil && rec.cur.n > 0 {
		rec.ch <- rec.cur // the reserved slot: never blocks
	} else if rec.cur != nil {
		rec.release(rec.cur)
	}
	rec.cur = nil
	close(rec.ch)
}

// add appends one record, splitting p across chunks.
func (rec *Recording) add(typ byte, p []byte, now time.Time) error {
	t := uint64(now.Sub(rec.start))
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.closed {
		return nil
	}
	if rec.failed { // required: end the session; else the file could not be opened
		return rec.failErr()
	}
	splittable := typ == TypeServer || typ == memClient
	for {
		if rec.cur == nil && !rec.grab() {
			rec.lost += int64(len(p))
			return rec.failErr()
		}
		c := rec.cur
		room := chunkSize - c.n - recHeaderSize - recTrailer
		if room <= 0 || (!splittable && room < len(p)) {
			ok := rec.push()
			rec.cur = nil
			if !ok && rec.r.cfg.Required {
				return ErrFailed
			}
			continue
		}
		k := min(room, len(p))
		b := c.b[c.n:]
		b[0] = typ
		binary.BigEndian.PutUint64(b[1:9], t)
		binary.BigEndian.PutUint32(b[9:13], uint32(k))
		copy(b[recHeaderSize:], p[:k])
		c.n += recHeaderSize + k + recTrailer
		p = p[k:]
		if len(p) == 0 {
			return nil
		}
	}
}

func (rec *Recording) failErr() error {
	if rec.r.cfg.Required {
		return ErrFailed
	}
	return nil
}

// grab takes a fresh chunk within the global bound; it starts with a gap
// note if bytes were lost. With mu held.
func (rec *Recording) grab() bool {
	if rec.r.queued.Add(chunkSize) > rec.r.cfg.MaxQueued {
		rec.r.queued.Add(-chunkSize)
		rec.loseLocked()
		return false
	}
	c := rec.r.getChunk()
	c.n = 0
	rec.cur = c
	if rec.lost > 0 {
		b := c.b[:]
		b[0] = memNote
		binary.BigEndian.PutUint64(b[1:9], uint64(time.Since(rec.start)))
		binary.BigEndian.PutUint32(b[9:13], 9)
		b[13] = NoteGap
		binary.BigEndian.PutUint64(b[14:22], uint64(rec.lost))
		c.n = recHeaderSize + 9 + recTrailer
		rec.lost = 0
	}
	return true
}

// push queues cur for the writer without blocking; a full queue drops it
// (the bytes become a gap). With mu held.
func (rec *Recording) push() bool {
	c := rec.cur
	if len(rec.ch) < cap(rec.ch)-1 { // the last slot is End's
		rec.ch <- c
		return true
	}
	rec.lost += int64(c.n)
	rec.release(c)
	rec.loseLocked()
	return false
}

// loseLocked counts a gap; a Required recording fails. With mu held.
func (rec *Recording) loseLocked() {
	rec.r.gaps.Add(1)
	if rec.r.cfg.Required && !rec.failed {
		rec.failed = true
		rec.r.failures.Add(1)
		if rec.onFail != nil {
			go rec.onFail()
		}
	}
}

func (rec *Recording) release(c *chunk) {
	rec.r.queued.Add(-chunkSize)
	rec.r.putChunk(c)
}

// fail marks the recording failed from the writer goroutine.
func (rec *Recording) fail(err error) {
	rec.r.cfg.Logger.Warn("recording failed", "path", rec.Path(), "err", err)
	rec.mu.Lock()
	first := !rec.failed
	rec.failed = true
	rec.mu.Unlock()
	if first {
		rec.r.failures.Add(1)
		if rec.r.cfg.Required && rec.onFail != nil {
			rec.onFail()
		}
	}
}

// run is the writer goroutine: open the file, write chunks as they come and
// the part-filled one every FlushInterval, close at End.
func (rec *Recording) run() {
	defer rec.r.wg.Done()
	defer close(rec.done)
	defer rec.r.open.Add(-1)
	w := &fileWriter{rec: rec}
	w.open()
	t := time.NewTicker(rec.r.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case c, ok := <-rec.ch:
			if !ok {
				w.close()
				return
			}
			w.chunk(c)
		case <-t.C:
			rec.mu.Lock()
			var c *chunk
			if len(rec.ch) == 0 && rec.cur != nil && rec.cur.n > 0 && !rec.closed {
				c, rec.cur = rec.cur, nil
			}
			rec.mu.Unlock()
			if c != nil {
				w.chunk(c)
			}
		}
	}
}

// fileWriter turns in-memory chunks into disk records (off the loop).
type fileWriter struct {
	rec  *Recording
	f    File
	good int64  // file size after the last complete write
	out  []byte // records being written
	in   inputFilter
	lost int64 // bytes not written since the last gap note
	dead bool  // the file could not be opened: discard everything
}

func (w *fileWriter) open() {
	rec := w.rec
	var f File
	var err error
	base := rec.Path()
	for i := 0; i < 100; i++ {
		p := base
		if i > 0 {
			p = p[:len(p)-len(".vncrec")] + fmt.Sprintf("-%d.vncrec", i)
		}
		if err = os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			break
		}
		f, err = rec.r.cfg.OpenFile(p)
		if err == nil {
			rec.mu.Lock()
			rec.path = p
			rec.mu.Unlock()
			break
		}
		if !errors.Is(err, os.ErrExist) && !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		w.dead = true
		rec.fail(fmt.Errorf("open: %w", err))
		return
	}
	w.f = f
	w.in.mode = rec.r.cfg.Input
	hj, _ := json.Marshal(rec.hdr)
	w.out = append(w.out[:0], Magic[:]...)
	w.out = appendRecord(w.out, TypeHeader, 0, hj)
	w.write()
}

func (w *fileWriter) chunk(c *chunk) {
	if !w.dead {
		w.records(c.b[:c.n])
	}
	w.rec.release(c)
}

// records writes one chunk's records: in place when all are disk records
// (fill in the checksums, one write), else converted into out.
func (w *fileWriter) records(all []byte) {
	inPlace := true
	for b := all; len(b) >= recHeaderSize; {
		n := int(binary.BigEndian.Uint32(b[9:13]))
		if b[0] == memClient || b[0] == memNote {
			inPlace = false
		}
		if b[0] == TypeServer {
			w.in.server(b[recHeaderSize : recHeaderSize+n])
		}
		b = b[recHeaderSize+n+recTrailer:]
	}
	if inPlace {
		for b := all; len(b) >= recHeaderSize; {
			n := int(binary.BigEndian.Uint32(b[9:13]))
			binary.BigEndian.PutUint32(b[recHeaderSize+n:], crc32.ChecksumIEEE(b[:recHeaderSize+n]))
			b = b[recHeaderSize+n+recTrailer:]
		}
		w.writeBytes(all)
		return
	}
	{
		b := all
		for len(b) >= recHeaderSize {
			typ := b[0]
			t := time.Duration(binary.BigEndian.Uint64(b[1:9]))
			n := int(binary.BigEndian.Uint32(b[9:13]))
			p := b[recHeaderSize : recHeaderSize+n]
			b = b[recHeaderSize+n+recTrailer:]
			switch typ {
			case memClient:
				w.out = w.in.feed(w.out, t, p)
			case memNote:
				w.out = appendNote(w.out, t, p)
			default:
				w.out = appendRecord(w.out, typ, t, p)
			}
		}
		w.write()
	}
}

// write writes out; on failure it cuts the file back to its last complete
// record and notes the loss at the next write that works.
func (w *fileWriter) write() {
	w.writeBytes(w.out)
	w.out = w.out[:0]
}

// writeBytes writes b (after a gap note if bytes were lost before).
func (w *fileWriter) writeBytes(b []byte) {
	if len(b) == 0 || w.dead {
		return
	}
	if w.lost > 0 {
		gap := appendNote(nil, 0, noteBytes(NoteGap, uint64(w.lost), "write-failed"))
		if _, err := w.f.Write(gap); err != nil {
			w.failed(err, b)
			return
		}
		w.good += int64(len(gap))
		w.lost = 0
	}
	n, err := w.f.Write(b)
	if err == nil {
		w.good += int64(n)
		w.rec.r.bytesWritten.Add(int64(n))
		return
	}
	w.failed(err, b)
}

// failed handles a failed write of b.
func (w *fileWriter) failed(err error, b []byte) {
	if w.good == 0 { // not even the header: nothing to save
		w.dead = true
		w.rec.fail(fmt.Errorf("write: %w", err))
		return
	}
	w.rec.r.gaps.Add(1)
	w.lost += int64(len(b))
	if terr := w.f.Truncate(w.good); terr == nil {
		_, _ = w.f.Seek(w.good, io.SeekStart)
	}
	if w.rec.r.cfg.Required {
		w.rec.fail(fmt.Errorf("write: %w", err))
	}
}

func (w *fileWriter) close() {
	if w.f != nil {
		w.write()
		if err := w.f.Close(); err != nil {
			w.rec.fail(fmt.Errorf("close: %w", err))
		}
	}
}

func noteBytes(kind uint8, v uint64, text string) []byte {
	b := make([]byte, 9, 9+len(text))
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:9], v)
	return append(b, text...)
}

// appendNote turns a binary note into an annotation record.
func appendNote(b []byte, t time.Duration, p []byte) []byte {
	if len(p) < 9 || p[0] >= numNotes {
		return b
	}
	v := binary.BigEndian.Uint64(p[1:9])
	text := string(p[9:])
	a := Annotation{Kind: noteNames[p[0]]}
	switch p[0] {
	case NoteControl:
		a.To = text
	case NoteDrop:
		a.Reason, a.Count = text, v
	case NoteStripped:
		a.Count = v
	case NoteClipboard, NoteGap:
		a.Size, a.Reason = int64(v), text
	case NoteEnd:
		a.Code, a.Reason = int(v), text
	case NoteInputSkipped:
		a.Reason = text
	}
	j, _ := json.Marshal(a)
	return appendRecord(b, TypeAnnotation, t, j)
}
