package proxy_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/teststack"
	"vncedge/proxy/upgrade"
	"vncedge/rfbparse"
)

// Attacks on the integrated input policy and the viewer-abuse defences
// (coreattack). Each test here failed on the code it was written against.

// TestCoreAttackTwoViewersShareXModifiers: key state is kept per WebSocket
// connection, but the X server behind it has ONE keyboard: a modifier held
// through one connection applies to keys typed through every other one.
// Two viewers of the same desktop (two tabs of the same user, or an attacker
// opening two sockets; RFB's shared flag is the viewer's to choose) hold
// Ctrl in viewer A and type o in viewer B: each Stream sees nothing
// forbidden, and X gets KeyPress o with ControlMask — Ctrl+O.
func TestCoreAttackTwoViewersShareXModifiers(t *testing.T) {
	for _, mode := range []rfbparse.QEMUKeys{rfbparse.QEMUKeysToKeysym, rfbparse.QEMUKeysPass} {
		t.Run("qemu-keys="+mode.String(), func(t *testing.T) {
			a := startOracle(t, policyWith(mode))
			b := &oracle{t: t, x: a.x, xev: a.xev, addr: a.addr}
			// B: another viewer (client_id) of the same platform session.
			b.connect("/v1/stream/vnc/browser_session/oracle?client_id=c-second-tab")
			a.mark, a.taps = b.mark, a.taps+b.taps // F5 taps are counted over both
			// A holds Ctrl; sync through A so X holds it before B types.
			a.send(keyMsg(true, ctrlL))
			a.sync()
			b.mark, b.taps = a.mark, a.taps
			b.send(keyMsg(true, 'o'), keyMsg(false, 'o'))
			got := b.sync()
			a.send(keyMsg(false, ctrlL))
			// Fixes may drop B's o or let it through without Ctrl: no want.
			b.check("Ctrl held in viewer A, o typed in viewer B", got)
		})
	}
}

// TestCoreAttackTwoViewersShiftF10: the same shared keyboard opens the
// context menu: Shift held through viewer A, F10 pressed through viewer B
// reaches X as Shift+F10 (Chromium's keyboard context menu).
func TestCoreAttackTwoViewersShiftF10(t *testing.T) {
	a := startOracle(t, policyWith(rfbparse.QEMUKeysToKeysym))
	b := &oracle{t: t, x: a.x, xev: a.xev, addr: a.addr}
	b.connect("/websockify")
	a.mark, a.taps = b.mark, a.taps+b.taps
	a.send(keyMsg(true, shiftL))
	a.sync()
	b.mark, b.taps = a.mark, a.taps
	b.send(keyMsg(true, rfbparse.KeysymF10), keyMsg(false, rfbparse.KeysymF10))
	got := b.sync()
	a.send(keyMsg(false, shiftL))
	b.check("Shift held in viewer A, F10 pressed in viewer B", got)
}

// TestCoreAttackFakeShiftCompletesShortcut: with --forbidden ctrl+shift+i
// (DevTools in Chromium), the viewer holds only Ctrl and sends the keysym
// 'I'. vncedge folds I to i and sees Ctrl without Shift, so the shortcut does
// not match; Xvnc needs Shift to type I and fakes a Shift press around it,
// so X delivers KeyPress I with Control|Shift — Ctrl+Shift+I.
func TestCoreAttackFakeShiftCompletesShortcut(t *testing.T) {
	pol, err := rfbparse.NewPolicy("ctrl+o,ctrl+shift+i", rfbparse.RightStrip)
	if err != nil {
		t.Fatal(err)
	}
	o := startOracle(t, pol)
	// Listing LEDState (-261) turns off TigerVNC's Caps Lock heuristic
	// (which would toggle Caps Lock instead of faking Shift), as noVNC does.
	o.send(setEncodingsMsg(0, rfbparse.EncodingQEMUExtendedKeyEvent, -261))
	o.sync()
	o.send(keyMsg(true, ctrlL), keyMsg(true, 'I'), keyMsg(false, 'I'), keyMsg(false, ctrlL),
		keyMsg(true, 'i'), keyMsg(false, 'i'))
	got := o.sync()
	for _, k := range got {
		if k.press && (k.keysym == 'i' || k.keysym == 'I') && k.state&0x5 == 0x5 {
			t.Errorf("X got %s: Ctrl+Shift+I\nall events:\n%s", k, dumpKeys(got))
		}
	}
	o.check("Ctrl + keysym I", got, press('i', 0))
}

// TestCoreAttackRawKeyboardStuckCtrl: with --qemu-keys pass and Xvnc
// -RawKeyboard, Xvnc keeps its own table of which X keycode each keysym was
// pressed on and releases a plain keysym on the LOWEST keycode holding it.
// Control_L pressed plainly (X keycode 37), then a QEMU press carrying keysym
// Control_L on the Q key (XT 0x10, X keycode 24): the plain release of
// Control_L releases keycode 24, the QEMU release of 0x10 releases 24 again,
// and keycode 37 (Control) stays down in X. vncedge saw every press
// released; the next o is Ctrl+O.
func TestCoreAttackRawKeyboardStuckCtrl(t *testing.T) {
	o := startOracle(t, policyWith(rfbparse.QEMUKeysPass), "-RawKeyboard")
	o.send(keyMsg(true, ctrlL), qemuKeyMsg(true, ctrlL, 0x10), keyMsg(false, ctrlL), qemuKeyMsg(false, ctrlL, 0x10))
	o.sync()
	o.send(keyMsg(true, 'o'), keyMsg(false, 'o'))
	o.check("o after the Control_L presses were released", o.sync())
}

// roleByPath routes every viewer to one upstream; path /watch gets RoleViewer.
type roleByPath struct{ up *url.URL }

func (r roleByPath) Resolve(_ context.Context, req *upgrade.Request) (*proxy.Route, error) {
	rt := &proxy.Route{Upstream: r.up, Control: rfbparse.User}
	if req.Path == "/watch" {
		rt.Role = proxy.RoleViewer
	}
	return rt, nil
}

// TestCoreAttackViewerRoleExclusiveKicksController: ClientInit's shared flag
// passes untouched. A read-only (RoleViewer) viewer that sends shared-flag 0
// makes Xvnc (DisconnectClients, its default) drop every other client of the
// desktop, the controlling user included; in a loop it locks everyone out.
func TestCoreAttackViewerRoleExclusiveKicksController(t *testing.T) {
	teststack.Require(t, "Xvnc")
	x := teststack.StartXvnc(t)
	up, _ := url.Parse("tcp://" + x.Addr())
	_, addr := startProxy(t, proxy.Config{Resolver: roleByPath{up}, Policy: rfbparse.DefaultPolicy()})

	ctl := dialWS(t, addr, "/websockify")
	_ = ctl.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	cc, err := rfbclient.Handshake(ctl, rfbclient.Options{})
	if err != nil {
		t.Fatalf("controller handshake: %v", err)
	}
	w := dialWS(t, addr, "/watch")
	_ = w.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	wc, err := rfbclient.Handshake(w, rfbclient.Options{Exclusive: true})
	if err != nil {
		t.Fatalf("watcher handshake: %v", err)
	}
	// Xvnc drops the others when it processes the exclusive ClientInit,
	// before it sends that client's ServerInit. One full update on each
	// side: the watcher's proves Xvnc is serving it; the controller's must
	// still arrive.
	if err := wc.RequestFull(); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.ReadUpdate(); err != nil {
		t.Fatalf("watcher update: %v", err)
	}
	if err := cc.RequestFull(); err != nil {
		t.Fatalf("controller lost its session to a read-only viewer's exclusive ClientInit: %v", err)
	}
	if _, err := cc.ReadUpdate(); err != nil {
		t.Fatalf("controller lost its session to a read-only viewer's exclusive ClientInit: %v", err)
	}
}

// TestCoreAttackISOLeftTabIsShiftTab: TigerVNC turns keysym ISO_Left_Tab
// (0xfe20) into Tab with a faked Shift. With --forbidden ctrl+shift+tab
// (Chromium: previous tab), Ctrl + ISO_Left_Tab matches nothing in vncedge
// (another keysym, no Shift held) and X gets Tab with Control|Shift.
func TestCoreAttackISOLeftTabIsShiftTab(t *testing.T) {
	const isoLeftTab, tab = 0xfe20, 0xff09
	pol, err := rfbparse.NewPolicy("ctrl+o,ctrl+shift+tab", rfbparse.RightStrip)
	if err != nil {
		t.Fatal(err)
	}
	o := startOracle(t, pol)
	o.send(keyMsg(true, ctrlL), keyMsg(true, isoLeftTab), keyMsg(false, isoLeftTab), keyMsg(false, ctrlL),
		keyMsg(true, tab), keyMsg(false, tab))
	got := o.sync()
	for _, k := range got {
		if k.press && (k.keysym == tab || k.keysym == isoLeftTab) && k.state&0x5 == 0x5 {
			t.Errorf("X got %s: Ctrl+Shift+Tab\nall events:\n%s", k, dumpKeys(got))
		}
	}
	o.check("Ctrl + ISO_Left_Tab", got, press(tab, 0))
}
