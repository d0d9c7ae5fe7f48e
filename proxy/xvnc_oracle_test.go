package proxy_test

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/rfbparse"
)

// The real-server oracle: key sequences go through vncedge into a real
// TigerVNC Xvnc, and `xev -root -event keyboard` on its display reports every
// key event the X server delivers. The X server is the truth: no KeyPress of
// o/O with ControlMask, of a forbidden control character or of a context-menu
// key may appear, and the legitimate keys around them must.

// xevKey is one KeyPress or KeyRelease xev reported.
type xevKey struct {
	press   bool
	state   uint32 // modifier mask: 0x1 Shift, 0x4 Control, 0x80 Mod5 (AltGr)
	keycode int
	keysym  uint32
	name    string
	bytes   string // XLookupString bytes in hex, e.g. "0f"
}

func (k xevKey) String() string {
	kind := "release"
	if k.press {
		kind = "press"
	}
	return fmt.Sprintf("%s %s (keysym %#x keycode %d state %#x bytes %q)", kind, k.name, k.keysym, k.keycode, k.state, k.bytes)
}

// xevWatch runs xev on an X display and collects its key events.
type xevWatch struct {
	mu     sync.Mutex
	cond   *sync.Cond
	keys   []xevKey
	done   bool
	stderr strings.Builder
}

var (
	xevHead  = regexp.MustCompile(`^(KeyPress|KeyRelease) event`)
	xevState = regexp.MustCompile(`state 0x([0-9a-f]+), keycode (\d+) \(keysym 0x([0-9a-f]+), ([^)]*)\)`)
	xevBytes = regexp.MustCompile(`^XLookupString gives \d+ bytes:\s*(?:\(([0-9a-f ]+)\))?`)
)

func startXev(t *testing.T, display string) *xevWatch {
	t.Helper()
	teststack.Require(t, "xev")
	cmd := exec.Command("stdbuf", "-oL", "xev", "-display", display, "-root", "-event", "keyboard")
	if _, err := exec.LookPath("stdbuf"); err != nil {
		cmd = exec.Command("xev", "-display", display, "-root", "-event", "keyboard")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &xevWatch{}
	w.cond = sync.NewCond(&w.mu)
	cmd.Stderr = &w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start xev: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(out)
		var cur *xevKey
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if m := xevHead.FindStringSubmatch(line); m != nil {
				cur = &xevKey{press: m[1] == "KeyPress"}
				continue
			}
			if cur == nil {
				continue
			}
			if m := xevState.FindStringSubmatch(line); m != nil {
				st, _ := strconv.ParseUint(m[1], 16, 32)
				kc, _ := strconv.Atoi(m[2])
				ks, _ := strconv.ParseUint(m[3], 16, 32)
				cur.state, cur.keycode, cur.keysym, cur.name = uint32(st), kc, uint32(ks), m[4]
				continue
			}
			if m := xevBytes.FindStringSubmatch(line); m != nil {
				cur.bytes = strings.TrimSpace(m[1])
				w.mu.Lock()
				w.keys = append(w.keys, *cur)
				w.cond.Broadcast()
				w.mu.Unlock()
				cur = nil
			}
		}
		w.mu.Lock()
		w.done = true
		w.cond.Broadcast()
		w.mu.Unlock()
	}()
	return w
}

// nthF5Release matches the n-th F5 release of a scan from event 0.
func nthF5Release(n int) func(int, xevKey) bool {
	seen := 0
	return func(i int, k xevKey) bool {
		if i == 0 {
			seen = 0
		}
		if !k.press && k.keysym == ksF5 {
			seen++
		}
		return seen == n
	}
}

// waitFor blocks until a key event matching ok arrived at index >= from and
// returns its index, or fails the test after the deadline.
func (w *xevWatch) waitFor(t *testing.T, from int, ok func(int, xevKey) bool, what string) int {
	t.Helper()
	deadline := time.AfterFunc(10*time.Second, func() {
		w.mu.Lock()
		w.done = true
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer deadline.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for i := from; i < len(w.keys); i++ {
			if ok(i, w.keys[i]) {
				return i
			}
		}
		if w.done {
			t.Fatalf("xev never reported %s; it reported:\n%s\nxev stderr: %s", what, dumpKeys(w.keys[from:]), w.stderr.String())
		}
		w.cond.Wait()
	}
}

// waitAny reports whether xev reported more than from events within d.
func (w *xevWatch) waitAny(from int, d time.Duration) bool {
	expired := false
	timer := time.AfterFunc(d, func() {
		w.mu.Lock()
		expired = true
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer timer.Stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.keys) <= from && !expired && !w.done {
		w.cond.Wait()
	}
	return len(w.keys) > from
}

func (w *xevWatch) since(i int) []xevKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]xevKey(nil), w.keys[i:]...)
}

func dumpKeys(ks []xevKey) string {
	var b strings.Builder
	for _, k := range ks {
		fmt.Fprintf(&b, "  %s\n", k)
	}
	if b.Len() == 0 {
		return "  (nothing)"
	}
	return b.String()
}

// Keysyms the oracle sends besides the policy's.
const (
	ksF5     = 0xffc2
	ksF6     = 0xffc3 // the readiness probe (connect)
	ksLevel3 = 0xfe03 // ISO_Level3_Shift (AltGr)
	ksEuro   = 0x20ac
)

// oracle is one viewer through vncedge to a real Xvnc watched by xev.
type oracle struct {
	t    *testing.T
	x    *teststack.Xvnc
	xev  *xevWatch
	addr string
	view *rfbclient.WSConn
	mark int // xev events before the current check
	taps int // F5 taps sent
}

// startOracle starts Xvnc (extra arguments), xev on it and vncedge with pol,
// and connects a viewer. The viewer lists −258, as noVNC does.
func startOracle(t *testing.T, pol *rfbparse.Policy, xvncArgs ...string) *oracle {
	t.Helper()
	teststack.Require(t, "Xvnc", "xev")
	x := teststack.StartXvnc(t, xvncArgs...)
	o := &oracle{t: t, x: x}
	o.xev = startXev(t, x.DisplayName())
	cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
	cfg.Policy = pol
	_, o.addr = startProxy(t, cfg)
	o.connect("/websockify")
	return o
}

func (o *oracle) connect(path string) {
	o.t.Helper()
	c, err := rfbclient.Dialer{Protocols: []string{"binary"}}.Dial(ctxT(o.t), "ws://"+o.addr+path)
	if err != nil {
		o.t.Fatalf("dial vncedge: %v", err)
	}
	o.t.Cleanup(func() { c.Close() })
	_ = c.NetConn().SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := rfbclient.Handshake(c, rfbclient.Options{}); err != nil {
		o.t.Fatalf("RFB handshake through vncedge to Xvnc: %v", err)
	}
	o.view = c
	o.send(setEncodingsMsg(0, rfbparse.EncodingQEMUExtendedKeyEvent))
	// xev gives no readiness signal: tap F6 until it reports a key. Not F5:
	// a probe xev missed while attaching would leave the F5 sentinel count
	// one short (sync waits for the n-th F5 release it sent).
	for i := 0; !o.xev.waitAny(0, 100*time.Millisecond); i++ {
		if i == 100 {
			o.t.Fatalf("xev saw no key from vncedge; xev stderr: %s", o.xev.stderr.String())
		}
		o.send(keyMsg(true, ksF6), keyMsg(false, ksF6))
	}
	o.sync()
}

// send writes each message as one WebSocket frame.
func (o *oracle) send(frames ...[]byte) {
	o.t.Helper()
	for _, f := range frames {
		if err := o.view.WriteFrame(ws.OpBinary, f); err != nil {
			o.t.Fatalf("write: %v", err)
		}
	}
}

func (o *oracle) tapF5() {
	o.t.Helper()
	o.send(keyMsg(true, ksF5), keyMsg(false, ksF5))
	o.taps++
}

// sync taps F5 and waits for xev to report that tap's release (the taps-th
// F5 release): every event vncedge passed before it has reached X by then.
// It returns the events since the previous sync, F5 taps excluded.
func (o *oracle) sync() []xevKey {
	o.t.Helper()
	o.tapF5()
	i := o.xev.waitFor(o.t, 0, nthF5Release(o.taps), "the F5 sentinel")
	got := o.xev.since(o.mark)[:i-o.mark]
	o.mark = i + 1
	var out []xevKey
	for _, k := range got {
		if k.keysym != ksF5 {
			out = append(out, k)
		}
	}
	return out
}

// check asserts that none of got is a forbidden press and that the presses
// in want (keysym and required state bits) appear, in order.
func (o *oracle) check(name string, got []xevKey, want ...xevKey) {
	o.t.Helper()
	for _, k := range got {
		if !k.press {
			continue
		}
		if bad := forbiddenPress(k); bad != "" {
			o.t.Errorf("%s: X got %s: %s\nall events:\n%s", name, k, bad, dumpKeys(got))
		}
	}
	j := 0
	for _, k := range got {
		if j < len(want) && k.press && k.keysym == want[j].keysym && k.state&want[j].state == want[j].state {
			j++
		}
	}
	if j < len(want) {
		o.t.Errorf("%s: X never got the legitimate press %#x (state %#x); events:\n%s", name, want[j].keysym, want[j].state, dumpKeys(got))
	}
}

// xKeycodeO is the X keycode of the O key (evdev KEY_O + 8).
const xKeycodeO = 32

// forbiddenPress says why a KeyPress breaks the default policy, or "".
func forbiddenPress(k xevKey) string {
	switch {
	case k.state&0x4 != 0 && (k.keysym == 'o' || k.keysym == 'O'):
		return "Ctrl+O"
	case k.bytes == "0f":
		return "the ^O control character"
	case k.keysym == 0x0f || k.keysym == 0x100000f:
		return "the ^O control character keysym"
	case k.state&0x4 != 0 && k.keycode == xKeycodeO && (k.keysym >= 0x80 && k.keysym < 0xfd00 || k.keysym >= 0x1000080):
		return "Ctrl + a non-Latin keysym on the O key (read by position as Ctrl+O)"
	case k.keysym == rfbparse.KeysymMenu:
		return "the Menu key"
	case k.keysym == rfbparse.KeysymF10 && k.state&0x1 != 0:
		return "Shift+F10"
	}
	return ""
}

func press(ks uint32, state uint32) xevKey { return xevKey{press: true, keysym: ks, state: state} }

func policyWith(mode rfbparse.QEMUKeys) *rfbparse.Policy {
	pol := rfbparse.DefaultPolicy()
	pol.QEMUKeys = mode
	return pol
}

// oracleCase is a key sequence, one frame per message, and the legitimate
// presses X must get.
type oracleCase struct {
	name string
	msgs [][]byte
	want []xevKey
}

func oracleCases() []oracleCase {
	const cL, cR, sh = ctrlL, ctrlR, shiftL
	k, q := keyMsg, qemuKeyMsg
	down, up := true, false
	return []oracleCase{
		{"plain Ctrl+O, then Ctrl+A and o", [][]byte{k(down, cL), k(down, 'o'), k(up, 'o'), k(down, 'a'), k(up, 'a'), k(up, cL), k(down, 'o'), k(up, 'o')},
			[]xevKey{press(cL, 0), press('a', 0x4), press('o', 0)}},
		{"Control_R+Shift+O", [][]byte{k(down, cR), k(down, sh), k(down, 'O'), k(up, 'O'), k(up, sh), k(up, cR), k(down, sh), k(down, 'O'), k(up, 'O'), k(up, sh)},
			[]xevKey{press(cR, 0), press(sh, 0x4), press('O', 0x1)}},
		{"QEMU Ctrl+O", [][]byte{q(down, cL, 0x1d), q(down, 'o', 0x18), q(up, 'o', 0x18), q(down, 'a', 0x1e), q(up, 'a', 0x1e), q(up, cL, 0x1d)},
			[]xevKey{press(cL, 0), press('a', 0x4)}},
		{"issue A: QEMU Ctrl released with another keycode", [][]byte{q(down, cL, 0x1d), q(up, cL, 0x1e), k(down, 'o'), k(up, 'o'), q(down, 'o', 0x18), q(up, 'o', 0x18), q(up, cL, 0x1d)},
			nil},
		{"issue B: plain release of a QEMU Ctrl", [][]byte{q(down, cL, 0x1d), k(up, cL), k(down, 'o'), k(up, 'o'), q(up, cL, 0x1d), k(down, 'o'), k(up, 'o')},
			[]xevKey{press('o', 0)}},
		{"mixed: plain Ctrl, QEMU release by keycode, QEMU o", [][]byte{k(down, cL), q(up, cL, 0x1d), q(down, 'o', 0x18), q(up, 'o', 0x18), k(up, cL)},
			nil},
		{"releases of unpressed keys", [][]byte{k(up, cL), q(up, cL, 0x1d), k(down, cL), k(up, cR), q(up, cR, 0x9d), k(down, 'o'), k(up, 'o'), k(up, cL)},
			nil},
		{"lookup collision keycode 0x8000ffe3", [][]byte{k(down, cL), q(up, 'x', 0x8000ffe3), k(down, 'o'), k(up, 'o'), k(up, cL)}, nil},
		// Default Xvnc types o for the first press (its keysym) and would
		// repeat o under Ctrl; -RawKeyboard types the keycode's a.
		{"TigerVNC repeats the first keysym of a keycode", [][]byte{q(down, 'o', 0x1e), k(down, cL), q(down, 'a', 0x1e), q(up, 'a', 0x1e), k(up, cL)},
			nil},
		// TigerVNC keys a plain event by 0x80000000|keysym: keysyms differing
		// only in bit 31 are one key there, repeated with the first keysym.
		{"o held, Ctrl, bit-31 alias of o", [][]byte{k(down, 'o'), k(down, cL), k(down, 0x8000006f), k(up, 0x8000006f), k(up, cL), k(up, 'o')},
			[]xevKey{press('o', 0), press(cL, 0)}},
		{"bit-31 alias releases Ctrl, then o", [][]byte{k(down, cL), k(up, 0x8000ffe3), k(up, cL), k(down, 'o'), k(up, 'o')},
			[]xevKey{press(cL, 0), press('o', 0)}},
		{"keysym a with the keycode of o under Ctrl", [][]byte{k(down, cL), q(down, 'a', 0x18), q(up, 'a', 0x18), k(up, cL)}, nil},
		{"o held, Ctrl, autorepeat of o", [][]byte{k(down, 'o'), k(down, cL), k(down, 'o'), k(down, 'o'), k(up, 'o'), k(up, cL)},
			[]xevKey{press('o', 0)}},
		{"Unicode o and control characters", [][]byte{k(down, cL), k(down, 0x100006f), k(up, 0x100006f), k(up, cL), k(down, 0x0f), k(up, 0x0f), k(down, 0x100000f), k(up, 0x100000f)},
			nil},
		{"Menu and Shift+F10", [][]byte{k(down, rfbparse.KeysymMenu), k(up, rfbparse.KeysymMenu), k(down, sh), k(down, rfbparse.KeysymF10), k(up, rfbparse.KeysymF10), k(up, sh), q(down, 'a', 0xdd), q(up, 'a', 0xdd), k(down, rfbparse.KeysymF10), k(up, rfbparse.KeysymF10)},
			[]xevKey{press(sh, 0), press(rfbparse.KeysymF10, 0)}},
		{"Ctrl by keycode only, then o", [][]byte{q(down, 0, 0x1d), k(down, 'o'), q(down, 'o', 0x18), k(up, 'o'), q(up, 0, 0x1d), k(down, 'o'), k(up, 'o')},
			[]xevKey{press('o', 0)}},
		{"o carrying Ctrl's keycode under Ctrl", [][]byte{k(down, cL), q(down, 'o', 0x1d), q(up, 'o', 0x1d), k(up, cL), k(down, 'o'), k(up, 'o')},
			[]xevKey{press(cL, 0), press('o', 0)}},
		{"release storm of Ctrl lookalikes, then o", [][]byte{q(down, cL, 0x1d), k(up, cL), q(up, cL, 0), q(up, cL, 0x9d), q(up, cR, 0x1d|0x10000), q(up, 'a', 0x8000ffe3),
			k(down, 'o'), k(up, 'o'), q(up, cL, 0x1d)}, nil},
		{"caps lock O under Ctrl", [][]byte{k(down, cL), k(down, 'O'), k(up, 'O'), k(down, 0x100004f), k(up, 0x100004f), k(up, cL)}, []xevKey{press(cL, 0)}},
		{"held table full, then Ctrl and o", append(append(tapDown("1234567890bdefgh"), k(down, cL), k(down, 'o'), k(up, 'o'), k(up, cL)),
			append(tapUp("1234567890bdefgh"), k(down, 'o'), k(up, 'o'))...), []xevKey{press('h', 0), press('o', 0)}},
		{"legitimate typing: Shift, AltGr, autorepeat, QEMU", [][]byte{k(down, sh), k(down, 'H'), k(up, 'H'), k(up, sh), q(down, 'i', 0x17), q(up, 'i', 0x17),
			k(down, ksLevel3), k(down, ksEuro), k(up, ksEuro), k(up, ksLevel3), k(down, 'x'), k(down, 'x'), k(down, 'x'), k(up, 'x'),
			q(down, cL, 0x1d), q(down, 'c', 0x2e), q(up, 'c', 0x2e), q(up, cL, 0x1d)},
			[]xevKey{press(sh, 0), press('H', 0x1), press('i', 0), press(ksLevel3, 0), press(ksEuro, 0), press('x', 0), press('x', 0), press('x', 0), press(cL, 0), press('c', 0x4)}},
	}
}

// TestXvncOracle runs every case through vncedge into Xvnc, with QEMU key
// events sent on as keysyms (the default) and passed with their keycodes,
// against a default Xvnc (acting on keysyms) and one with -RawKeyboard
// (acting on keycodes, under its US keymap).
func TestXvncOracle(t *testing.T) {
	for _, mode := range []rfbparse.QEMUKeys{rfbparse.QEMUKeysToKeysym, rfbparse.QEMUKeysPass} {
		for _, raw := range []bool{false, true} {
			t.Run(fmt.Sprintf("qemu-keys=%s/raw=%v", mode, raw), func(t *testing.T) {
				var args []string
				if raw {
					args = append(args, "-RawKeyboard")
				}
				o := startOracle(t, policyWith(mode), args...)
				for _, tc := range oracleCases() {
					o.send(tc.msgs...)
					o.check(tc.name, o.sync(), tc.want...)
				}
			})
		}
	}
}

// TestXvncOracleSplits sends Ctrl+O sequences as one byte stream cut into two
// frames at every point: the decision never depends on the cut.
func TestXvncOracleSplits(t *testing.T) {
	o := startOracle(t, policyWith(rfbparse.QEMUKeysPass))
	seqs := [][]byte{
		cat(keyMsg(true, ctrlL), keyMsg(true, 'o'), keyMsg(false, 'o'), keyMsg(true, 'a'), keyMsg(false, 'a'), keyMsg(false, ctrlL)),
		cat(qemuKeyMsg(true, ctrlL, 0x1d), qemuKeyMsg(false, ctrlL, 0x1e), qemuKeyMsg(true, 'o', 0x18), keyMsg(true, 'a'), keyMsg(false, 'a'), qemuKeyMsg(false, ctrlL, 0x1d)),
	}
	for si, s := range seqs {
		for cut := 1; cut < len(s); cut++ {
			o.send(s[:cut], s[cut:])
		}
		o.check(fmt.Sprintf("sequence %d at every cut", si), o.sync(), repeatPress('a', 0x4, len(s)-1)...)
	}
}

func tapDown(keys string) [][]byte {
	var out [][]byte
	for _, c := range keys {
		out = append(out, keyMsg(true, uint32(c)))
	}
	return out
}

func tapUp(keys string) [][]byte {
	var out [][]byte
	for _, c := range keys {
		out = append(out, keyMsg(false, uint32(c)))
	}
	return out
}

func repeatPress(ks, state uint32, n int) []xevKey {
	out := make([]xevKey, n)
	for i := range out {
		out[i] = press(ks, state)
	}
	return out
}

// TestXvncOracleHandOver: control moves to the agent while the user holds
// Ctrl (pressed by keycode); vncedge releases it as pressed, so after
// take-control a bare o is a bare o on the X server.
func TestXvncOracleHandOver(t *testing.T) {
	for _, mode := range []rfbparse.QEMUKeys{rfbparse.QEMUKeysToKeysym, rfbparse.QEMUKeysPass} {
		t.Run("qemu-keys="+mode.String(), func(t *testing.T) {
			teststack.Require(t, "Xvnc", "xev")
			x := teststack.StartXvnc(t)
			xw := startXev(t, x.DisplayName())
			cfg := targetConfig(t, "tcp://"+x.Addr(), rfbparse.User)
			cfg.Policy = policyWith(mode)
			_, addr := startProxy(t, cfg)
			const q = "/v1/stream/%s/browser_session/oracle?client_id=c-oracle"
			path := func(ch string) string { return strings.Replace(q, "%s", ch, 1) }
			mc := dialMessages(t, addr, path("messages"))
			mc.expect("interactor", "interactor", "user")
			o := &oracle{t: t, x: x, xev: xw, addr: addr}
			o.connect(path("vnc"))

			o.send(qemuKeyMsg(true, ctrlL, 0x1d), keyMsg(true, 'a'))
			o.check("held", o.sync(), press(ctrlL, 0), press('a', 0x4))
			mc.send(map[string]string{"kind": "cede-control"})
			mc.expect("interactor", "interactor", "agent")
			// The viewer's own releases are dropped while the agent drives.
			o.send(qemuKeyMsg(false, ctrlL, 0x1d), keyMsg(false, 'a'))
			mc.send(map[string]string{"kind": "take-control"})
			mc.expect("interactor", "interactor", "user")
			o.send(keyMsg(true, 'o'), keyMsg(false, 'o'))
			got := o.sync()
			o.check("after hand-over", got, press('o', 0))
			released := 0
			for _, k := range got {
				if !k.press && (k.keysym == ctrlL || k.keysym == 'a') {
					released++
				}
			}
			if released != 2 {
				t.Errorf("X got %d releases of Ctrl and a at the hand-over, want 2:\n%s", released, dumpKeys(got))
			}
		})
	}
}

// TestXvncOracleDvorakRawKeyboard: Xvnc -RawKeyboard acts on keycodes under
// its X keymap; with Dvorak, the keycode of QWERTY s types o. With QEMU key
// events passed, Ctrl + that keycode is Ctrl+O on the X server (the reason
// for the default); the layout-proof default sends the keysym instead.
func TestXvncOracleDvorakRawKeyboard(t *testing.T) {
	teststack.Require(t, "setxkbmap")
	for _, tc := range []struct {
		mode   rfbparse.QEMUKeys
		bypass bool
	}{{rfbparse.QEMUKeysToKeysym, false}, {rfbparse.QEMUKeysPass, true}} {
		t.Run("qemu-keys="+tc.mode.String(), func(t *testing.T) {
			o := startOracle(t, policyWith(tc.mode), "-RawKeyboard")
			if out, err := exec.Command("setxkbmap", "-display", o.x.DisplayName(), "dvorak").CombinedOutput(); err != nil {
				t.Fatalf("setxkbmap dvorak: %v: %s", err, out)
			}
			o.sync()
			// As noVNC sends it from a QWERTY browser: keysym s, keycode 0x1f.
			o.send(qemuKeyMsg(true, ctrlL, 0x1d), qemuKeyMsg(true, 's', 0x1f), qemuKeyMsg(false, 's', 0x1f), qemuKeyMsg(false, ctrlL, 0x1d))
			got := o.sync()
			sawCtrlO := false
			for _, k := range got {
				if k.press && forbiddenPress(k) != "" {
					sawCtrlO = true
				}
			}
			if sawCtrlO != tc.bypass {
				t.Fatalf("Ctrl+O on the X server: %v, want %v; events:\n%s", sawCtrlO, tc.bypass, dumpKeys(got))
			}
			if !tc.bypass {
				o.check("keysym s under Dvorak", got, press('s', 0x4))
			}
		})
	}
}

// TestXvncOracleRussianKeymap: with a Russian X keymap, Xvnc types keysym
// Cyrillic_shcha on the O key, which Chromium reads by position: Ctrl+щ would
// be Ctrl+O. Under Ctrl no non-ASCII keysym passes; without Ctrl it types.
func TestXvncOracleRussianKeymap(t *testing.T) {
	teststack.Require(t, "setxkbmap")
	const shcha, es = 0x6dd, 0x6d3 // Cyrillic_shcha (O key), Cyrillic_es (C key)
	for _, mode := range []rfbparse.QEMUKeys{rfbparse.QEMUKeysToKeysym, rfbparse.QEMUKeysPass} {
		t.Run("qemu-keys="+mode.String(), func(t *testing.T) {
			o := startOracle(t, policyWith(mode))
			if out, err := exec.Command("setxkbmap", "-display", o.x.DisplayName(), "ru").CombinedOutput(); err != nil {
				t.Fatalf("setxkbmap ru: %v: %s", err, out)
			}
			o.sync()
			o.send(keyMsg(true, shcha), keyMsg(false, shcha),
				keyMsg(true, ctrlL), keyMsg(true, shcha), keyMsg(false, shcha), qemuKeyMsg(true, shcha, 0x18), qemuKeyMsg(false, shcha, 0x18),
				keyMsg(true, 0x1000449), keyMsg(false, 0x1000449), keyMsg(true, es), keyMsg(false, es), keyMsg(false, ctrlL),
				keyMsg(true, shcha), keyMsg(false, shcha))
			got := o.sync()
			o.check("Ctrl + Cyrillic", got, press(shcha, 0), press(ctrlL, 0), press(shcha, 0))
			for _, k := range got {
				if k.press && k.keysym == shcha && k.keycode != xKeycodeO {
					t.Errorf("Cyrillic_shcha typed on keycode %d, want the O key (%d): the case tests nothing", k.keycode, xKeycodeO)
				}
			}
		})
	}
}
