package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/cdp"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// startChromium runs headless Chromium on url with DevTools on 127.0.0.1 and
// returns the http:// DevTools endpoint.
func startChromium(t *testing.T, url string) string {
	t.Helper()
	teststack.Require(t, "chromium")
	cmd := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", url)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	found := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`DevTools listening on ws://([^/]+)/`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- "http://" + m[1]
			}
		}
	}()
	select {
	case ep := <-found:
		return ep
	case <-time.After(20 * time.Second):
		t.Fatal("chromium printed no DevTools address")
		return ""
	}
}

const copyPage = `<!doctype html><p id=t>Selected on the remote browser ✓</p>
<script>const r=document.createRange();r.selectNodeContents(document.getElementById('t'));getSelection().addRange(r);document.title='ready'</script>`

const pastePage = `<!doctype html><textarea id=ta autofocus></textarea>
<script>const ta=document.getElementById('ta');ta.focus();ta.oninput=()=>{document.title='pasted:'+ta.value};document.title='ready'</script>`

// TestClipboardRealChromium: Ctrl+C sent as RFB KeyEvents through vncedge
// makes vncedge read the selection of a real Chromium over CDP and send it to
// the page as copied-text; a paste answered on the message channel is typed
// into the browser, whose textarea then holds it.
func TestClipboardRealChromium(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if r.URL.Path == "/paste" {
			fmt.Fprint(w, pastePage)
			return
		}
		fmt.Fprint(w, copyPage)
	}))
	defer web.Close()
	vnc := rfbtest.NewServer(t, rfbtest.Options{HoldIncremental: true})

	run := func(t *testing.T, page string) (*msgConn, *vncKeys, string) {
		devtools := startChromium(t, web.URL+page)
		cfg := targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User)
		cfg.Resolver.(*proxy.TargetResolver).CDPURL = devtools
		cfg.NewClipboard = func(ep string, h http.Header) proxy.ClipboardClient {
			return cdp.New(ep, cdp.Options{Header: h})
		}
		_, addr := startProxy(t, cfg)
		mc := dialMessages(t, addr, "/v1/stream/messages/browser_session/b1?client_id=c1")
		mc.expect("interactor", "interactor", "user")
		_, cl := vncViewer(t, addr, "/v1/stream/vnc/browser_session/b1?client_id=c1")
		return mc, &vncKeys{cl}, devtools
	}

	t.Run("copy", func(t *testing.T) {
		mc, keys, devtools := run(t, "/copy")
		waitSelection(t, devtools, "Selected on the remote browser ✓")
		keys.press(rfbparse.KeysymControlR, 'C') // Control_R and uppercase: both count
		mc.expect("copied-text", "text", "Selected on the remote browser ✓")
	})
	t.Run("paste", func(t *testing.T) {
		mc, keys, devtools := run(t, "/paste")
		waitTitle(t, devtools, "ready") // the textarea has focus
		keys.press(rfbparse.KeysymControlL, 'v')
		mc.expect("ask-for-clipboard", "", "")
		mc.send(map[string]string{"kind": "ask-for-clipboard-response", "text": "pasted through vncedge"})
		// The page puts its textarea's value in its title on input.
		waitTitle(t, devtools, "pasted:pasted through vncedge")
	})
}

// waitTitle polls DevTools' target list until a page has the title want.
func waitTitle(t *testing.T, devtools, want string) {
	t.Helper()
	var titles []string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		titles = titles[:0]
		resp, err := http.Get(devtools + "/json/list")
		if err == nil {
			var targets []struct{ Title string }
			_ = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Title == want {
					return
				}
				titles = append(titles, tg.Title)
			}
		}
		time.Sleep(20 * time.Millisecond) // the page's script runs on its own time
	}
	t.Fatalf("page titles %q, want %q", titles, want)
}

type vncKeys struct {
	cl interface{ KeyEvent(bool, uint32) error }
}

func (k *vncKeys) press(mod, key uint32) {
	k.cl.KeyEvent(true, mod)
	k.cl.KeyEvent(true, key)
	k.cl.KeyEvent(false, key)
	k.cl.KeyEvent(false, mod)
}

// waitSelection polls the browser's selection until it equals want: the
// page's own script runs asynchronously to anything the test can await.
func waitSelection(t *testing.T, devtools, want string) {
	t.Helper()
	c := cdp.New(devtools, cdp.Options{})
	defer c.Close()
	var got string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		var err error
		if got, err = c.SelectedText(ctxT(t)); err == nil && got == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("browser selection %q, want %q", got, want)
}
