package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"vncedge/bench/loadgen"
)

// BenchmarkPeers runs every workload against every contender, each contender a
// separate process (see docs/BENCHMARKS.md and `make bench-compare`, which
// runs the full matrix several times and writes the report). It needs
// websockify and builds vncedge and vncbench, so it only runs with
// VNCEDGE_PEERS=1:
//
//	VNCEDGE_PEERS=1 go test -run '^$' -bench Peers -benchtime 2000x ./bench/
//
// ns/op is wall time per operation (round trip, key event, update) across all
// sessions; p99-ns (rtt), MB/s at the viewers, proxy-cpu-ns/op (the proxy
// process's utime+stime), and B/session (idle: proxy Pss growth) are metrics.
func BenchmarkPeers(b *testing.B) {
	if os.Getenv("VNCEDGE_PEERS") == "" {
		b.Skip("set VNCEDGE_PEERS=1 (needs websockify; builds vncedge); `make bench-compare` runs the full matrix")
	}
	ws, err := exec.LookPath("websockify")
	if err != nil {
		b.Skip("websockify not installed")
	}
	dir := b.TempDir()
	for pkg, out := range map[string]string{"vncedge/cmd/vncedge": "vncedge", "vncedge/bench/cmd/vncbench": "vncbench"} {
		if o, err := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg).CombinedOutput(); err != nil {
			b.Fatalf("go build %s: %v\n%s", pkg, err, o)
		}
	}
	env := &loadgen.Env{Vncbench: filepath.Join(dir, "vncbench"), Vncedge: filepath.Join(dir, "vncedge"), Websockify: ws, LogDir: dir}
	srv, err := env.StartServer()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	type cell struct {
		w    string
		s, n int
	}
	const k, m = 1 << 10, 1 << 20
	cells := []cell{
		{loadgen.RTT, k, 1}, {loadgen.RTT, k, 16}, {loadgen.RTT, k, 64}, {loadgen.RTT, m, 1}, {loadgen.RTT, m, 64},
		{loadgen.Keys, 0, 1}, {loadgen.Keys, 0, 16}, {loadgen.Keys, 0, 64},
		{loadgen.Down, k, 1}, {loadgen.Down, k, 64}, {loadgen.Down, m, 1}, {loadgen.Down, m, 64},
		{loadgen.Idle, 0, 1000},
	}
	for _, name := range loadgen.AllContenders {
		c, err := env.Start(name)
		if err != nil {
			b.Fatal(err)
		}
		fork := name == loadgen.Websockify || name == loadgen.VncedgeWS
		for _, ce := range cells {
			if ce.w == loadgen.Idle && (name == loadgen.Direct || fork) {
				if name == loadgen.Direct {
					continue
				}
				ce.n = 100
			}
			label := fmt.Sprintf("%s/%s/N=%d", ce.w, name, ce.n)
			if ce.s > 0 {
				label = fmt.Sprintf("%s/%s/S=%d/N=%d", ce.w, name, ce.s, ce.n)
			}
			b.Run(label, func(b *testing.B) { peerCell(b, c, ce.w, ce.s, ce.n) })
		}
		c.Stop()
	}
}

func peerCell(b *testing.B, c *loadgen.Contender, w string, size, n int) {
	var cpu0, cpu1 time.Duration
	var pss0, pss1 int64
	cfg := loadgen.Config{Addr: c.Addr, Workload: w, N: n, Size: size, Warmup: 100 * time.Millisecond,
		Duration: 2 * time.Minute, Ops: int64(b.N),
		Start: func() {
			pss0, _ = loadgen.TreeMem(c.PID())
			cpu0 = loadgen.TreeCPU(c.PID())
			b.ResetTimer()
		},
		Stop: func() {
			b.StopTimer()
			cpu1 = loadgen.TreeCPU(c.PID())
			pss1, _ = loadgen.TreeMem(c.PID())
		}}
	if w == loadgen.Idle {
		// Pss before the first session, after the last handshake.
		pss0, _ = loadgen.TreeMem(c.PID())
		cfg.Start = nil
	}
	r, err := loadgen.Run(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if w == loadgen.Idle {
		b.ReportMetric(float64(pss1-pss0)/float64(n), "B/session")
		return
	}
	b.ReportMetric(float64(r.Elapsed.Nanoseconds())/float64(r.Ops), "ns/op")
	b.ReportMetric(r.MBps(), "MB/s")
	if c.PID() > 0 {
		b.ReportMetric(float64((cpu1-cpu0).Nanoseconds())/float64(r.Ops), "proxy-cpu-ns/op")
	}
	if w == loadgen.RTT {
		b.ReportMetric(float64(r.Pct(0.5).Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(r.Pct(0.99).Nanoseconds()), "p99-ns")
	}
}
