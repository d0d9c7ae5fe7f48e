package main

import (
	"bufio"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

// startWatcher runs a watcher over files whose reloads report the bytes of
// the first file on the returned channel.
func startWatcher(t *testing.T, files ...string) (*watcher, <-chan string) {
	t.Helper()
	got := make(chan string, 16)
	w := newWatcher(files, func() (bool, error) {
		b, err := os.ReadFile(files[0])
		got <- string(b)
		return true, err
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	w.debounce = 10 * time.Millisecond
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go w.run(done)
	<-w.watching // an edit before the watches are set would go unseen
	return w, got
}

// awaitReload waits for a reload that read want.
func awaitReload(t *testing.T, got <-chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-got:
			if s == want {
				return
			}
		case <-timeout:
			t.Fatalf("no reload read %q", want)
		}
	}
}

// TestWatcherReloads: a write, an editor's rename over the file, Kubernetes'
// ..data symlink swap and SIGHUP's kick each reload; changes elsewhere in
// the directory do not.
func TestWatcherReloads(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "sessions.yaml")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(f, "v0")
	w, got := startWatcher(t, filepath.Join(dir, "sub", "..", "sessions.yaml")) // an unclean path
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	// fsnotify's watch is set up inside run: retry the first change until a
	// reload reads it (each write is an event once the watch exists).
	deadline := time.Now().Add(10 * time.Second)
	for seen := false; !seen; {
		write(f, "v1")
		select {
		case s := <-got:
			seen = s == "v1"
		case <-time.After(100 * time.Millisecond): // a retry period, not synchronisation
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher never saw a write")
		}
	}
	tmp := filepath.Join(dir, ".sessions.yaml.swp")
	write(tmp, "v2")
	if err := os.Rename(tmp, f); err != nil {
		t.Fatal(err)
	}
	awaitReload(t, got, "v2")

	w.kick()
	awaitReload(t, got, "v2")

	write(filepath.Join(dir, "other.txt"), "x") // not ours: no reload
	w.kick()
	select {
	case s := <-got:
		if s != "v2" {
			t.Fatalf("reload read %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kick did not reload")
	}
	select {
	case s := <-got:
		t.Fatalf("an unrelated file caused a reload (read %q)", s)
	default:
	}
}

// TestWatcherKubernetesSwap: a Secret/ConfigMap volume, where the file is a
// symlink through ..data, which the kubelet swaps atomically.
func TestWatcherKubernetesSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, content string) {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "sessions.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mk("..2026_12_01_a", "old")
	if err := os.Symlink("..2026_12_01_a", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "sessions.yaml")
	if err := os.Symlink("..data/sessions.yaml", f); err != nil {
		t.Fatal(err)
	}
	_, got := startWatcher(t, f)
	for i := 0; ; i++ {
		name := "..2026_12_01_b" + strings.Repeat("x", i)
		mk(name, "new"+name)
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		select {
		case s := <-got:
			if s == "new"+name {
				return
			}
		case <-time.After(200 * time.Millisecond): // the watch may not be set yet: swap again
		}
		if i > 50 {
			t.Fatal("the symlink swap never caused a reload")
		}
	}
}

// binDir holds the binary vncedgeBin built, if it did.
var binDir string

// vncedgeBin builds the binary (with the race detector) once per test run.
var vncedgeBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "vncedge-bin-")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "vncedge")
	if out, err := exec.Command("go", "build", "-race", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", &buildError{string(out)}
	}
	return bin, nil
})

// TestMain removes the binary vncedgeBin built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

type buildError struct{ out string }

func (e *buildError) Error() string { return "go build: " + e.out }

// binProc is a running vncedge binary.
type binProc struct {
	cmd    *exec.Cmd
	listen string
	admin  string
	mu     sync.Mutex
	log    []string
	lines  chan string
}

// startBinary runs the built binary with args (plus --listen, --admin and
// text logs) and waits until /readyz answers 200.
func startBinary(t *testing.T, args ...string) *binProc {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin, err := vncedgeBin()
	if err != nil {
		t.Fatal(err)
	}
	p := &binProc{listen: freePort(t), admin: freePort(t), lines: make(chan string, 1024)}
	var sub []string
	if len(args) > 0 && args[0] == "demo" { // a subcommand comes first
		sub, args = args[:1], args[1:]
	}
	p.cmd = exec.Command(bin, append(append(sub, "--listen", p.listen, "--admin", p.admin, "--log-format", "text", "--loops", "2"), args...)...)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("vncedge log:\n%s", p.logText())
		}
	})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_ = p.cmd.Wait()
		close(exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never answered 200 (last: %v)\n%s", err, p.logText())
		}
		time.Sleep(20 * time.Millisecond) // polling a process we do not control: no event to await
	}
}

func (p *binProc) logText() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// awaitLog waits for a log line containing all of want.
func (p *binProc) awaitLog(t *testing.T, want ...string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l := <-p.lines:
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			if ok {
				return l
			}
		case <-timeout:
			t.Fatalf("no log line with %q; log:\n%s", want, p.logText())
		}
	}
}

// metric returns the /metrics line that starts with prefix, or "".
func (p *binProc) metric(t *testing.T, prefix string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func sessionsDoc(vnc, key string) string {
	return "organizations: [{id: o1, api_keys: [" + key + "]}]\nsessions:\n- {kind: task, id: t1, organization: o1, control: user, upstream: 'tcp://" + vnc + "'}\n"
}

// TestBinarySessionsReload: the binary reloads its sessions file when it
// changes and on SIGHUP, with a log line and vncedge_config_reloads_total
// per reload; a bad file keeps the table in use; a bad file at start exits 1
// naming the file and line.
func TestBinarySessionsReload(t *testing.T) {
	vnc := rfbtest.NewServer(t, rfbtest.Options{})
	f := filepath.Join(t.TempDir(), "sessions.yaml")
	if err := os.WriteFile(f, []byte(sessionsDoc(vnc.Addr(), "k1")), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "--sessions", f)
	connect := func(key string) error {
		ctx := t.Context()
		ws, err := rfbclient.DialWS(ctx, "ws://"+p.listen+"/v1/stream/vnc/task/t1?client_id=c&apikey="+key, []string{"binary"}, nil)
		if err != nil {
			return err
		}
		defer ws.Close()
		_, err = rfbclient.Handshake(ws, rfbclient.Options{})
		return err
	}
	if err := connect("k1"); err != nil {
		t.Fatal(err)
	}

	// A bad file: refused with its line, the old table stays.
	bad := sessionsDoc(vnc.Addr(), "k2") + "- {kind: task, id: t1, organization: o1, upstream: 'tcp://" + vnc.Addr() + "'}\n"
	if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, "configuration reload failed", "line 4", "listed twice")
	if m := p.metric(t, `vncedge_config_reloads_total{result="error"`); !strings.HasSuffix(m, " 1") {
		t.Errorf("error reloads metric %q, want 1", m)
	}
	if err := connect("k1"); err != nil {
		t.Fatalf("after a bad reload the old key must work: %v", err)
	}

	// A good file: the new key works, the old one is refused.
	if err := os.WriteFile(f, []byte(sessionsDoc(vnc.Addr(), "k2")), 0o600); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, "configuration reloaded")
	if err := connect("k2"); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if err := connect("k1"); err == nil {
		t.Fatal("old key still accepted after the reload")
	}
	if m := p.metric(t, `vncedge_config_reloads_total{result="ok"`); !strings.HasSuffix(m, " 1") {
		t.Errorf("ok reloads metric %q, want 1", m)
	}

	// SIGHUP with nothing changed.
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.awaitLog(t, "configuration unchanged")
	if m := p.metric(t, `vncedge_config_reloads_total{result="unchanged"`); !strings.HasSuffix(m, " 1") {
		t.Errorf("unchanged reloads metric %q, want 1", m)
	}

	// A bad file at start.
	bin, _ := vncedgeBin()
	out, err := exec.Command(bin, "--listen", freePort(t), "--admin", "", "--sessions", f+".missing").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("missing file at start: %v %s, want exit 1", err, out)
	}
	if err := os.WriteFile(f+".bad", []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "--listen", freePort(t), "--admin", "", "--sessions", f+".bad").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), f+".bad: line 4") {
		t.Errorf("bad file at start: %v %s, want exit 1 naming the file and line 4", err, out)
	}
}

// TestTokenKeysReload: a new HS256 secret in --token-secret-file is used
// once the file changes.
func TestTokenKeysReload(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, []byte(strings.Repeat("a", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseFlags([]string{"--token-secret-file", f})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := newTokenSource(o, rfbparse.Agent)
	if err != nil {
		t.Fatal(err)
	}
	first := ts.cur.Load()
	if changed, err := ts.reload(); changed || err != nil {
		t.Fatalf("same bytes: changed %v %v", changed, err)
	}
	if err := os.WriteFile(f, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.reload(); err == nil || ts.cur.Load() != first {
		t.Fatalf("a too-short secret must be refused and the old resolver kept: %v", err)
	}
	if err := os.WriteFile(f, []byte(strings.Repeat("b", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	if changed, err := ts.reload(); !changed || err != nil || ts.cur.Load() == first {
		t.Fatalf("new secret: changed %v %v", changed, err)
	}
	var _ proxy.Resolver = ts
}
