package cdp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const chromiumPath = "/usr/bin/chromium"

// requireChromium skips the test when Chromium is missing, or fails it when
// VNCEDGE_REQUIRE_REAL=1.
func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return
	}
	msg := fmt.Sprintf("chromium not found at %s (apt-get install chromium)", chromiumPath)
	if os.Getenv("VNCEDGE_REQUIRE_REAL") == "1" {
		t.Fatal(msg + "; VNCEDGE_REQUIRE_REAL=1")
	}
	t.Skip(msg)
}

// browser is a headless Chromium started for one test.
type browser struct {
	cmd    *exec.Cmd
	wsURL  string // ws://127.0.0.1:port/devtools/browser/<id>
	port   string
	exited chan struct{}
}

// httpURL is the DevTools HTTP endpoint of b.
func (b *browser) httpURL() string { return "http://127.0.0.1:" + b.port }

// startChromium starts headless Chromium on port ("0" for any) and waits for
// its "DevTools listening on" line. The browser is killed at test end.
func startChromium(t *testing.T, port string) *browser {
	t.Helper()
	requireChromium(t)
	cmd := exec.Command(chromiumPath,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-background-networking", "--disable-component-update",
		"--disable-sync", "--no-first-run", "--no-default-browser-check",
		"--user-data-dir="+t.TempDir(),
		"--remote-debugging-address=127.0.0.1",
		"--remote-debugging-port="+port,
		"about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{cmd: cmd, exited: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		const prefix = "DevTools listening on "
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, prefix) {
				found <- strings.TrimSpace(strings.TrimPrefix(line, prefix))
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // keep the pipe drained
		_ = cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(b.kill)
	select {
	case u := <-found:
		b.wsURL = u
	case <-b.exited:
		t.Fatal("chromium exited before printing its DevTools address")
	case <-time.After(20 * time.Second):
		t.Fatal("chromium did not print its DevTools address within 20s")
	}
	pu, err := url.Parse(b.wsURL)
	if err != nil {
		t.Fatalf("bad DevTools address %q: %v", b.wsURL, err)
	}
	b.port = pu.Port()
	return b
}

// kill stops the browser's process group and waits for it to exit.
func (b *browser) kill() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
	}
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// driver drives the browser for the tests, over the package's own
// connection layer (a second connection, separate from the Client's).
type driver struct {
	t  *testing.T
	cn *conn
}

func newDriver(t *testing.T, b *browser) *driver {
	t.Helper()
	c := New(b.wsURL, Options{})
	t.Cleanup(func() { _ = c.Close() })
	cn, err := c.conn(context.Background())
	if err != nil {
		t.Fatalf("driver connect: %v", err)
	}
	return &driver{t: t, cn: cn}
}

func (d *driver) call(sessionID, method string, params, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.cn.call(ctx, sessionID, method, params, result)
}

func (d *driver) must(sessionID, method string, params, result any) {
	d.t.Helper()
	if err := d.call(sessionID, method, params, result); err != nil {
		d.t.Fatal(err)
	}
}

// page is a target the driver opened.
type page struct {
	d         *driver
	targetID  string
	sessionID string
}

// open creates a tab at u (in the background if asked) and waits until its
// document has loaded.
func (d *driver) open(u string, background bool) *page {
	d.t.Helper()
	var res struct {
		TargetID string `json:"targetId"`
	}
	d.must("", "Target.createTarget", map[string]any{"url": u, "background": background}, &res)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sid, err := d.cn.session(ctx, res.TargetID)
	if err != nil {
		d.t.Fatal(err)
	}
	p := &page{d: d, targetID: res.TargetID, sessionID: sid}
	eventually(d.t, 10*time.Second, "page load", func() error {
		var state string
		if err := p.eval(`document.readyState + " " + location.href`, &state); err != nil {
			return err
		}
		if state != "complete "+u {
			return errors.New(state)
		}
		return nil
	})
	return p
}

// eval evaluates expr in the page and decodes its value into out.
func (p *page) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return evaluate(ctx, p.d.cn, p.sessionID, expr, out)
}

func (p *page) mustEval(expr string, out any) {
	p.d.t.Helper()
	if err := p.eval(expr, out); err != nil {
		p.d.t.Fatalf("eval %q: %v", expr, err)
	}
}
