package loadgen

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/rfbparse"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestWorkloads runs every workload briefly against the in-process server
// directly, through the TCP relay, the gorilla baseline and vncedge, so the
// load generator cannot rot while the comparison stays a make target.
func TestWorkloads(t *testing.T) {
	var srv Server
	lt, lw := listen(t), listen(t)
	go srv.ServeTCP(lt)
	go srv.ServeWS(lw)
	t.Cleanup(srv.Close)

	lr := listen(t)
	go TCPRelay(lr, lw.Addr().String())
	lg := listen(t)
	go NewGoProxy(lt.Addr().String()).Serve(lg)

	ve := listen(t)
	veAddr := ve.Addr().String()
	ve.Close()
	u, _ := url.Parse("tcp://" + lt.Addr().String())
	px, err := proxy.New(proxy.Config{
		Addr: veAddr, Loops: 1,
		Resolver: &proxy.TargetResolver{Upstream: u, Control: rfbparse.User},
		Policy:   rfbparse.DefaultPolicy(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- px.ListenAndServe() }()
	select {
	case <-px.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Shutdown(t.Context()); <-done })

	for name, addr := range map[string]string{
		Direct: lw.Addr().String(), TCPRelayC: lr.Addr().String(), GoProxyC: lg.Addr().String(), VncedgeTCP: veAddr,
	} {
		for _, c := range []Config{
			{Workload: RTT, N: 3, Size: 1024, Ops: 50},
			{Workload: RTT, N: 2, Size: 1 << 20, Ops: 4},
			{Workload: Keys, N: 3, Ops: 500},
			{Workload: Down, N: 2, Size: 1024, Ops: 200},
			{Workload: Down, N: 2, Size: 1 << 20, Ops: 4},
			{Workload: Idle, N: 5},
		} {
			c.Addr, c.Duration = addr, 30*time.Second
			r, err := Run(c)
			if err != nil {
				t.Fatalf("%s %s: %v", name, c.Workload, err)
			}
			if c.Workload != Idle && r.Ops < c.Ops {
				t.Fatalf("%s %s: %d ops, want %d", name, c.Workload, r.Ops, c.Ops)
			}
			if c.Workload == RTT && len(r.Lat) == 0 {
				t.Fatalf("%s rtt: no latencies", name)
			}
		}
	}
}

func TestUpdateDims(t *testing.T) {
	for _, s := range []int{1024, 1 << 20, 20, 64 << 10} {
		w, h, err := UpdateDims(s)
		if err != nil || 16+4*int(w)*int(h) != s {
			t.Fatalf("%d: %d×%d %v", s, w, h, err)
		}
	}
	if _, _, err := UpdateDims(1002); err == nil {
		t.Fatal("1002 accepted")
	}
}

func TestProcAccounting(t *testing.T) {
	if TreeCPU(1) < 0 || SelfCPU() < 0 {
		t.Fatal("negative CPU")
	}
	// Burn a little CPU and see it counted (10 ms ticks), within a bounded loop.
	c0 := SelfCPU()
	x := 0
	for i := 0; i < 1<<30 && SelfCPU()-c0 < 20*time.Millisecond; i++ {
		for j := range 1 << 16 {
			x += j
		}
	}
	if SelfCPU() == c0 {
		t.Fatal("CPU time did not advance", x)
	}
	pss, rss := TreeMem(1)
	_, _ = pss, rss
}

// TestRuns checks the cell subsets: a contender without one runs every cell,
// vncedge-rec only its own and no idle cell.
func TestRuns(t *testing.T) {
	down := Cell{Down, 1 << 20, 64}
	if !Runs(VncedgeTCP, down) || !Runs(VncedgeTCP, Cell{Workload: Idle, N: 9900}) {
		t.Error("vncedge-tcp must run every cell")
	}
	if !Runs(VncedgeRec, down) || !Runs(VncedgeRec, Cell{RTT, 1 << 10, 16}) {
		t.Error("vncedge-rec must run its declared cells")
	}
	if Runs(VncedgeRec, Cell{Down, 1 << 20, 1000}) || Runs(VncedgeRec, Cell{Workload: Idle, N: 9900}) {
		t.Error("vncedge-rec runs a cell it did not declare")
	}
	if DeclaredCells(VncedgeTCP) != nil || len(DeclaredCells(VncedgeRec)) == 0 {
		t.Error("DeclaredCells")
	}
}

// TestTCPMem reads the kernel's TCP memory and its pressure threshold.
func TestTCPMem(t *testing.T) {
	pages, pressure := TCPMem()
	if pressure <= 0 || pages < 0 {
		t.Fatalf("TCPMem() = %d, %d", pages, pressure)
	}
}
