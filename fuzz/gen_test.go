package fuzz

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/proxytest/teststack"
)

// The seed corpus under testdata/fuzz is written by TestGenerateSeeds:
//
//	VNCEDGE_GEN_SEEDS=1 go test -run TestGenerateSeeds ./fuzz/
//
// It records the server side of real Xvnc handshakes (3.3, 3.7 and 3.8) and
// uses the noVNC session recorded through vncedge
// (rfbparse/testdata/novnc-1.3-session.bin) when present, else the message
// sequence noVNC 1.3 sends.

// noVNCEncodings is the SetEncodings list of noVNC 1.3.
var noVNCEncodings = []int32{
	1, 7, -260, 5, 2, 0, // CopyRect, Tight, TightPNG, Hextile, RRE, Raw
	-26, -1, // JPEG quality, compression level
	-223, -224, -239, -258, -307, -308, -309, -312, -313, -316, // pseudo-encodings
	int32(-0x3f5e1a32), // ExtendedClipboard (0xc0a1e5ce)
}

// noVNCMessages is what noVNC 1.3 sends after ClientInit in a short session:
// setup, pointer moves, a click, typing, Ctrl+C, clipboard, a Ctrl+O attempt,
// a right click, wheel, fence and continuous updates, QEMU keys.
func noVNCMessages() [][]byte {
	var m [][]byte
	add := func(b ...[]byte) { m = append(m, b...) }
	add(setPF(), setEnc(noVNCEncodings...), fbur(false, 0, 0, 1024, 768))
	for i := range 12 {
		add(ptrEv(0, uint16(100+i*9), uint16(200+i*4)))
	}
	add(fbur(true, 0, 0, 1024, 768), ptrEv(1, 300, 240), ptrEv(0, 300, 240))
	for _, c := range "Hi there" {
		ks := uint32(c)
		if c >= 'A' && c <= 'Z' {
			add(keyEv(true, ksShiftL))
		}
		add(keyEv(true, ks), keyEv(false, ks))
		if c >= 'A' && c <= 'Z' {
			add(keyEv(false, ksShiftL))
		}
	}
	add(keyEv(true, ksControlL), keyEv(true, 'c'), keyEv(false, 'c'), keyEv(false, ksControlL))
	add(cutText("copied from the page"))
	add(keyEv(true, ksControlL), keyEv(true, 'o'), keyEv(false, 'o'), keyEv(false, ksControlL))
	add(ptrEv(4, 400, 300), ptrEv(0, 400, 300), ptrEv(8, 400, 300), ptrEv(0, 400, 300))
	add(ptrExt(0, 1, 401, 301), ptrExt(0, 0, 401, 301))
	add(fenceMsg(0x80000003, []byte{1, 2}), ecu(true, 0, 0, 1024, 768))
	add(qemuKey(true, ksControlL, 0x1d), qemuKey(true, 'o', 0x18), qemuKey(false, 'o', 0x18), qemuKey(false, ksControlL, 0x1d))
	add(fbur(true, 0, 0, 1024, 768))
	return m
}

// captureXvnc runs the client side of a handshake against a real Xvnc with
// version clientVer and returns the server's bytes up to and including
// ServerInit, and the client's.
func captureXvnc(t *testing.T, port int, clientVer string) (server, client []byte) {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("reading %d bytes from Xvnc: %v", n, err)
		}
		server = append(server, b...)
		return b
	}
	send := func(b []byte) {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		client = append(client, b...)
	}
	read(12)
	send([]byte(clientVer))
	if clientVer == "RFB 003.003\n" {
		if t := binary.BigEndian.Uint32(read(4)); t != 1 {
			panic(fmt.Sprintf("Xvnc 3.3 security type %d", t))
		}
	} else {
		n := read(1)[0]
		types := read(int(n))
		if bytes.IndexByte(types, 1) < 0 {
			t.Fatalf("Xvnc offers %v", types)
		}
		send([]byte{1})
		if clientVer == "RFB 003.008\n" {
			read(4)
		}
	}
	send([]byte{1})
	si := read(24)
	read(int(binary.BigEndian.Uint32(si[20:])))
	return server, client
}

// corpusFile formats a seed in Go's fuzz corpus format.
func corpusFile(args ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case uint8:
			fmt.Fprintf(&b, "uint8(%d)\n", v)
		default:
			panic(fmt.Sprintf("corpusFile: %T", a))
		}
	}
	return b.Bytes()
}

func TestGenerateSeeds(t *testing.T) {
	if os.Getenv("VNCEDGE_GEN_SEEDS") != "1" {
		t.Skip("set VNCEDGE_GEN_SEEDS=1 to rewrite the seed corpus")
	}
	write := func(target, name string, args ...any) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), corpusFile(args...), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Real Xvnc handshakes, server side and client side.
	x := teststack.StartXvnc(t)
	type hs struct{ name, ver string }
	xvnc := map[string][2][]byte{}
	for _, h := range []hs{{"38", "RFB 003.008\n"}, {"37", "RFB 003.007\n"}, {"33", "RFB 003.003\n"}} {
		srv, cli := captureXvnc(t, x.Port, h.ver)
		xvnc[h.name] = [2][]byte{srv, cli}
	}

	// The client stream of a noVNC session: recorded through vncedge when
	// the recording exists, else noVNC 1.3's message sequence.
	msgs := noVNCMessages()
	session := cat(msgs...)
	client := cat(xvnc["38"][1], session)
	source := "generated"
	if rec, err := os.ReadFile(filepath.Join("..", "rfbparse", "testdata", "novnc-1.3-session.bin")); err == nil && bytes.HasPrefix(rec, []byte("RFB 003.")) {
		client, source = rec, "recorded"
		session = nil
		if len(rec) > 14 {
			session = rec[14:] // after version, security choice and ClientInit
		}
	}
	t.Logf("noVNC session: %s, %d bytes", source, len(client))

	// FuzzRFBDifferential: the session against each real Xvnc handshake.
	for name, x := range xvnc {
		cli := cat(x[1], session)
		write("FuzzRFBDifferential", "xvnc-"+name+"-novnc", cli, x[0], uint16(len(x[1])+5), uint8(2))
		write("FuzzRFBDifferential", "xvnc-"+name+"-novnc-agent-bytewise", cli, x[0], uint16(0), uint8(2|1|4))
	}
	write("FuzzRFBDifferential", "novnc-session", session, []byte(nil), uint16(37), uint8(0))
	write("FuzzRFBDifferential", "novnc-session-agent", session, []byte(nil), uint16(101), uint8(1))
	write("FuzzRFBDifferential", "novnc-full-vncauth", cat([]byte("RFB 003.008\n\x02"), bytes.Repeat([]byte{7}, 16), []byte{1}, session), []byte(nil), uint16(20), uint8(2|0x30))

	// FuzzPolicyProperty: the session under each policy variant.
	for i, mode := range []uint8{0, 1, 2, 4, 8, 16 | 8, 32} {
		write("FuzzPolicyProperty", fmt.Sprintf("novnc-session-%d", i), session, uint16(len(session)/2+i), mode)
	}

	// FuzzFrames: the session as noVNC frames it, one message per frame,
	// then a ping and a close.
	var framed []byte
	for _, m := range msgs {
		framed = append(framed, frame(ws.OpBinary, m, true)...)
	}
	framed = append(framed, frame(ws.OpPing, []byte("k"), true)...)
	framed = append(framed, closeFrame(1000, "bye")...)
	write("FuzzFrames", "novnc-session", framed, uint16(3), uint16(97), uint8(0))
	write("FuzzFrames", "novnc-session-limit", framed, uint16(14), uint16(15), uint8(2))
	write("FuzzFrames", "fragmented-text", cat(frame(ws.OpText, []byte(`{"kind":`), false), frame(ws.OpPing, nil, true),
		frame(ws.OpContinuation, []byte(`"take-control"}`), true)), uint16(5), uint16(9), uint8(1))

	// FuzzUpgrade: the requests noVNC 1.3 (Chrome) and 1.7 (Firefox) send.
	novnc13 := "GET /v1/stream/vnc/browser_session/pbs_1?client_id=abc&apikey=k HTTP/1.1\r\nHost: edge.example.com\r\n" +
		"Connection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n" +
		"Upgrade: websocket\r\nOrigin: https://app.example.com\r\nSec-WebSocket-Version: 13\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" +
		"Sec-WebSocket-Protocol: binary\r\n\r\n"
	novnc17 := "GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:6080\r\nUser-Agent: Mozilla/5.0 (Macintosh; Intel Mac OS X 14.1; rv:121.0) Gecko/20100101 Firefox/121.0\r\n" +
		"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:6080\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\nPragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n"
	firstFrame := frame(ws.OpBinary, []byte("RFB 003.008\n"), true)
	write("FuzzUpgrade", "novnc-1.3-chrome", []byte(novnc13), uint16(100))
	write("FuzzUpgrade", "novnc-1.7-firefox-pipelined", append([]byte(novnc17), firstFrame...), uint16(300))
	write("FuzzUpgrade", "bare-lf", []byte("GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Key: "+testKey+"\nSec-WebSocket-Version: 13\n\n"), uint16(7))
	for i, tc := range upgradeCases[:12] {
		write("FuzzUpgrade", fmt.Sprintf("refused-%02d", i), []byte(tc.head), uint16(i*13))
	}

	// FuzzEndToEnd: the session framed (user and agent, several frame
	// sizes), and as raw bytes.
	write("FuzzEndToEnd", "novnc-session-frames", session, uint8(6<<2))
	write("FuzzEndToEnd", "novnc-session-agent-frames8", session, uint8(1|3<<2))
	write("FuzzEndToEnd", "novnc-session-frames1", session, uint8(0))
	write("FuzzEndToEnd", "novnc-session-raw-framed", framed, uint8(2))
	write("FuzzEndToEnd", "novnc-session-raw-framed-agent", framed, uint8(3))
	write("FuzzEndToEnd", "raw-unmasked", cat([]byte{0x82, 8}, keyEv(true, 'a')), uint8(2))
}
