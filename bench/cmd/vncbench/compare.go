package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"vncedge/bench/loadgen"
)

type cell struct {
	W    string
	S, N int
}

func (c cell) String() string {
	if c.W == loadgen.Keys || c.W == loadgen.Idle {
		return fmt.Sprintf("%s N=%d", c.W, c.N)
	}
	return fmt.Sprintf("%s S=%s N=%d", c.W, sizeName(c.S), c.N)
}

func sizeName(s int) string {
	if s >= 1<<20 {
		return fmt.Sprintf("%dMiB", s>>20)
	}
	return fmt.Sprintf("%dKiB", s>>10)
}

// meas is one cell measured once.
type meas struct {
	rate, mbps, p50, p99, p999     float64 // ops/s, MB/s, ns
	proxyCPU, hopCPU, srvCPU, load float64 // CPU seconds in the window
	elapsed                        float64 // window seconds
	ops, bytes                     float64
	recBytes                       float64 // vncedge-rec: bytes the recorder wrote in the window
	tcpMem                         float64 // kernel TCP memory, % of tcp_mem pressure (larger of window start and end)
	bPerSession                    float64 // idle: proxy Pss growth per session
	rssPerSession                  float64
}

type key struct {
	contender string
	c         cell
}

type compareOpts struct {
	runs                int
	window, warmup      time.Duration
	idleN, idleNFork    int
	forkMaxN            int
	out, vncedge, micro string
	recordDir           string
	quick               bool
	cmdline             string
	contenders          []string
}

func compareCmd(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	var o compareOpts
	fs.IntVar(&o.runs, "runs", 3, "runs of the whole matrix (medians are reported)")
	fs.DurationVar(&o.window, "window", time.Second, "measurement window per cell")
	fs.DurationVar(&o.warmup, "warmup", 250*time.Millisecond, "warm-up per cell")
	fs.IntVar(&o.idleN, "idle-n", 9900, "idle sessions for vncedge, tcp-relay and go-gorilla")
	fs.IntVar(&o.idleNFork, "idle-n-websockify", 100, "idle sessions for websockify (forks per connection)")
	fs.IntVar(&o.forkMaxN, "websockify-max-n", 64, "largest N for load cells that go through websockify")
	fs.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "markdown report to write")
	fs.StringVar(&o.vncedge, "vncedge", "bin/vncedge", "vncedge binary")
	fs.StringVar(&o.micro, "micro", "", "go test -bench output of the micro benchmarks to include")
	fs.BoolVar(&o.quick, "quick", false, "a tiny matrix (smoke test)")
	fs.StringVar(&o.cmdline, "cmdline", "", "command line to print in the report")
	fs.StringVar(&o.recordDir, "record-dir", "", "parent of vncedge-rec's recording directories (default: $TMPDIR or /tmp)")
	only := fs.String("contenders", strings.Join(loadgen.AllContenders, ","), "contenders to run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.contenders = strings.Split(*only, ",")
	if o.cmdline == "" {
		o.cmdline = "vncbench compare " + strings.Join(args, " ")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ws, err := exec.LookPath("websockify")
	if err != nil {
		return err
	}
	logDir, err := os.MkdirTemp("", "vncbench-logs-")
	if err != nil {
		return err
	}
	env := &loadgen.Env{Vncbench: self, Vncedge: o.vncedge, Websockify: ws, LogDir: logDir, RecordDir: o.recordDir}
	srv, err := env.StartServer()
	if err != nil {
		return err
	}
	defer srv.Stop()

	cells := matrix(o.quick)
	res := map[key][]meas{}
	t0 := time.Now()
	var loadTotal, wallTotal time.Duration
	for run := 1; run <= o.runs; run++ {
		for _, name := range o.contenders {
			fork := name == loadgen.Websockify || name == loadgen.VncedgeWS
			// Idle first, on a fresh process, so pooled memory from earlier cells
			// does not hide the per-session cost.
			if name != loadgen.Direct && loadgen.Runs(name, loadgen.Cell{Workload: loadgen.Idle}) {
				n := o.idleN
				if fork {
					n = o.idleNFork
				}
				if name == loadgen.TCPRelayC {
					// io.Copy splices through a pipe per blocked direction: 6
					// descriptors per session, so 20,000 allow about 3,300.
					n = min(n, 3000)
				}
				if o.quick {
					n = min(n, 50)
				}
				c, err := env.Start(name)
				if err != nil {
					return err
				}
				m, err := idleCell(c, n)
				c.Stop()
				if err != nil {
					return fmt.Errorf("run %d %s idle: %w (logs in %s)", run, name, err, logDir)
				}
				k := key{name, cell{loadgen.Idle, 0, n}}
				res[k] = append(res[k], m)
				fmt.Fprintf(os.Stderr, "run %d %-12s %-22s %8.0f B/session (Pss)  %8.0f B/session (RSS)\n", run, name, k.c, m.bPerSession, m.rssPerSession)
			}
			c, err := env.Start(name)
			if err != nil {
				return err
			}
			for _, ce := range cells {
				if (fork && ce.N > o.forkMaxN) || !loadgen.Runs(name, loadgen.Cell{Workload: ce.W, Size: ce.S, N: ce.N}) {
					continue
				}
				m, err := loadCell(c, srv.PID(), ce, o)
				if err != nil {
					c.Stop()
					return fmt.Errorf("run %d %s %s: %w (logs in %s)", run, name, ce, err, logDir)
				}
				loadTotal += time.Duration(m.load * float64(time.Second))
				wallTotal += time.Duration(m.elapsed * float64(time.Second))
				k := key{name, ce}
				res[k] = append(res[k], m)
				rec := ""
				if c.RecDir != "" {
					rec = fmt.Sprintf("  recorded %.1f MB", m.recBytes/1e6)
				}
				fmt.Fprintf(os.Stderr, "run %d %-12s %-22s %10.0f ops/s %9.1f MB/s p50 %7.0fµs proxy %4.0f%% cpu  load %4.0f%%%s\n",
					run, name, ce, m.rate, m.mbps, m.p50/1e3, 100*m.proxyCPU/m.elapsed, 100*m.load/m.elapsed, rec)
			}
			c.Stop()
		}
	}
	total := time.Since(t0)
	return writeReport(o, cells, res, total, loadTotal, wallTotal)
}

// matrix is the cells every contender runs (a contender may declare a subset,
// loadgen.Runs). The quick matrix is a smoke test that still touches every
// workload, a 256 KiB down cell included.
func matrix(quick bool) []cell {
	const k, m = 1 << 10, 1 << 20
	if quick {
		return []cell{{loadgen.RTT, k, 1}, {loadgen.RTT, k, 16}, {loadgen.Keys, 0, 16},
			{loadgen.Down, m, 1}, {loadgen.Down, 256 * k, 64}, {loadgen.Down, m, 64}}
	}
	var cs []cell
	for _, n := range []int{1, 16, 64, 1000} {
		cs = append(cs, cell{loadgen.RTT, k, n})
	}
	for _, n := range []int{1, 64, 1000} {
		cs = append(cs, cell{loadgen.RTT, m, n})
	}
	for _, n := range []int{1, 16, 64, 1000} {
		cs = append(cs, cell{loadgen.Keys, 0, n})
	}
	cs = append(cs, cell{loadgen.Down, k, 64})
	for _, n := range []int{16, 64, 1000} {
		cs = append(cs, cell{loadgen.Down, 256 * k, n})
	}
	for _, n := range []int{1, 16, 64, 1000} {
		cs = append(cs, cell{loadgen.Down, m, n})
	}
	return cs
}

func idleCell(c *loadgen.Contender, n int) (meas, error) {
	pss0, rss0 := loadgen.TreeMem(c.PID())
	var m meas
	_, err := loadgen.Run(loadgen.Config{Addr: c.Addr, Workload: loadgen.Idle, N: n, DialParallel: 32,
		Stop: func() {
			pss1, rss1 := loadgen.TreeMem(c.PID())
			m.bPerSession = float64(pss1-pss0) / float64(n)
			m.rssPerSession = float64(rss1-rss0) / float64(n)
		}})
	return m, err
}

func loadCell(c *loadgen.Contender, srvPID int, ce cell, o compareOpts) (meas, error) {
	var m meas
	var p0, h0, s0, l0 time.Duration
	var r0 int64
	cfg := loadgen.Config{Addr: c.Addr, Workload: ce.W, N: ce.N, Size: ce.S, Warmup: o.warmup, Duration: o.window,
		Start: func() {
			p0, h0, s0 = loadgen.TreeCPU(c.PID()), loadgen.TreeCPU(c.Hop.PID()), loadgen.TreeCPU(srvPID)
			l0 = loadgen.SelfCPU()
			r0 = c.RecBytes()
			m.tcpMem = tcpMemPct()
		},
		Stop: func() {
			m.proxyCPU = (loadgen.TreeCPU(c.PID()) - p0).Seconds()
			m.hopCPU = (loadgen.TreeCPU(c.Hop.PID()) - h0).Seconds()
			m.srvCPU = (loadgen.TreeCPU(srvPID) - s0).Seconds()
			m.load = (loadgen.SelfCPU() - l0).Seconds()
			m.recBytes = float64(c.RecBytes() - r0)
			m.tcpMem = max(m.tcpMem, tcpMemPct())
		}}
	r, err := loadgen.Run(cfg)
	if err != nil {
		return m, err
	}
	m.elapsed = r.Elapsed.Seconds()
	m.rate, m.mbps = r.Rate(), r.MBps()
	m.ops, m.bytes = float64(r.Ops), float64(r.Bytes)
	m.p50, m.p99, m.p999 = float64(r.Pct(0.5)), float64(r.Pct(0.99)), float64(r.Pct(0.999))
	return m, nil
}

// tcpMemPct is the kernel's TCP memory as a percentage of its pressure threshold (0 when unknown).
func tcpMemPct() float64 {
	pages, pressure := loadgen.TCPMem()
	if pressure == 0 {
		return 0
	}
	return 100 * float64(pages) / float64(pressure)
}

func median(ms []meas, f func(meas) float64) float64 {
	if len(ms) == 0 {
		return 0
	}
	v := make([]float64, len(ms))
	for i, m := range ms {
		v[i] = f(m)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func cpuPerOp(m meas) float64         { return m.proxyCPU / m.ops * 1e6 }     // µs
func cpuPerGB(m meas) float64         { return m.proxyCPU / (m.bytes / 1e9) } // s/GB
func pct(cpu float64, m meas) float64 { return 100 * cpu / m.elapsed }        //

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func shell(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func writeReport(o compareOpts, cells []cell, res map[key][]meas, total, loadTotal, wallTotal time.Duration) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	get := func(name string, c cell) []meas { return res[key{name, c}] }
	med := func(name string, c cell, f func(meas) float64) float64 { return median(get(name, c), f) }

	p("# Benchmarks: vncedge against its peers\n\n")
	p("Generated by `make bench-compare` (`bench/cmd/vncbench compare`); do not edit by hand — rerun it.\n\n")
	p("## Machine and command\n\n")
	p("- CPU: %s, %d cores (`nproc`); memory %s\n", cpuModel(), runtime.NumCPU(), shell("sh", "-c", "free -h | awk '/Mem:/{print $2}'"))
	p("- Kernel %s, %s, websockify %s\n", shell("uname", "-r"), runtime.Version(), shell("sh", "-c", "dpkg-query -W -f '${Version}' websockify"))
	p("- Date %s; the whole run took %v\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), total.Round(time.Second))
	p("- Command: `%s`\n", o.cmdline)
	p("- %d runs of the matrix; every number is the median of the runs (ratios are ratios of medians). Window %v per cell after %v warm-up.\n", o.runs, o.window, o.warmup)
	p("- Everything shares the 2 cores: load generator (this process), RFB server, proxy. The proxy's own CPU comes from `/proc/PID/stat` (utime+stime, 10 ms ticks; websockify's forked children summed); the load generator's and the server's CPU are shown too, so you can see whether they, not the proxy, were the limit.\n\n")

	p("## Contenders\n\n")
	p("| | name | path |\n|---|---|---|\n")
	p("| a | direct | load generator ⇄ WebSocket RFB server (no proxy: the floor) |\n")
	p("| b | tcp-relay | ⇄ io.Copy TCP relay (Go, splice) ⇄ WebSocket RFB server: one hop, no WebSocket work |\n")
	p("| c | vncedge-tcp | ⇄ vncedge (`--target tcp://`, default input policy on) ⇄ raw RFB server |\n")
	p("| c′ | vncedge-rec | (c) recording every channel: `--record DIR` (a fresh temp directory per start, removed at its stop), default `--record-input` (pointer); runs only the cells of the recording-cost table, no idle |\n")
	p("| d | vncedge-ws | ⇄ vncedge (`--target ws://`) ⇄ websockify ⇄ raw RFB server; \"proxy CPU\" is vncedge's alone, websockify's is in its own column |\n")
	p("| e | go-gorilla | ⇄ gorilla/websocket v1.5.3 proxy, one goroutine per direction, 32 KiB upstream reads, 4 KiB pooled write buffers, TCP_NODELAY ⇄ raw RFB server |\n")
	p("| f | websockify | ⇄ websockify 0.10 (Debian, Python, forks per connection) ⇄ raw RFB server |\n\n")
	p("Workloads (bench/loadgen): **rtt** one FramebufferUpdateRequest outstanding per session, answered by one raw update of S bytes; **keys** KeyEvents (down/up 'a'), one per WebSocket frame, up to 32 unacknowledged per session (frames that are ready go out in one write), each acknowledged by the server with a 1-byte Bell; **down** the server pushes S-byte updates back to back (several per write when small), MB/s of payload at the viewers; **idle** sessions held after the RFB handshake, Pss growth of the proxy process (tree) per session. Contenders d and f run load cells only up to N=%d (websockify forks a Python process per connection).\n\n", o.forkMaxN)

	// Goals.
	p("## Goals\n\n")
	p("| goal | measured | target | met |\n|---|---|---|---|\n")
	goal := func(name string, v float64, cmp string, target float64, format string) {
		// NaN: a cell the run did not measure (the quick matrix); "—" twice.
		got, ok := "—", "—"
		if !isNaN(v) {
			got = fmt.Sprintf(format, v)
			if (cmp == "≥" && v >= target) || (cmp == "≤" && v <= target) {
				ok = "yes"
			} else {
				ok = "**no**"
			}
		}
		p("| %s | %s | %s %g | %s |\n", name, got, cmp, target, ok)
	}
	k16 := cell{loadgen.Keys, 0, 16}
	r16 := cell{loadgen.RTT, 1 << 10, 16}
	rm1000 := cell{loadgen.RTT, 1 << 20, 1000}
	d1 := cell{loadgen.Down, 1 << 20, 1}
	rate := func(m meas) float64 { return m.rate }
	p50 := func(m meas) float64 { return m.p50 }
	mbps := func(m meas) float64 { return m.mbps }
	nan := math.NaN()
	// div is a ÷ b, NaN when either was not measured (a median of nothing is 0).
	div := func(a, b float64) float64 {
		if a == 0 || b == 0 {
			return nan
		}
		return a / b
	}
	// vs is vncedge-tcp's median of f in cell c divided by base's.
	vs := func(base string, c cell, f func(meas) float64) float64 {
		return div(med(loadgen.VncedgeTCP, c, f), med(base, c, f))
	}
	for _, s := range []int{256 << 10, 1 << 20} {
		for _, n := range []int{16, 64, 1000} {
			c := cell{loadgen.Down, s, n}
			goal(fmt.Sprintf("down MB/s S=%s N=%d, vncedge-tcp ÷ go-gorilla", sizeName(s), n), vs(loadgen.GoProxyC, c, mbps), "≥", 1.3, "%.2f")
			goal(fmt.Sprintf("down MB/s S=%s N=%d, vncedge-tcp ÷ tcp-relay", sizeName(s), n), vs(loadgen.TCPRelayC, c, mbps), "≥", 0.8, "%.2f")
		}
	}
	goal("down MB/s S=1MiB N=1, vncedge-tcp ÷ tcp-relay", vs(loadgen.TCPRelayC, d1, mbps), "≥", 0.8, "%.2f")
	for _, s := range []int{1 << 20, 256 << 10} {
		c := cell{loadgen.Down, s, 64}
		goal(fmt.Sprintf("proxy CPU s/GB down S=%s N=64, vncedge-tcp ÷ go-gorilla", sizeName(s)), vs(loadgen.GoProxyC, c, cpuPerGB), "≤", 0.5, "%.2f")
	}
	goal("rtt p50 N=16 S=1KiB, vncedge-tcp ÷ go-gorilla", vs(loadgen.GoProxyC, r16, p50), "≤", 0.7, "%.2f")
	goal("rtt req/s N=1000 S=1MiB, vncedge-tcp ÷ go-gorilla", vs(loadgen.GoProxyC, rm1000, rate), "≥", 1.0, "%.2f")
	goal("keys/s N=16, vncedge-tcp ÷ direct", vs(loadgen.Direct, k16, rate), "≥", 0.85, "%.2f")
	goal("proxy CPU per key event N=16, vncedge-tcp ÷ go-gorilla", vs(loadgen.GoProxyC, k16, cpuPerOp), "≤", 0.4, "%.2f")
	idle := cell{loadgen.Idle, 0, o.idleN}
	if o.quick {
		idle.N = min(o.idleN, 50)
	}
	idleKiB := nan
	if ms := get(loadgen.VncedgeTCP, idle); len(ms) > 0 {
		idleKiB = median(ms, func(m meas) float64 { return m.bPerSession }) / 1024
	}
	goal(fmt.Sprintf("idle KiB per session pair (Pss), vncedge-tcp, N=%d", idle.N), idleKiB, "≤", 8, "%.1f")
	allocs, microLines := readMicro(o.micro)
	if allocs >= 0 {
		goal("allocs per forwarded frame (micro benchmarks, worst; TLS ones not counted: their in-process client's crypto/tls allocates)", allocs, "≤", 0, "%g")
	}
	p("\nThe load generator used %.0f%% of one core on average over all windows (%v CPU in %v of windows).\n\n",
		100*loadTotal.Seconds()/wallTotal.Seconds(), loadTotal.Round(time.Millisecond), wallTotal.Round(time.Millisecond))
	p("<!-- ANALYSIS -->\n\n")

	// Tables.
	section := func(w, title string) {
		p("## %s\n\n", title)
		switch w {
		case loadgen.RTT:
			p("| S | N | contender | req/s | p50 µs | p99 µs | p99.9 µs | p50 ÷ (a) | p50 ÷ (e) | req/s ÷ (a) | req/s ÷ (e) | proxy µs CPU/req | proxy CPU s/GB | proxy %% | websockify hop %% | server %% | loadgen %% |\n")
			p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		case loadgen.Keys:
			p("| N | contender | keys/s | ÷ (a) | ÷ (e) | proxy µs CPU/key | ÷ (e) | proxy %% | websockify hop %% | server %% | loadgen %% |\n")
			p("|---|---|---|---|---|---|---|---|---|---|---|\n")
		case loadgen.Down:
			p("| S | N | contender | MB/s | ÷ (a) | ÷ (b) | ÷ (e) | proxy CPU s/GB | ÷ (e) | proxy %% | websockify hop %% | server %% | loadgen %% | kernel TCP mem %% of pressure |\n")
			p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		}
		for _, c := range cells {
			if c.W != w {
				continue
			}
			for _, name := range o.contenders {
				ms := get(name, c)
				if len(ms) == 0 {
					continue
				}
				f := func(fn func(meas) float64) float64 { return median(ms, fn) }
				a := func(fn func(meas) float64) float64 { return med(loadgen.Direct, c, fn) }
				e := func(fn func(meas) float64) float64 { return med(loadgen.GoProxyC, c, fn) }
				proxyPct := f(func(m meas) float64 { return pct(m.proxyCPU, m) })
				hopPct := f(func(m meas) float64 { return pct(m.hopCPU, m) })
				srvPct := f(func(m meas) float64 { return pct(m.srvCPU, m) })
				loadPct := f(func(m meas) float64 { return pct(m.load, m) })
				hop := "—"
				if name == loadgen.VncedgeWS {
					hop = fmt.Sprintf("%.0f", hopPct)
				}
				cpuOp, cpuGB := "—", "—"
				if name != loadgen.Direct {
					cpuOp = fmt.Sprintf("%.2f", f(cpuPerOp))
					cpuGB = fmt.Sprintf("%.2f", f(cpuPerGB))
				}
				switch w {
				case loadgen.RTT:
					p("| %s | %d | %s | %.0f | %.1f | %.1f | %.1f | %s | %s | %s | %s | %s | %s | %.0f | %s | %.0f | %.0f |\n",
						sizeName(c.S), c.N, name, f(rate), f(p50)/1e3, f(func(m meas) float64 { return m.p99 })/1e3,
						f(func(m meas) float64 { return m.p999 })/1e3, ratio(f(p50), a(p50)), ratio(f(p50), e(p50)),
						ratio(f(rate), a(rate)), ratio(f(rate), e(rate)), cpuOp, cpuGB, proxyPct, hop, srvPct, loadPct)
				case loadgen.Keys:
					re := "—"
					if name != loadgen.Direct {
						re = ratio(f(cpuPerOp), e(cpuPerOp))
					}
					p("| %d | %s | %.0f | %s | %s | %s | %s | %.0f | %s | %.0f | %.0f |\n", c.N, name, f(rate),
						ratio(f(rate), a(rate)), ratio(f(rate), e(rate)), cpuOp, re, proxyPct, hop, srvPct, loadPct)
				case loadgen.Down:
					re := "—"
					if name != loadgen.Direct {
						re = ratio(f(cpuPerGB), e(cpuPerGB))
					}
					p("| %s | %d | %s | %.0f | %s | %s | %s | %s | %s | %.0f | %s | %.0f | %.0f | %.0f |\n", sizeName(c.S), c.N, name, f(mbps),
						ratio(f(mbps), a(mbps)), ratio(f(mbps), med(loadgen.TCPRelayC, c, mbps)), ratio(f(mbps), e(mbps)),
						cpuGB, re, proxyPct, hop, srvPct, loadPct, f(func(m meas) float64 { return m.tcpMem }))
				}
			}
		}
		p("\n")
	}
	section(loadgen.RTT, "rtt: update round trips")
	section(loadgen.Keys, "keys: KeyEvents acknowledged by the server")
	section(loadgen.Down, "down: server-pushed updates (CPU seconds per GB forwarded)")
	p("The last column is the kernel's TCP buffer memory (`/proc/net/sockstat`, the whole machine) against the `tcp_mem` pressure threshold, the larger of window start and end: near or above 100 %% the kernel shrinks socket buffers and many-session bulk throughput collapses whatever the proxy does, so such a cell measures the kernel (or another job on the machine) more than the proxy.\n\n")
	recordingCost(p, o, cells, res)

	p("## idle: memory per session pair\n\n| contender | N | Pss KiB/session | RSS KiB/session | ÷ (e) |\n|---|---|---|---|---|\n")
	for _, name := range o.contenders {
		for k, ms := range res {
			if k.contender != name || k.c.W != loadgen.Idle {
				continue
			}
			pss := median(ms, func(m meas) float64 { return m.bPerSession })
			var goPss float64
			for k2, ms2 := range res {
				if k2.contender == loadgen.GoProxyC && k2.c.W == loadgen.Idle {
					goPss = median(ms2, func(m meas) float64 { return m.bPerSession })
				}
			}
			p("| %s | %d | %.1f | %.1f | %s |\n", name, k.c.N, pss/1024, median(ms, func(m meas) float64 { return m.rssPerSession })/1024, ratio(pss, goPss))
		}
	}
	p("\nIdle is measured on a freshly started proxy: Pss before the first connection, and again once all N RFB handshakes completed through it. N is %d, not 10,000: the container's hard limit on open files is 20,000 (no CAP_SYS_RESOURCE to raise it) and a proxy holds two descriptors per session. tcp-relay is measured at 3,000: Go's io.Copy between TCP conns splices through a pipe per blocked direction, six descriptors per session.\n\n", o.idleN)
	if len(microLines) > 0 {
		p("## Micro benchmarks (in-process, `go test -bench Relay -benchmem ./bench/`)\n\n```\n%s\n```\n\n", strings.Join(microLines, "\n"))
	}
	// Keep a hand-written analysis section if the report already has one.
	if old, err := os.ReadFile(o.out); err == nil {
		if _, after, ok := strings.Cut(string(old), "<!-- ANALYSIS -->\n"); ok {
			if before, _, ok := strings.Cut(after, "<!-- /ANALYSIS -->"); ok {
				out := strings.Replace(b.String(), "<!-- ANALYSIS -->\n", "<!-- ANALYSIS -->\n"+before+"<!-- /ANALYSIS -->\n", 1)
				b.Reset()
				b.WriteString(out)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s\n", o.out)
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

func isNaN(f float64) bool { return f != f }

// readMicro returns the worst allocs/op of the Relay micro benchmarks and their lines.
func readMicro(path string) (float64, []string) {
	if path == "" {
		return -1, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return -1, nil
	}
	worst := -1.0
	var lines []string
	for _, line := range strings.Split(string(data), "\n") {
		// gnet's start-up log can split a result line after the benchmark name.
		if i := strings.Index(line, "\t[gnet]"); i >= 0 {
			lines = append(lines, line[:i])
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") && !strings.HasPrefix(line, "cpu:") && !strings.Contains(line, "ns/op") {
			continue
		}
		lines = append(lines, line)
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(f[0], "TLS") {
			// The benchmark's own TLS client allocates in crypto/tls (a
			// reader per record, readFromUntil), in the same process: those
			// allocations are not vncedge's. The line is still printed.
			continue
		}
		for i := 1; i < len(f); i++ {
			if f[i] == "allocs/op" {
				if v, err := strconv.ParseFloat(f[i-1], 64); err == nil && v > worst {
					worst = v
				}
			}
		}
	}
	return worst, lines
}

// recordingCost writes the "Recording cost" section: vncedge-rec against
// vncedge-tcp in every cell vncedge-rec ran, ratios of medians of the same run.
func recordingCost(p func(string, ...any), o compareOpts, cells []cell, res map[key][]meas) {
	if !slices.Contains(o.contenders, loadgen.VncedgeRec) {
		return
	}
	p("## Recording cost\n\n")
	p("vncedge-rec (c′) against vncedge-tcp (c), the same binary with `--record DIR` (default `--record-input`, the directory on the machine's disk: `%s`), measured in the same runs. Ratios are rec ÷ off. \"disk per GB down\" is the growth of the recording files' sizes during the window per GB the viewers received: about 1.00 means every relayed byte reached the recorder's files; well below 1.00 means the recorder dropped bytes (gaps, see docs/RECORDING.md).\n\n", recParent(o))
	p("| cell | MB/s off | MB/s rec | rec ÷ off | proxy CPU s/GB off | rec | rec ÷ off | rtt p50 µs off | rec | rec ÷ off | disk per GB down |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, c := range cells {
		rec, off := res[key{loadgen.VncedgeRec, c}], res[key{loadgen.VncedgeTCP, c}]
		if len(rec) == 0 {
			continue
		}
		r := func(f func(meas) float64) float64 { return median(rec, f) }
		f := func(f func(meas) float64) float64 { return median(off, f) }
		mbps := func(m meas) float64 { return m.mbps }
		p50 := func(m meas) float64 { return m.p50 / 1e3 }
		lat := func(v float64) string {
			if v == 0 {
				return "—"
			}
			return fmt.Sprintf("%.1f", v)
		}
		disk := r(func(m meas) float64 {
			if m.bytes == 0 {
				return 0
			}
			return m.recBytes / m.bytes
		})
		p("| %s | %.0f | %.0f | %s | %.2f | %.2f | %s | %s | %s | %s | %.2f GB |\n", c,
			f(mbps), r(mbps), ratio(r(mbps), f(mbps)),
			f(cpuPerGB), r(cpuPerGB), ratio(r(cpuPerGB), f(cpuPerGB)),
			lat(f(p50)), lat(r(p50)), ratio(r(p50), f(p50)), disk)
	}
	p("\n")
}

// recParent is where vncedge-rec's recording directories are made.
func recParent(o compareOpts) string {
	if o.recordDir != "" {
		return o.recordDir
	}
	return os.TempDir()
}
