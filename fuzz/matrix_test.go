package fuzz

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// matrixEnv is a recording server and a proxy in front of it for one case.
type matrixEnv struct {
	vnc  *rfbtest.Server
	addr string
}

func newMatrixEnv(t *testing.T, tweak func(*proxy.Config)) *matrixEnv {
	t.Helper()
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})
	cfg := targetConfig("tcp://"+vnc.Addr(), rfbparse.User)
	if tweak != nil {
		tweak(&cfg)
	}
	_, addr, stop, err := startProxy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &matrixEnv{vnc: vnc, addr: addr}
}

// upgradeCase is a refused upgrade: the head sent and the status expected.
type upgradeCase struct {
	name   string
	head   string
	status int
	header [2]string // a response header field that must be present
}

func longHeader(n int) string {
	return "X-Pad: " + strings.Repeat("a", n)
}

func manyHeaders(n int) []string {
	var h []string
	for i := range n {
		h = append(h, "X-H"+strings.Repeat("i", i%5)+string(rune('a'+i%26))+": 1")
	}
	return h
}

func replace(head, old, new string) string { return strings.Replace(head, old, new, 1) }

var upgradeCases = []upgradeCase{
	{name: "method POST", head: replace(upgradeHead("/websockify"), "GET", "POST"), status: 405, header: [2]string{"Allow", "GET"}},
	{name: "method PUT", head: replace(upgradeHead("/websockify"), "GET", "PUT"), status: 405},
	{name: "missing key", head: replace(upgradeHead("/websockify"), "Sec-WebSocket-Key: "+testKey+"\r\n", ""), status: 400},
	{name: "short key", head: replace(upgradeHead("/websockify"), testKey, "dGhlIHNhbXBsZQ=="), status: 400},
	{name: "key not base64", head: replace(upgradeHead("/websockify"), testKey, "!!!!!!!!!!!!!!!!!!!!!!=="), status: 400},
	{name: "version 8", head: replace(upgradeHead("/websockify"), "Version: 13", "Version: 8"), status: 426, header: [2]string{"Sec-Websocket-Version", "13"}},
	{name: "missing version", head: replace(upgradeHead("/websockify"), "Sec-WebSocket-Version: 13\r\n", ""), status: 426},
	{name: "missing Upgrade", head: replace(upgradeHead("/websockify"), "Upgrade: websocket\r\n", ""), status: 426},
	{name: "Upgrade h2c", head: replace(upgradeHead("/websockify"), "Upgrade: websocket", "Upgrade: h2c"), status: 400},
	{name: "Connection keep-alive", head: replace(upgradeHead("/websockify"), "Connection: Upgrade", "Connection: keep-alive"), status: 400},
	{name: "missing Host", head: replace(upgradeHead("/websockify"), "Host: 127.0.0.1\r\n", ""), status: 400},
	{name: "repeated Host", head: upgradeHead("/websockify", "Host: evil"), status: 400},
	{name: "HTTP/1.0", head: replace(upgradeHead("/websockify"), "HTTP/1.1", "HTTP/1.0"), status: 400},
	{name: "HTTP/2.0", head: replace(upgradeHead("/websockify"), "HTTP/1.1", "HTTP/2.0"), status: 505},
	{name: "oversize header", head: upgradeHead("/websockify", longHeader(9000)), status: 431},
	{name: "too many header lines", head: upgradeHead("/websockify", manyHeaders(120)...), status: 431},
	{name: "foreign Origin", head: upgradeHead("/websockify", "Origin: https://evil.example.com"), status: 403},
	{name: "null Origin", head: upgradeHead("/websockify", "Origin: null"), status: 403},
	{name: "bad query escape", head: upgradeHead("/websockify?token=%zz"), status: 400},
	{name: "bad path escape", head: upgradeHead("/web%zzsockify"), status: 400},
	{name: "absolute-form target", head: upgradeHead("http://127.0.0.1/websockify"), status: 400},
	{name: "obsolete line folding", head: upgradeHead("/websockify", "X-A: 1", " folded"), status: 400},
	{name: "space before colon", head: upgradeHead("/websockify", "X-A : 1"), status: 400},
	{name: "request body", head: upgradeHead("/websockify", "Content-Length: 5"), status: 400},
	{name: "binary garbage", head: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", status: 400},
	{name: "messages route without client_id", head: upgradeHead("/v1/stream/messages/browser_session/s1"), status: 400},
}

// TestBadInputMatrix sends bad upgrades, bad frames, bad RFB and bad
// message-channel JSON, and checks the exact HTTP status, close code or error
// message, and that the recording server saw nothing it should not have.
func TestBadInputMatrix(t *testing.T) {
	cases := 0
	t.Run("upgrade", func(t *testing.T) {
		e := newMatrixEnv(t, func(c *proxy.Config) { c.AllowedOrigins = []string{"https://app.example.com"} })
		for _, tc := range upgradeCases {
			cases++
			t.Run(tc.name, func(t *testing.T) {
				v, resp := openViewer(t, e.addr, tc.head)
				if v != nil {
					v.c.Close()
					t.Fatalf("upgrade accepted, want %d", tc.status)
				}
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
				}
				if tc.header[0] != "" && resp.Header.Get(tc.header[0]) != tc.header[1] {
					t.Fatalf("%s: %q, want %q", tc.header[0], resp.Header.Get(tc.header[0]), tc.header[1])
				}
			})
		}
		// The refusals come before any dial: the server saw no connection.
		if n := len(e.vnc.Conns()); n != 0 {
			t.Fatalf("the recording server saw %d connections", n)
		}
	})

	t.Run("frames", func(t *testing.T) {
		for _, tc := range frameCases() {
			cases++
			t.Run(tc.name, func(t *testing.T) { runRelayCase(t, tc) })
		}
	})
	t.Run("rfb", func(t *testing.T) {
		for _, tc := range rfbCases() {
			cases++
			t.Run(tc.name, func(t *testing.T) { runRelayCase(t, tc) })
		}
	})
	t.Run("handshake", func(t *testing.T) {
		for _, tc := range handshakeCases() {
			cases++
			t.Run(tc.name, func(t *testing.T) { runHandshakeCase(t, tc) })
		}
		cases++
		t.Run("server offers TLS (3.3)", testServerEncrypted)
	})
	t.Run("messages", func(t *testing.T) {
		for _, tc := range messageCases() {
			cases++
			t.Run(tc.name, func(t *testing.T) { runMessageCase(t, tc) })
		}
	})
	if cases < 40 {
		t.Fatalf("only %d cases", cases)
	}
	t.Logf("%d cases", cases)
}

// relayCase is sent after a complete RFB handshake and a sentinel message
// that must reach the server; bad holds the offending bytes, followed by a
// message that must not.
type relayCase struct {
	name string
	bad  []byte
	code int
	// framePayload sends the sentinel, bad and the forbidden message in one
	// frame (bad RFB rather than bad framing).
	framePayload bool
}

// sentinel is an incremental update request the server (HoldIncremental)
// records without answering.
var sentinel = fbur(true, 7, 7, 1, 1)

// forbiddenAfter must never reach the server: a key-down and an update request.
var forbiddenAfter = cat(keyEv(true, 'z'), fbur(false, 0, 0, 1, 1))

func hdr(b0, b1 byte, rest ...byte) []byte { return append([]byte{b0, b1}, rest...) }

var maskKey = []byte{1, 2, 3, 4}

func frameCases() []relayCase {
	big := make([]byte, 0, 14)
	big = append(big, 0x82, 0xff)
	big = binary.BigEndian.AppendUint64(big, 1<<20+1)
	big = append(big, maskKey...)
	msb := append(hdr(0x82, 0xff), 0x80, 0, 0, 0, 0, 0, 0, 1)
	msb = append(msb, maskKey...)
	nonMin16 := append(hdr(0x82, 0xfe, 0, 5), maskKey...)
	nonMin64 := append(append(hdr(0x82, 0xff), 0, 0, 0, 0, 0, 0, 0, 5), maskKey...)
	return []relayCase{
		{name: "unmasked frame", bad: cat([]byte{0x82, 0x08}, keyEv(true, 'a')), code: 1002},
		{name: "RSV1 set", bad: frameRaw(0xc2, keyEv(true, 'a')), code: 1002},
		{name: "RSV3 set", bad: frameRaw(0x92, keyEv(true, 'a')), code: 1002},
		{name: "reserved opcode 3", bad: frame(3, keyEv(true, 'a'), true), code: 1002},
		{name: "reserved control opcode 11", bad: frame(11, nil, true), code: 1002},
		{name: "fragmented ping", bad: frame(ws.OpPing, []byte("x"), false), code: 1002},
		{name: "control frame over 125 bytes", bad: frame(ws.OpPing, bytes.Repeat([]byte{1}, 126), true), code: 1002},
		{name: "64-bit length with top bit", bad: msb, code: 1002},
		{name: "16-bit length not minimal", bad: nonMin16, code: 1002},
		{name: "64-bit length not minimal", bad: nonMin64, code: 1002},
		{name: "frame over max payload", bad: big, code: 1009},
		{name: "close payload of 1 byte", bad: frame(ws.OpClose, []byte{3}, true), code: 1002},
		{name: "close code 1005", bad: closeFrame(1005, ""), code: 1002},
		{name: "close code 999", bad: closeFrame(999, ""), code: 1002},
		{name: "close code 5000", bad: closeFrame(5000, ""), code: 1002},
		{name: "close reason not UTF-8", bad: closeFrame(1000, "\xff\xfe"), code: 1007},
		{name: "text frame on the VNC route", bad: frame(ws.OpText, keyEv(true, 'a'), true), code: 1003},
		{name: "continuation without a message", bad: frame(ws.OpContinuation, keyEv(true, 'a'), true), code: 1002},
		{name: "data frame inside a fragmented message", bad: cat(frame(ws.OpBinary, keyEv(true, 'a')[:4], false), frame(ws.OpBinary, keyEv(true, 'a'), true)), code: 1002},
	}
}

// frameRaw builds a masked frame with first byte b0 as given.
func frameRaw(b0 byte, payload []byte) []byte {
	f := frame(ws.OpBinary, payload, true)
	f[0] = b0
	return f
}

func rfbCases() []relayCase {
	neg := []byte{tCutText, 0, 0, 0, 0x80, 0, 0, 0}
	over := []byte{tCutText, 0, 0, 0, 0x01, 0, 0, 1}
	return []relayCase{
		{name: "unknown message type 7", bad: []byte{7, 0, 0, 0}, code: 1008, framePayload: true},
		{name: "unknown message type 200", bad: []byte{200}, code: 1008, framePayload: true},
		{name: "ClientCutText length -2^31", bad: neg, code: 1008, framePayload: true},
		{name: "ClientCutText over 16 MiB", bad: over, code: 1008, framePayload: true},
		{name: "Fence payload over 64", bad: fenceMsg(0, bytes.Repeat([]byte{0}, 65)), code: 1008, framePayload: true},
		{name: "unknown QEMU subtype", bad: []byte{tQEMU, 9, 0, 0}, code: 1008, framePayload: true},
		{name: "unknown QEMU audio operation", bad: []byte{tQEMU, 1, 0, 7}, code: 1008, framePayload: true},
	}
}

// runRelayCase: handshake, sentinel, then the offending bytes; the close
// code must be tc.code and the server must have recorded the sentinel only.
func runRelayCase(t *testing.T, tc relayCase) {
	e := newMatrixEnv(t, nil)
	v, resp := openViewer(t, e.addr, upgradeHead("/websockify"))
	if v == nil {
		t.Fatalf("upgrade refused: %d", resp.StatusCode)
	}
	defer v.c.Close()
	if err := v.handshake(); err != nil {
		t.Fatal(err)
	}
	var out []byte
	if tc.framePayload {
		// The sentinel and the offending message in one frame: what comes
		// before the bad message passes, nothing after it.
		out = frame(ws.OpBinary, cat(sentinel, tc.bad, forbiddenAfter), true)
	} else {
		out = cat(frame(ws.OpBinary, sentinel, true), tc.bad, frame(ws.OpBinary, forbiddenAfter, true))
	}
	if err := v.write(out); err != nil {
		t.Fatal(err)
	}
	finishCase(t, e, v, tc.code, [][]byte{sentinel})
}

// finishCase reads to the end of the session and checks the close code and
// exactly which messages the server recorded.
func finishCase(t *testing.T, e *matrixEnv, v *viewer, code int, want [][]byte) {
	t.Helper()
	if err := v.drain(); err != nil {
		t.Fatalf("session did not end: %v", err)
	}
	if v.frameErr != nil || v.afterClose {
		t.Fatalf("bad frames from the proxy: %v, after close %v", v.frameErr, v.afterClose)
	}
	if v.closeCode != code {
		t.Fatalf("close %d %q, want %d", v.closeCode, v.closeWhy, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range e.vnc.Conns() {
		if err := c.WaitDone(ctx); err != nil {
			t.Fatalf("upstream still open: %v", err)
		}
	}
	got := e.vnc.Messages()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = bytes.Equal(got[i].Raw, want[i])
	}
	if !ok {
		var raws [][]byte
		for _, m := range got {
			raws = append(raws, m.Raw)
		}
		t.Fatalf("server recorded % x, want % x", raws, want)
	}
}

// handshakeCase sends client handshake bytes after the server's version.
type handshakeCase struct {
	name   string
	steps  [][]byte // frames sent, each after reading the server's next item
	reads  []int    // RFB bytes to read before each step
	code   int
	reason string
}

func handshakeCases() []handshakeCase {
	return []handshakeCase{
		{name: "garbage instead of ProtocolVersion", steps: [][]byte{[]byte("HELLO WORLD!")}, reads: []int{12}, code: 1008, reason: "malformed ProtocolVersion"},
		{name: "ProtocolVersion 4.0", steps: [][]byte{[]byte("RFB 004.000\n")}, reads: []int{12}, code: 1008, reason: "malformed ProtocolVersion"},
		{name: "security type VeNCrypt", steps: [][]byte{[]byte("RFB 003.008\n"), {19}}, reads: []int{12, 2}, code: 1008, reason: "security type 19 (VeNCrypt) cannot be inspected"},
		{name: "security type TLS", steps: [][]byte{[]byte("RFB 003.008\n"), {18}}, reads: []int{12, 2}, code: 1008, reason: "security type 18 (TLS) cannot be inspected"},
		{name: "ClientInit before SecurityResult", steps: [][]byte{[]byte("RFB 003.008\n"), {1, 1}}, reads: []int{12, 2}, code: 1008, reason: "client sent data out of turn in the handshake"},
		{name: "message before ServerInit", steps: [][]byte{[]byte("RFB 003.008\n"), cat([]byte{1}, keyEv(true, 'a'))}, reads: []int{12, 2}, code: 1008, reason: "client sent data out of turn in the handshake"},
	}
}

func runHandshakeCase(t *testing.T, tc handshakeCase) {
	e := newMatrixEnv(t, nil)
	v, resp := openViewer(t, e.addr, upgradeHead("/websockify"))
	if v == nil {
		t.Fatalf("upgrade refused: %d", resp.StatusCode)
	}
	defer v.c.Close()
	for i, s := range tc.steps {
		if _, err := v.readRFB(tc.reads[i]); err != nil {
			t.Fatal(err)
		}
		if err := v.write(frame(ws.OpBinary, s, true)); err != nil {
			t.Fatal(err)
		}
	}
	finishCase(t, e, v, tc.code, nil)
	if v.closeWhy != tc.reason {
		t.Fatalf("reason %q, want %q", v.closeWhy, tc.reason)
	}
}

// testServerEncrypted: a 3.3 server that imposes TLS cannot be inspected;
// the viewer is closed with 1008 and the server gets nothing past the
// client's version.
func testServerEncrypted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	extra := make(chan int, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			extra <- -1
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write([]byte("RFB 003.003\n"))
		var ver [12]byte
		if _, err := io.ReadFull(c, ver[:]); err != nil {
			extra <- -1
			return
		}
		_, _ = c.Write([]byte{0, 0, 0, 18})
		rest, _ := io.ReadAll(c)
		extra <- len(rest)
	}()
	_, addr, stop, err := startProxy(targetConfig("tcp://"+ln.Addr().String(), rfbparse.User))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	v, resp := openViewer(t, addr, upgradeHead("/websockify"))
	if v == nil {
		t.Fatalf("upgrade refused: %d", resp.StatusCode)
	}
	defer v.c.Close()
	if _, err := v.readRFB(12); err != nil {
		t.Fatal(err)
	}
	if err := v.write(frame(ws.OpBinary, []byte("RFB 003.003\n"), true)); err != nil {
		t.Fatal(err)
	}
	if err := v.drain(); err != nil {
		t.Fatal(err)
	}
	if v.closeCode != 1008 || !strings.Contains(v.closeWhy, "security type 18") {
		t.Fatalf("close %d %q, want 1008 security type 18", v.closeCode, v.closeWhy)
	}
	if n := <-extra; n != 0 {
		t.Fatalf("the server received %d bytes after the client's version", n)
	}
}

// messageCase sends one message-channel frame (or several) and expects an
// error message, after which the channel still works.
type messageCase struct {
	name    string
	frames  [][]byte
	failed  string // failed_kind expected ("" for none)
	message string
}

func textFrames(parts ...[]byte) [][]byte {
	var fs [][]byte
	for i, p := range parts {
		op := ws.OpText
		if i > 0 {
			op = ws.OpContinuation
		}
		fs = append(fs, frame(op, p, i == len(parts)-1))
	}
	return fs
}

func messageCases() []messageCase {
	big := strings.Repeat("a", 1<<20+1)
	paste, _ := json.Marshal(map[string]string{"kind": "clipboard-paste", "text": big})
	chunk := bytes.Repeat([]byte("b"), 800<<10)
	return []messageCase{
		{name: "bad JSON", frames: textFrames([]byte(`{"kind":`)), message: "bad JSON message"},
		{name: "not an object", frames: textFrames([]byte(`[1,2]`)), message: "bad JSON message"},
		{name: "unknown kind", frames: textFrames([]byte(`{"kind":"reboot"}`)), failed: "reboot", message: "unknown message kind"},
		{name: "missing kind", frames: textFrames([]byte(`{}`)), message: "unknown message kind"},
		{name: "paste without text", frames: textFrames([]byte(`{"kind":"clipboard-paste"}`)), failed: "clipboard-paste", message: "text is required"},
		{name: "clipboard answer without text", frames: textFrames([]byte(`{"kind":"ask-for-clipboard-response","text":null}`)), failed: "ask-for-clipboard-response", message: "text is required"},
		{name: "text over 1 MiB", frames: textFrames(paste), failed: "clipboard-paste", message: "text over 1 MiB"},
		{name: "message over the limit", frames: textFrames(chunk, chunk), message: "message too large"},
	}
}

func runMessageCase(t *testing.T, tc messageCase) {
	e := newMatrixEnv(t, nil)
	v, resp := openViewer(t, e.addr, upgradeHead("/v1/stream/messages/browser_session/s1?client_id=c1"))
	if v == nil {
		t.Fatalf("upgrade refused: %d", resp.StatusCode)
	}
	defer v.c.Close()
	next := func() map[string]any {
		t.Helper()
		m, err := v.nextMessage()
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(m, &out); err != nil {
			t.Fatalf("message %q: %v", m, err)
		}
		return out
	}
	if m := next(); m["kind"] != "interactor" || m["interactor"] != "user" {
		t.Fatalf("first message %v", m)
	}
	for _, f := range tc.frames {
		if err := v.write(f); err != nil {
			t.Fatal(err)
		}
	}
	m := next()
	failed, _ := m["failed_kind"].(string)
	if m["kind"] != "error" || m["message"] != tc.message || failed != tc.failed {
		t.Fatalf("got %v, want error %q (failed_kind %q)", m, tc.message, tc.failed)
	}
	// Not a disconnect: the channel still answers.
	if err := v.write(frame(ws.OpText, []byte(`{"kind":"take-control"}`), true)); err != nil {
		t.Fatal(err)
	}
	if m := next(); m["kind"] != "interactor" || m["interactor"] != "user" {
		t.Fatalf("after the error: %v", m)
	}
	v.sendClose(binary.BigEndian.AppendUint16(nil, 1000))
	// The message channel never dials: the server saw nothing.
	finishCase(t, e, v, 1000, nil)
	if n := len(e.vnc.Conns()); n != 0 {
		t.Fatalf("the recording server saw %d connections", n)
	}
}
