package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"vncedge/proxy/record"
)

// writeRecording records a small session (handshake, one update, a control
// change) with the record package and returns its path and server bytes.
func writeRecording(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	rc, err := record.New(record.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rec := rc.Start(record.Header{Kind: "task", ID: "tsk_1", Organization: "org", ClientID: "c1"}, nil)
	srv := []byte("RFB 003.008\n\x01\x01\x00\x00\x00\x00\x00\x04\x00\x02 \x18\x00\x01\x00\xff\x00\xff\x00\xff\x00\x08\x10\x00\x00\x00\x00\x00\x00\x01x")
	update := append([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 0}, bytes.Repeat([]byte{'\'', '\\', 0, 0xff}, 8)...)
	_ = rec.Server(srv)
	_ = rec.Client([]byte("RFB 003.008\n\x01\x01"))
	_ = rec.Server(update)
	_ = rec.Note(record.NoteControl, 0, "agent")
	rec.End(1000, "viewer-closed")
	<-rec.Done()
	return rec.Path(), append(srv, update...)
}

func TestReplayInfoExportList(t *testing.T) {
	dir := t.TempDir()
	path, server := writeRecording(t, dir)
	if rel, _ := filepath.Rel(dir, path); !strings.HasPrefix(rel, filepath.Join("org", "task", "tsk_1")+string(filepath.Separator)) || !strings.HasSuffix(rel, "-c1.vncrec") {
		t.Fatalf("path %q", rel)
	}
	var out bytes.Buffer
	if err := replayMain([]string{path, "--info"}, &out); err != nil { // flags after FILE too
		t.Fatal(err)
	}
	for _, want := range []string{"session:       task/tsk_1", "replayable:    yes", "control to=agent", "end reason=viewer-closed code=1000", "server bytes:  " + strconv.Itoa(len(server))} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--info lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := replayMain([]string{"--export", "websockify", path}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "var VNC_frame_encoding = 'binary';\nvar VNC_frame_data = [\n") || !strings.Contains(out.String(), "'EOF'];\n") {
		t.Fatalf("export:\n%s", out.String())
	}
	frames, _, err := record.ParseWebsockify(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Join(frames, nil); !bytes.Equal(got, server) {
		t.Fatalf("exported server frames %q, want %q", got, server)
	}
	nodeDecode(t, out.String(), server)
	out.Reset()
	if err := replayMain([]string{"--list", dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), path) || !strings.Contains(out.String(), "task/tsk_1") {
		t.Fatalf("--list:\n%s", out.String())
	}
	if err := replayMain([]string{"--export", "bogus", path}, &out); err == nil {
		t.Fatal("--export bogus accepted")
	}
	if err := replayMain(nil, &out); err == nil {
		t.Fatal("no FILE accepted")
	}
}

// nodeDecode evaluates the export in Node and decodes the server frames as
// noVNC's playback does (charCodeAt from after the second '{'): the bytes
// must be the recorded ones.
func nodeDecode(t *testing.T, js string, want []byte) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("VNCEDGE_REQUIRE_REAL") == "1" {
			t.Fatal("node not installed")
		}
		t.Log("skipping the Node check: node not installed")
		return
	}
	f := filepath.Join(t.TempDir(), "rec.js")
	if err := os.WriteFile(f, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	prog := `eval(require('fs').readFileSync(process.argv[1], 'latin1') + ';globalThis.D=VNC_frame_data;globalThis.E=VNC_frame_encoding');
const out = [];
for (const frame of D) {
  if (frame === 'EOF') break;
  if (frame[0] !== '{') continue;
  const start = frame.indexOf('{', 1) + 1;
  for (let i = start; i < frame.length; i++) out.push(frame.charCodeAt(i));
}
process.stdout.write(E + ' ' + Buffer.from(out).toString('hex'));`
	got, err := exec.Command(node, "-e", prog, f).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	if w := "binary " + hex.EncodeToString(want); string(got) != w {
		t.Fatalf("noVNC-style decode of the export:\n%s\nwant\n%s", got, w)
	}
}
