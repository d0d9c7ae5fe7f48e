package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// event is a complete data message or a control frame.
type event struct {
	ctl  bool
	op   ws.OpCode
	data []byte
}

func (e event) String() string {
	kind := "msg"
	if e.ctl {
		kind = "ctl"
	}
	if len(e.data) > 16 {
		return fmt.Sprintf("%s op=%d len=%d % x…", kind, e.op, len(e.data), e.data[:16])
	}
	return fmt.Sprintf("%s op=%d % x", kind, e.op, e.data)
}

// recorder is a Handler that copies what it receives: data pieces are
// joined into messages, recorded when fin arrives.
type recorder struct {
	events  []event
	pending []byte    // data of the message in progress
	pendOp  ws.OpCode // its opcode, 0 when none
	bad     []string  // contract violations seen
	pieces  int
}

func (r *recorder) OnData(op ws.OpCode, p []byte, fin bool) error {
	r.pieces++
	if op != ws.OpBinary && op != ws.OpText {
		r.bad = append(r.bad, fmt.Sprintf("OnData with op %d", op))
	}
	if len(p) == 0 && !fin {
		r.bad = append(r.bad, "empty non-final piece")
	}
	if r.pendOp != 0 && op != r.pendOp {
		r.bad = append(r.bad, fmt.Sprintf("op changed from %d to %d inside a message", r.pendOp, op))
	}
	r.pendOp = op
	r.pending = append(r.pending, p...)
	if fin {
		r.events = append(r.events, event{op: op, data: append([]byte{}, r.pending...)})
		r.pending, r.pendOp = r.pending[:0], 0
	}
	return nil
}

func (r *recorder) OnControl(op ws.OpCode, payload []byte) error {
	if !op.IsControl() {
		r.bad = append(r.bad, fmt.Sprintf("OnControl with op %d", op))
	}
	if len(payload) > MaxControlPayload {
		r.bad = append(r.bad, "control payload over 125 bytes")
	}
	r.events = append(r.events, event{ctl: true, op: op, data: append([]byte{}, payload...)})
	return nil
}

// result is everything a decoding run produced.
type result struct {
	events  []event
	pending []byte
	err     error
}

func (a result) diff(b result) string {
	if len(a.events) != len(b.events) {
		return fmt.Sprintf("%d events vs %d:\n%v\n%v", len(a.events), len(b.events), a.events, b.events)
	}
	for i := range a.events {
		x, y := a.events[i], b.events[i]
		if x.ctl != y.ctl || x.op != y.op || !bytes.Equal(x.data, y.data) {
			return fmt.Sprintf("event %d: %v vs %v", i, x, y)
		}
	}
	if !bytes.Equal(a.pending, b.pending) {
		return fmt.Sprintf("pending % x vs % x", a.pending, b.pending)
	}
	if a.err != b.err {
		return fmt.Sprintf("error %v vs %v", a.err, b.err)
	}
	return ""
}

// Scratch space for feedChunks (tests in this package are not parallel).
var chunkBuf, scribble []byte

// feedChunks feeds a copy of stream to d, cut at the given increasing
// offsets, and returns the first error. After each Feed the chunk is
// overwritten, so a decoder that kept a reference to it would produce
// garbage.
func feedChunks(t testing.TB, d *Decoder, h Handler, stream []byte, cuts []int) error {
	if cap(chunkBuf) < len(stream) {
		chunkBuf = make([]byte, len(stream))
		scribble = bytes.Repeat([]byte{0xEE}, len(stream))
	}
	prev := 0
	for i := 0; i <= len(cuts); i++ {
		end := len(stream)
		if i < len(cuts) {
			end = cuts[i]
		}
		chunk := chunkBuf[:end-prev]
		copy(chunk, stream[prev:end])
		err := d.Feed(chunk, h)
		copy(chunk, scribble)
		prev = end
		if err != nil {
			// The error sticks, whatever comes next.
			if again := d.Feed([]byte{0x82, 0x80, 0, 0, 0, 0}, h); again != err {
				t.Fatalf("second Feed after %v returned %v", err, again)
			}
			return err
		}
	}
	return nil
}

// decodeChunks runs feedChunks with a new decoder made by mk and a recorder.
func decodeChunks(t testing.TB, mk func() Decoder, stream []byte, cuts []int) result {
	d := mk()
	var rec recorder
	err := feedChunks(t, &d, &rec, stream, cuts)
	if len(rec.bad) > 0 {
		t.Fatalf("handler contract violated: %v", rec.bad)
	}
	return result{events: rec.events, pending: append([]byte{}, rec.pending...), err: err}
}

// checker is a Handler that compares what it receives, as it arrives, with
// expected events: it copies nothing, for the exhaustive split tests. Data
// messages and control frames are checked in two sequences, and each control
// frame must come after as many complete messages as in the expected list.
type checker struct {
	msgs     []event
	ctls     []event
	ctlAfter []int // messages complete before each control frame
	mi, off  int   // next message, bytes of it received so far
	ci       int   // next control frame
	bad      string
}

func newChecker(want []event) *checker {
	c := &checker{}
	for _, e := range want {
		if e.ctl {
			c.ctls = append(c.ctls, e)
			c.ctlAfter = append(c.ctlAfter, len(c.msgs))
		} else {
			c.msgs = append(c.msgs, e)
		}
	}
	return c
}

func (c *checker) failf(format string, args ...any) error {
	if c.bad == "" {
		c.bad = fmt.Sprintf("message %d, control %d: ", c.mi, c.ci) + fmt.Sprintf(format, args...)
	}
	return errors.New(c.bad)
}

func (c *checker) OnData(op ws.OpCode, p []byte, fin bool) error {
	if c.mi >= len(c.msgs) {
		return c.failf("unexpected data")
	}
	w := c.msgs[c.mi]
	switch {
	case w.op != op:
		return c.failf("got data op %d, want %v", op, w)
	case len(p) == 0 && !fin:
		return c.failf("empty non-final piece")
	case c.off+len(p) > len(w.data) || !bytes.Equal(p, w.data[c.off:c.off+len(p)]):
		return c.failf("data at offset %d differs", c.off)
	}
	c.off += len(p)
	if fin && c.off != len(w.data) {
		return c.failf("fin at offset %d of %d", c.off, len(w.data))
	}
	if fin {
		c.mi, c.off = c.mi+1, 0
	}
	return nil
}

func (c *checker) OnControl(op ws.OpCode, payload []byte) error {
	if c.ci >= len(c.ctls) {
		return c.failf("unexpected control frame")
	}
	w := c.ctls[c.ci]
	if w.op != op || !bytes.Equal(w.data, payload) {
		return c.failf("got control %d % x, want %v", op, payload, w)
	}
	if c.ctlAfter[c.ci] != c.mi {
		return c.failf("control frame after %d messages, want %d", c.mi, c.ctlAfter[c.ci])
	}
	c.ci++
	return nil
}

// check decodes stream with cuts and compares the result with want.
func check(t *testing.T, mk func() Decoder, stream []byte, cuts []int, want []event) string {
	d := mk()
	c := newChecker(want)
	err := feedChunks(t, &d, c, stream, cuts)
	switch {
	case c.bad != "":
		return c.bad
	case err != nil:
		return err.Error()
	case c.mi != len(c.msgs) || c.off != 0 || c.ci != len(c.ctls):
		return fmt.Sprintf("stopped at message %d offset %d, control %d", c.mi, c.off, c.ci)
	}
	return ""
}

// frameSpec is a frame to put in a test stream.
type frameSpec struct {
	op      ws.OpCode
	fin     bool
	payload []byte
}

func payload(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7) + byte(i>>8)
	}
	return p
}

func closeBody(code ws.StatusCode, reason string) []byte {
	return ws.NewCloseFrameBody(code, reason)
}

// specStream has every length class, empty frames, fragmented messages with
// control frames between their fragments, and masks that end up split.
func specStream() []frameSpec {
	return []frameSpec{
		{ws.OpBinary, true, []byte("hello")},
		{ws.OpBinary, true, nil},
		{ws.OpPing, true, []byte("p1")},
		{ws.OpBinary, false, payload(300, 1)},
		{ws.OpPing, true, []byte("mid")},
		{ws.OpContinuation, false, nil},
		{ws.OpPong, true, nil},
		{ws.OpContinuation, false, payload(65536, 2)},
		{ws.OpPing, true, payload(125, 3)},
		{ws.OpContinuation, true, payload(7, 4)},
		{ws.OpText, true, []byte("héllo")},
		{ws.OpText, false, []byte("ab")},
		{ws.OpContinuation, true, nil},
		{ws.OpBinary, false, nil},
		{ws.OpContinuation, true, payload(1, 5)},
		{ws.OpClose, true, closeBody(ws.StatusNormalClosure, "bye")},
		{ws.OpBinary, true, payload(126, 6)},
		{ws.OpBinary, true, payload(125, 7)},
		{ws.OpClose, true, nil},
	}
}

// encode writes specs with gobwas, masked with varying keys when masked.
func encode(t testing.TB, specs []frameSpec, masked bool) []byte {
	var buf bytes.Buffer
	for i, s := range specs {
		f := ws.NewFrame(s.op, s.fin, append([]byte{}, s.payload...))
		if masked {
			f = ws.MaskFrameWith(f, [4]byte{byte(i) + 0x31, 0x5a, byte(i * 3), 0xc7})
		}
		if err := ws.WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// expected computes the events specs must produce, independently of Decoder.
func expected(specs []frameSpec) []event {
	var out []event
	var msg []byte
	var op ws.OpCode
	for _, s := range specs {
		if s.op.IsControl() {
			out = append(out, event{ctl: true, op: s.op, data: append([]byte{}, s.payload...)})
			continue
		}
		if s.op != ws.OpContinuation {
			op, msg = s.op, nil
		}
		msg = append(msg, s.payload...)
		if s.fin {
			out = append(out, event{op: op, data: append([]byte{}, msg...)})
		}
	}
	return out
}

func roleCases() []struct {
	name   string
	role   Role
	masked bool
} {
	return []struct {
		name   string
		role   Role
		masked bool
	}{{"server", Server, true}, {"client", Client, false}}
}

func TestDecoderWhole(t *testing.T) {
	specs := specStream()
	want := result{events: expected(specs), pending: []byte{}}
	for _, rc := range roleCases() {
		mk := func() Decoder { return Decoder{Role: rc.role, AllowText: true} }
		got := decodeChunks(t, mk, encode(t, specs, rc.masked), nil)
		if d := got.diff(want); d != "" {
			t.Errorf("%s: %s", rc.name, d)
		}
	}
}

// raceEnabled is set by race_test.go.
var raceEnabled bool

// TestDecoderEverySplit cuts the stream in two at every offset. With -short
// or -race, offsets more than 64 bytes from a frame boundary are sampled.
func TestDecoderEverySplit(t *testing.T) {
	specs := specStream()
	want := expected(specs)
	sample := testing.Short() || raceEnabled
	for _, rc := range roleCases() {
		stream := encode(t, specs, rc.masked)
		bounds := frameStarts(t, specs, rc.masked)
		mk := func() Decoder { return Decoder{Role: rc.role, AllowText: true} }
		n := 0
		for i := 0; i <= len(stream); i++ {
			if sample && i%61 != 0 && !near(bounds, i, 64) {
				continue
			}
			n++
			if d := check(t, mk, stream, []int{i}, want); d != "" {
				t.Fatalf("%s, split at %d of %d: %s", rc.name, i, len(stream), d)
			}
		}
		t.Logf("%s: %d split points of %d", rc.name, n, len(stream)+1)
	}
}

// frameStarts returns the offset of each frame in encode's output, and its end.
func frameStarts(t testing.TB, specs []frameSpec, masked bool) []int {
	var out []int
	off := 0
	for i := range specs {
		out = append(out, off)
		off += len(encode(t, specs[i:i+1], masked))
	}
	return append(out, off)
}

func near(bounds []int, i, d int) bool {
	for _, b := range bounds {
		if i >= b-d && i <= b+d {
			return true
		}
	}
	return false
}

func TestDecoderByteByByte(t *testing.T) {
	specs := specStream()
	want := result{events: expected(specs), pending: []byte{}}
	for _, rc := range roleCases() {
		stream := encode(t, specs, rc.masked)
		cuts := make([]int, len(stream)-1)
		for i := range cuts {
			cuts[i] = i + 1
		}
		mk := func() Decoder { return Decoder{Role: rc.role, AllowText: true} }
		if d := decodeChunks(t, mk, stream, cuts).diff(want); d != "" {
			t.Errorf("%s: %s", rc.name, d)
		}
	}
}

func TestDecoderRandomSplits(t *testing.T) {
	specs := specStream()
	want := result{events: expected(specs), pending: []byte{}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, rc := range roleCases() {
		stream := encode(t, specs, rc.masked)
		mk := func() Decoder { return Decoder{Role: rc.role, AllowText: true} }
		for range 200 {
			var cuts []int
			for at := rng.IntN(20); at < len(stream); at += 1 + rng.IntN(1+rng.IntN(3000)) {
				cuts = append(cuts, at)
			}
			if d := decodeChunks(t, mk, stream, cuts).diff(want); d != "" {
				t.Fatalf("%s, cuts %v: %s", rc.name, cuts, d)
			}
		}
	}
}

// orderRecorder logs every call in order, pieces included.
type orderRecorder struct{ log []string }

func (o *orderRecorder) OnData(op ws.OpCode, p []byte, fin bool) error {
	o.log = append(o.log, fmt.Sprintf("data %d %q %v", op, p, fin))
	return nil
}

func (o *orderRecorder) OnControl(op ws.OpCode, payload []byte) error {
	o.log = append(o.log, fmt.Sprintf("ctl %d %q", op, payload))
	return nil
}

func TestDecoderPingsInFragmentedMessage(t *testing.T) {
	specs := []frameSpec{
		{ws.OpBinary, false, []byte("one")},
		{ws.OpPing, true, []byte("a")},
		{ws.OpContinuation, false, []byte("two")},
		{ws.OpPong, true, nil},
		{ws.OpPing, true, []byte("b")},
		{ws.OpContinuation, false, nil},
		{ws.OpContinuation, true, []byte("three")},
		{ws.OpBinary, true, []byte("next")},
	}
	want := []string{
		`data 2 "one" false`,
		`ctl 9 "a"`,
		`data 2 "two" false`,
		`ctl 10 ""`,
		`ctl 9 "b"`,
		`data 2 "three" true`,
		`data 2 "next" true`,
	}
	d := Decoder{}
	var o orderRecorder
	if err := d.Feed(encode(t, specs, true), &o); err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.log, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(o.log, "\n"), strings.Join(want, "\n"))
	}
	if d.InMessage() {
		t.Error("InMessage after the last fin")
	}
}

// TestDecoderZeroCopy checks that OnData pieces alias the fed chunk.
func TestDecoderZeroCopy(t *testing.T) {
	stream := encode(t, []frameSpec{{ws.OpBinary, true, []byte("abcdef")}}, true)
	d := Decoder{}
	h := handlerFunc(func(op ws.OpCode, p []byte, fin bool) error {
		p[0] = 'Z'
		return nil
	})
	if err := d.Feed(stream, h); err != nil {
		t.Fatal(err)
	}
	if got := string(stream[len(stream)-6:]); got != "Zbcdef" {
		t.Errorf("chunk after Feed ends in %q, want the unmasked payload as modified by OnData", got)
	}
}

type handlerFunc func(op ws.OpCode, p []byte, fin bool) error

func (f handlerFunc) OnData(op ws.OpCode, p []byte, fin bool) error { return f(op, p, fin) }
func (f handlerFunc) OnControl(ws.OpCode, []byte) error             { return nil }

func TestDecoderHandlerError(t *testing.T) {
	stop := errors.New("stop")
	stream := encode(t, []frameSpec{
		{ws.OpBinary, true, []byte("a")},
		{ws.OpBinary, true, []byte("b")},
		{ws.OpBinary, true, []byte("c")},
	}, true)
	calls := 0
	h := handlerFunc(func(op ws.OpCode, p []byte, fin bool) error {
		calls++
		if string(p) == "b" {
			return stop
		}
		return nil
	})
	d := Decoder{}
	if err := d.Feed(stream, h); err != stop {
		t.Fatalf("Feed = %v, want the handler's error", err)
	}
	if calls != 2 {
		t.Errorf("%d OnData calls, want 2", calls)
	}
	if err := d.Feed(stream, h); err != stop || d.Err() != stop || calls != 2 {
		t.Errorf("after a handler error: Feed = %v, Err = %v, calls = %d", err, d.Err(), calls)
	}
	d.Reset()
	if d.Err() != nil || d.Role != Server {
		t.Errorf("Reset left Err %v, Role %d", d.Err(), d.Role)
	}
}

// rawFrame builds a frame header by hand (for headers gobwas would not
// write) followed by payload, masked with a fixed key when masked.
func rawFrame(b0 byte, masked bool, p []byte) []byte {
	h := ws.Header{Length: int64(len(p)), Masked: masked, Mask: [4]byte{1, 2, 3, 4}}
	var hb [MaxHeaderSize]byte
	n := PutHeader(hb[:], h)
	hb[0] = b0
	out := append(hb[:n:n], p...)
	if masked {
		ws.Cipher(out[n:], h.Mask, 0)
	}
	return out
}

func closeFrame(code uint16, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, code)
	return rawFrame(0x88, true, append(p, reason...))
}

func TestDecoderErrors(t *testing.T) {
	const (
		fin    = 0x80
		proto  = ws.StatusProtocolError
		ok     = ws.StatusCode(0)
		server = Server
		client = Client
	)
	bin := func(b0 byte, p string) []byte { return rawFrame(b0, true, []byte(p)) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name   string
		role   Role
		text   bool
		max    int64
		stream []byte
		code   ws.StatusCode
	}{
		{"rsv1", server, false, 0, bin(fin|0x40|2, "x"), proto},
		{"rsv2", server, false, 0, bin(fin|0x20|2, "x"), proto},
		{"rsv3 on ping", server, false, 0, bin(fin|0x10|9, ""), proto},
		{"opcode 3", server, false, 0, bin(fin|3, "x"), proto},
		{"opcode 7", server, false, 0, bin(fin|7, ""), proto},
		{"opcode 0xb", server, false, 0, bin(fin|0xb, ""), proto},
		{"opcode 0xf", server, false, 0, bin(fin|0xf, "x"), proto},
		{"server, unmasked", server, false, 0, rawFrame(fin|2, false, []byte("x")), proto},
		{"server, unmasked empty", server, false, 0, []byte{fin | 2, 0}, proto},
		{"client, masked", client, false, 0, rawFrame(fin|2, true, []byte("x")), proto},
		{"client, unmasked", client, false, 0, rawFrame(fin|2, false, []byte("x")), ok},
		{"ping 126 bytes", server, false, 0, bin(fin|9, strings.Repeat("p", 126)), proto},
		{"close 200 bytes", server, false, 0, bin(fin|8, strings.Repeat("p", 200)), proto},
		{"ping 125 bytes", server, false, 0, bin(fin|9, strings.Repeat("p", 125)), ok},
		{"ping not fin", server, false, 0, bin(9, "p"), proto},
		{"pong not fin", server, false, 0, bin(0xa, ""), proto},
		{"close not fin", server, false, 0, bin(8, ""), proto},
		{"continuation first", server, false, 0, bin(0, "x"), proto},
		{"final continuation first", server, false, 0, bin(fin, ""), proto},
		{"continuation after a whole message", server, false, 0, cat(bin(fin|2, "a"), bin(fin, "b")), proto},
		{"binary inside binary", server, false, 0, cat(bin(2, "a"), bin(fin|2, "b")), proto},
		{"text inside binary", server, true, 0, cat(bin(2, "a"), bin(fin|1, "b")), proto},
		{"binary inside text", server, true, 0, cat(bin(1, "a"), bin(9|fin, ""), bin(fin|2, "b")), proto},
		{"text not allowed", server, false, 0, bin(fin|1, "hi"), ws.StatusUnsupportedData},
		{"text fragment not allowed", server, false, 0, bin(1, ""), ws.StatusUnsupportedData},
		{"text allowed", server, true, 0, bin(fin|1, "hi"), ok},
		{"payload over max", server, false, 10, bin(fin|2, "01234567890"), ws.StatusMessageTooBig},
		{"continuation over max", server, false, 10, cat(bin(2, "0"), bin(fin, "01234567890")), ws.StatusMessageTooBig},
		{"payload at max", server, false, 10, bin(fin|2, "0123456789"), ok},
		{"huge payload, max set", server, false, 1 << 20, []byte{fin | 2, 0xff, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}, ws.StatusMessageTooBig},
		{"max ignores control frames", server, false, 1, bin(fin|9, "ping"), ok},
		{"64-bit length MSB", server, false, 0, []byte{fin | 2, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, proto},
		{"16-bit length not minimal", server, false, 0, []byte{fin | 2, 0xfe, 0, 5, 1, 2, 3, 4, 0, 0, 0, 0, 0}, proto},
		{"64-bit length not minimal", server, false, 0, []byte{fin | 2, 0xff, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4}, proto},
		{"close 1 byte", server, false, 0, bin(fin|8, "\x03"), proto},
		{"close empty", server, false, 0, bin(fin|8, ""), ok},
		{"close 0", server, false, 0, closeFrame(0, ""), proto},
		{"close 999", server, false, 0, closeFrame(999, ""), proto},
		{"close 1004", server, false, 0, closeFrame(1004, ""), proto},
		{"close 1005", server, false, 0, closeFrame(1005, ""), proto},
		{"close 1006", server, false, 0, closeFrame(1006, ""), proto},
		{"close 1015", server, false, 0, closeFrame(1015, ""), proto},
		{"close 1016", server, false, 0, closeFrame(1016, ""), proto},
		{"close 2999", server, false, 0, closeFrame(2999, ""), proto},
		{"close 5000", server, false, 0, closeFrame(5000, ""), proto},
		{"close 65535", server, false, 0, closeFrame(65535, ""), proto},
		{"close 1000", server, false, 0, closeFrame(1000, "fine"), ok},
		{"close 1001", server, false, 0, closeFrame(1001, ""), ok},
		{"close 1011", server, false, 0, closeFrame(1011, ""), ok},
		{"close 1012", server, false, 0, closeFrame(1012, ""), ok},
		{"close 1014", server, false, 0, closeFrame(1014, ""), ok},
		{"close 3000", server, false, 0, closeFrame(3000, ""), ok},
		{"close 4999", server, false, 0, closeFrame(4999, "ünïcode"), ok},
		{"close reason not UTF-8", server, false, 0, closeFrame(1000, "ok\xff"), ws.StatusInvalidFramePayloadData},
		{"close reason cut rune", server, false, 0, closeFrame(1000, "\xc3"), ws.StatusInvalidFramePayloadData},
		{"close bad code and bad UTF-8", server, false, 0, closeFrame(1004, "\xff"), proto},
	} {
		mk := func() Decoder { return Decoder{Role: tc.role, AllowText: tc.text, MaxPayload: tc.max} }
		// Whole, and byte by byte: the same outcome.
		cuts := make([]int, len(tc.stream)-1)
		for i := range cuts {
			cuts[i] = i + 1
		}
		for _, cs := range [][]int{nil, cuts} {
			res := decodeChunks(t, mk, tc.stream, cs)
			if tc.code == ok {
				if res.err != nil {
					t.Errorf("%s: %v, want no error", tc.name, res.err)
				}
				continue
			}
			var ce *CloseError
			if !errors.As(res.err, &ce) {
				t.Errorf("%s: error %v, want a CloseError %d", tc.name, res.err, tc.code)
				continue
			}
			if ce.Code != tc.code || ce.Reason == "" || len(ce.Reason) > MaxControlPayload-2 {
				t.Errorf("%s: CloseError{%d, %q}, want code %d", tc.name, ce.Code, ce.Reason, tc.code)
			}
			for _, e := range res.events {
				if e.op == ws.OpClose {
					t.Errorf("%s: rejected close frame reached OnControl", tc.name)
				}
			}
		}
	}
}

func TestDecoderNoAllocs(t *testing.T) {
	specs := specStream()
	for _, rc := range roleCases() {
		pristine := encode(t, specs, rc.masked)
		buf := make([]byte, len(pristine))
		var d Decoder
		var h nopHandler
		allocs := testing.AllocsPerRun(20, func() {
			copy(buf, pristine)
			d = Decoder{Role: rc.role, AllowText: true}
			for i := 0; i < len(buf); i += 1000 {
				if err := d.Feed(buf[i:min(i+1000, len(buf))], h); err != nil {
					t.Fatal(err)
				}
			}
			copy(buf, pristine)
			d = Decoder{Role: rc.role, AllowText: true}
			for i := 0; i < len(buf); i += 3 { // partial headers and control frames
				if err := d.Feed(buf[i:min(i+3, len(buf))], h); err != nil {
					t.Fatal(err)
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per stream, want 0", rc.name, allocs)
		}
	}
}

type nopHandler struct{}

func (nopHandler) OnData(ws.OpCode, []byte, bool) error { return nil }
func (nopHandler) OnControl(ws.OpCode, []byte) error    { return nil }

// FuzzDecoder checks that a split anywhere does not change what a decoder
// makes of arbitrary bytes, and that it never panics.
func FuzzDecoder(f *testing.F) {
	specs := specStream()[:10]
	specs[7].payload = payload(200, 9) // keep the seed small
	f.Add(encode(f, specs, true), uint16(3), uint8(2))
	f.Add(encode(f, specs, false), uint16(40), uint8(3))
	f.Add(closeFrame(1000, "bye"), uint16(7), uint8(0))
	f.Add(closeFrame(1000, "\xff"), uint16(8), uint8(0))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4, 5}, uint16(5), uint8(4<<3))
	f.Add([]byte{0x02, 0x80, 1, 2, 3, 4, 0x89, 0x81, 0, 0, 0, 0, 'x', 0x80, 0x80, 0, 0, 0, 0}, uint16(9), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, split uint16, flags uint8) {
		mk := func() Decoder {
			return Decoder{Role: Role(flags & 1), AllowText: flags&2 != 0, MaxPayload: int64(flags>>2) * 4}
		}
		whole := decodeChunks(t, mk, data, nil)
		at := int(split) % (len(data) + 1)
		if d := decodeChunks(t, mk, data, []int{at}).diff(whole); d != "" {
			t.Fatalf("split at %d: %s", at, d)
		}
		if len(data) <= 512 {
			cuts := make([]int, 0, len(data))
			for i := 1; i < len(data); i++ {
				cuts = append(cuts, i)
			}
			if d := decodeChunks(t, mk, data, cuts).diff(whole); d != "" {
				t.Fatalf("byte by byte: %s", d)
			}
		}
	})
}
