// Command vncsoak is the soak test for vncedge: many sessions through one
// vncedge, each moving randomized data both ways for a while, every byte
// checked in order at both ends; it prints errors, vncedge's RSS (total and
// per session), CPU and open descriptors before, during and after.
//
//	vncsoak -sessions 1000 -duration 60s           1,000 sessions moving data for 60 s
//	vncsoak -concurrent 10000                      10,000 concurrent sessions, light traffic, 30 s
//	vncsoak -vncedge bin/vncedge ...               measure a separate vncedge process (default: in-process)
//
// The fake VNC server and the viewers run in this process; all traffic stays
// on 127.0.0.1. The run is bounded: setup, -duration, then a bounded drain.
// The file-descriptor limit is raised as far as the process may (run it as
// root, or after `ulimit -n`, for 10,000 sessions: each needs two
// descriptors in vncedge and two here).
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"
)

type options struct {
	sessions   int
	concurrent int
	duration   time.Duration
	downRate   int
	upRate     int
	vncedge    string
	dialPar    int
	loops      int
}

func main() {
	var o options
	flag.IntVar(&o.sessions, "sessions", 1000, "sessions moving data for -duration")
	flag.IntVar(&o.concurrent, "concurrent", 0, "if set: this many concurrent sessions with light traffic (default 1 KiB/s down, 256 B/s up, 30 s)")
	flag.DurationVar(&o.duration, "duration", 0, "traffic time once every session is open (default 60s; 30s with -concurrent)")
	flag.IntVar(&o.downRate, "down-rate", 0, "server→viewer bytes/s per session (default 32 KiB; 1 KiB with -concurrent)")
	flag.IntVar(&o.upRate, "up-rate", 0, "viewer→server clipboard bytes/s per session (default 4 KiB; 256 with -concurrent)")
	flag.StringVar(&o.vncedge, "vncedge", "", "vncedge binary to run as a separate process (default: in-process)")
	flag.IntVar(&o.dialPar, "dial-parallel", 128, "handshakes in flight while opening sessions")
	flag.IntVar(&o.loops, "loops", 0, "vncedge event loops (0: one per CPU)")
	flag.Parse()
	if o.concurrent > 0 {
		o.sessions = o.concurrent
		o.duration = cmp(o.duration, 30*time.Second)
		o.downRate = cmpInt(o.downRate, 1<<10)
		o.upRate = cmpInt(o.upRate, 256)
	}
	o.duration = cmp(o.duration, 60*time.Second)
	o.downRate = cmpInt(o.downRate, 32<<10)
	o.upRate = cmpInt(o.upRate, 4<<10)
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "vncsoak:", err)
		os.Exit(1)
	}
}

func cmp(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func cmpInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// target is the vncedge under test: this process or a child.
type target struct {
	pid   int
	addr  string
	srv   *proxy.Server // in-process only
	stop  func() error
	label string
}

func run(o options) error {
	// Descriptors per session: here a viewer conn and a server conn; in
	// vncedge a viewer conn and an upstream conn (four here when in-process).
	perSession := 2
	if o.vncedge == "" {
		perSession = 4
	}
	need := uint64(perSession*o.sessions + 64)
	limit := raiseNOFILE(need)
	if limit < need {
		fmt.Printf("warning: open-file limit %d < %d needed for %d sessions (%d each, plus a few): expect failures at the limit\n",
			limit, need, o.sessions, perSession)
	}
	fake, err := startFake(o.downRate)
	if err != nil {
		return err
	}
	defer fake.close()
	tg, err := startTarget(o, fake.ln.Addr().String())
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = tg.stop()
		}
	}()

	fmt.Printf("vncsoak: %d sessions, %v of traffic each (%s/s down, %s/s up per session), vncedge %s, %d CPUs, fd limit %d\n",
		o.sessions, o.duration, size(int64(o.downRate)), size(int64(o.upRate)), tg.label, runtime.NumCPU(), limit)
	base := sample(tg.pid)
	cpu0 := procCPU(tg.pid)
	wall0 := time.Now()

	// Open every session, then start the traffic at once.
	var (
		wg, ready sync.WaitGroup
		results   = make(chan result, o.sessions)
		start     = make(chan time.Time, o.sessions)
		dials     = make(chan struct{}, o.dialPar)
	)
	for range o.sessions {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			dials <- struct{}{}
			results <- viewer(tg.addr, fake, o.upRate, func() { <-dials; ready.Done() }, start)
		}()
	}
	ready.Wait()
	setup := time.Since(wall0)
	t1 := time.Now()
	for range o.sessions {
		start <- t1.Add(o.duration)
	}

	// Sample vncedge while the traffic runs.
	peak := base
	var mu sync.Mutex
	sampling := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
			s := sample(tg.pid)
			mu.Lock()
			peak.rss, peak.fds = max(peak.rss, s.rss), max(peak.fds, s.fds)
			peak.heap = max(peak.heap, s.heap)
			mu.Unlock()
		}
	}()
	wg.Wait()
	close(sampling)
	<-samplerDone
	close(results)
	elapsed := time.Since(t1)
	cpu := procCPU(tg.pid) - cpu0
	wall := time.Since(wall0)

	var up, down int64
	var errs []string
	var ends []time.Duration
	nerr := 0
	for r := range results {
		up += r.up
		down += r.down
		ends = append(ends, r.end)
		if r.err != nil {
			nerr++
			if len(errs) < 10 {
				errs = append(errs, r.err.Error())
			}
		}
	}

	// After: every session gone, descriptors back (bounded wait).
	after := sample(tg.pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && after.fds > base.fds; {
		time.Sleep(100 * time.Millisecond) // a bounded poll
		after = sample(tg.pid)
	}
	active := int64(-1)
	if tg.srv != nil {
		active = tg.srv.Stats().Active
	}
	stopped = true
	stopErr := tg.stop()

	each := func(v int64) string { return size(v / int64(o.sessions)) }
	fmt.Printf("setup: %d sessions open in %v\n", o.sessions, setup.Round(time.Millisecond))
	fmt.Printf("traffic: %v (%v asked): %s down (%s/s), %s up (%s/s), every byte checked in order at both ends\n",
		elapsed.Round(time.Millisecond), o.duration, size(down), size(int64(float64(down)/elapsed.Seconds())),
		size(up), size(int64(float64(up)/elapsed.Seconds())))
	slices.Sort(ends)
	pct := func(q float64) time.Duration {
		return ends[min(len(ends)-1, int(q*float64(len(ends))))].Round(time.Millisecond)
	}
	fmt.Printf("end: from the deadline to the last byte and close frame at the viewer: p50 %v, p99 %v, max %v\n", pct(0.5), pct(0.99), pct(1))
	fmt.Printf("errors: %d of %d sessions\n", nerr, o.sessions)
	for _, e := range errs {
		fmt.Printf("  %s\n", e)
	}
	fmt.Printf("%s RSS: before %s, peak %s, after %s; peak over before: %s, %s per session\n",
		tg.who(), size(base.rss), size(peak.rss), size(after.rss), size(peak.rss-base.rss), each(peak.rss-base.rss))
	if tg.srv != nil {
		fmt.Printf("Go heap in use (whole process): before %s, peak %s, %s per session\n",
			size(base.heap), size(peak.heap), each(peak.heap-base.heap))
	}
	fmt.Printf("%s CPU: %.1f s user+sys over %.1f s wall (%.0f%% of one core), %.2f ms per session-second, %.1f s per GB relayed\n",
		tg.who(), cpu.Seconds(), wall.Seconds(), 100*cpu.Seconds()/wall.Seconds(),
		1000*cpu.Seconds()/(float64(o.sessions)*elapsed.Seconds()), cpu.Seconds()/(float64(up+down)/1e9))
	fmt.Printf("%s open fds: before %d, peak %d, after %d", tg.who(), base.fds, peak.fds, after.fds)
	if active >= 0 {
		fmt.Printf("; sessions still active after the run: %d", active)
	}
	fmt.Println()
	if stopErr != nil {
		return fmt.Errorf("stopping vncedge: %w", stopErr)
	}
	if nerr > 0 {
		return fmt.Errorf("%d sessions failed", nerr)
	}
	if after.fds > base.fds+2 {
		return fmt.Errorf("vncedge holds %d descriptors after the run, %d before", after.fds, base.fds)
	}
	return nil
}

func (t *target) who() string {
	if t.srv != nil {
		return "process (vncedge + load + fake server)"
	}
	return "vncedge"
}

func startTarget(o options, upstream string) (*target, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	if o.vncedge != "" {
		args := []string{"--listen", addr, "--target", "tcp://" + upstream, "--admin", "", "--log-level", "error"}
		if o.loops > 0 {
			args = append(args, "--loops", strconv.Itoa(o.loops))
		}
		cmd := exec.Command(o.vncedge, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		t := &target{pid: cmd.Process.Pid, addr: addr, label: fmt.Sprintf("%s (pid %d)", o.vncedge, cmd.Process.Pid)}
		t.stop = func() error {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				return err
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				return errors.New("vncedge did not exit within 15s of SIGTERM")
			}
		}
		for deadline := time.Now().Add(10 * time.Second); ; {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return t, nil
			}
			if time.Now().After(deadline) {
				_ = t.stop()
				return nil, fmt.Errorf("vncedge did not listen on %s: %w", addr, err)
			}
			time.Sleep(20 * time.Millisecond) // a bounded poll
		}
	}
	u, _ := url.Parse("tcp://" + upstream)
	srv, err := proxy.New(proxy.Config{
		Addr:     addr,
		Loops:    o.loops,
		Resolver: &proxy.TargetResolver{Upstream: u, Control: rfbparse.User},
		Policy:   rfbparse.DefaultPolicy(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-done:
		return nil, err
	}
	return &target{pid: os.Getpid(), addr: addr, srv: srv, label: "in-process", stop: func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			return err
		}
		return <-done
	}}, nil
}

// raiseNOFILE raises this process's descriptor limit toward need (the hard
// limit too, when allowed); children inherit it. It returns the soft limit.
func raiseNOFILE(need uint64) uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Max < need {
		up := syscall.Rlimit{Cur: need, Max: need}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return need
		}
	}
	rl.Cur = rl.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) // explicit: children keep it
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	return rl.Cur
}

// ---------------------------------------------------------------------------
// Measurements

type stat struct{ rss, heap, fds int64 }

func sample(pid int) stat {
	s := stat{rss: statusKB(pid, "VmRSS") << 10, fds: countFDs(pid)}
	if pid == os.Getpid() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s.heap = int64(ms.HeapInuse)
	}
	return s
}

func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func countFDs(pid int) int64 {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return int64(len(ents))
}

// procCPU is utime+stime of pid (USER_HZ is 100 on Linux).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / 100
}

func size(n int64) string {
	switch a := max(n, -n); {
	case a >= 10<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case a >= 10<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case a >= 10<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ---------------------------------------------------------------------------
// Traffic: the fake VNC server and the viewers

// upSalt separates a session's viewer→server stream from its server→viewer one.
const upSalt = 0x75705f7374726561

func streamOf(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

// pacer spaces writes to a rate, with bursts of up to 50 ms worth.
type pacer struct {
	rate int
	due  time.Time
}

func (p *pacer) wait(n int, end time.Time, stop <-chan struct{}) {
	const burst = 50 * time.Millisecond
	if now := time.Now(); p.due.Before(now.Add(-burst)) {
		p.due = now.Add(-burst)
	}
	p.due = p.due.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	d := time.Until(p.due)
	if !end.IsZero() {
		d = min(d, time.Until(end))
	}
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}

// fakeSession is the server side of one session.
type fakeSession struct {
	downSent, upRecv atomic.Int64
	err              error // set before done is closed
	done             chan struct{}
}

// fake is a minimal RFB 3.8 server (security None). After ServerInit, whose
// desktop name is the session's seed in hex, it streams the seed's bytes in
// random chunks at rate, and checks the viewer's ClientCutText payloads
// against the seed^upSalt stream, until the viewer's end sentinel (a
// FramebufferUpdateRequest); then it closes.
type fake struct {
	ln       net.Listener
	rate     int
	base     uint64
	next     atomic.Uint64
	sessions sync.Map // seed → *fakeSession
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func startFake(rate int) (*fake, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fake{ln: ln, rate: rate, base: rand.Uint64(), conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *fake) close() {
	f.ln.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fake) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // EMFILE and the like: the viewer's dial fails and is counted
		}
		f.mu.Lock()
		f.conns[c] = struct{}{}
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() {
				f.mu.Lock()
				delete(f.conns, c)
				f.mu.Unlock()
				c.Close()
			}()
			f.serve(c)
		}()
	}
}

func (f *fake) serve(c net.Conn) {
	seed := f.base ^ f.next.Add(1)*0x9e3779b97f4a7c15
	st := &fakeSession{done: make(chan struct{})}
	f.sessions.Store(seed, st)
	defer close(st.done)
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute)) // a hang guard
	if err := handshake(c, fmt.Sprintf("%016x", seed)); err != nil {
		st.err = fmt.Errorf("server handshake: %w", err)
		return
	}
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() { werr <- f.write(c, seed, st, stop) }()
	rerr := read(c, seed, st)
	close(stop)
	if err := <-werr; rerr == nil {
		rerr = err
	}
	st.err = rerr
}

func handshake(c net.Conn, name string) error {
	init := []byte{0, 8, 0, 8, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(init[20:], uint32(len(name)))
	init = append(init, name...)
	var b [12]byte
	for _, s := range []struct {
		send []byte
		read int
	}{{[]byte("RFB 003.008\n"), 12}, {[]byte{1, 1}, 1}, {[]byte{0, 0, 0, 0}, 1}, {init, 0}} {
		if _, err := c.Write(s.send); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, b[:s.read]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fake) write(c net.Conn, seed uint64, st *fakeSession, stop <-chan struct{}) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	src := streamOf(seed)
	buf := make([]byte, 16<<10)
	p := pacer{rate: f.rate}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		n := 1 + rng.IntN(512)
		if rng.IntN(4) == 0 {
			n = 1 + rng.IntN(len(buf))
		}
		p.wait(n, time.Time{}, stop)
		_, _ = src.Read(buf[:n])
		k, err := c.Write(buf[:n])
		st.downSent.Add(int64(k))
		if err != nil {
			return fmt.Errorf("server write after %d bytes: %w", st.downSent.Load(), err)
		}
	}
}

func read(c net.Conn, seed uint64, st *fakeSession) error {
	br := bufio.NewReaderSize(c, 4<<10)
	want := streamOf(seed ^ upSalt)
	got, exp := make([]byte, 4<<10), make([]byte, 4<<10)
	var hdr [9]byte
	for {
		typ, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("server read after %d clipboard bytes: %w", st.upRecv.Load(), err)
		}
		switch typ {
		case rfbparse.MsgClientCutText:
			if _, err := io.ReadFull(br, hdr[:7]); err != nil {
				return fmt.Errorf("server read: %w", err)
			}
			for left := int(binary.BigEndian.Uint32(hdr[3:7])); left > 0; {
				k := min(left, len(got))
				if _, err := io.ReadFull(br, got[:k]); err != nil {
					return fmt.Errorf("server read after %d clipboard bytes: %w", st.upRecv.Load(), err)
				}
				_, _ = want.Read(exp[:k])
				if !slices.Equal(got[:k], exp[:k]) {
					return fmt.Errorf("viewer→server bytes differ near byte %d", st.upRecv.Load())
				}
				st.upRecv.Add(int64(k))
				left -= k
			}
		case rfbparse.MsgFramebufferUpdateReq:
			_, err := io.ReadFull(br, hdr[:9])
			return err
		default:
			return fmt.Errorf("server got message type %d", typ)
		}
	}
}

type result struct {
	up, down int64
	err      error
	end      time.Duration // from the deadline to the verified close
}

// viewer runs one session: handshake, ready, wait for the start (which
// carries the deadline), then send clipboard messages cut into frames at
// random points while reading and checking the server's stream; at the
// deadline send the end sentinel and read to the close frame.
func viewer(addr string, f *fake, upRate int, ready func(), start <-chan time.Time) (res result) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	v, err := rfbclient.DialWS(ctx, "ws://"+addr+"/", []string{"binary"}, nil)
	cancel()
	if err != nil {
		ready()
		res.err = err
		return
	}
	defer v.Close()
	_ = v.NetConn().SetDeadline(time.Now().Add(time.Minute))
	name, err := viewerHandshake(v)
	ready()
	if err != nil {
		res.err = fmt.Errorf("viewer handshake: %w", err)
		return
	}
	seed, _ := strconv.ParseUint(name, 16, 64)
	deadline := <-start
	_ = v.NetConn().SetDeadline(deadline.Add(2 * time.Minute)) // a hang guard

	readDone := make(chan result, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 2))
		want := streamOf(seed)
		got, exp := make([]byte, 8<<10), make([]byte, 8<<10)
		var n int64
		for {
			k, err := v.Read(got[:1+rng.IntN(len(got))])
			if k > 0 {
				_, _ = want.Read(exp[:k])
				if !slices.Equal(got[:k], exp[:k]) {
					readDone <- result{down: n, err: fmt.Errorf("server→viewer bytes differ near byte %d", n)}
					return
				}
				n += int64(k)
			}
			if err != nil {
				var ce *rfbclient.CloseError
				if errors.As(err, &ce) && ce.Code == ws.StatusNormalClosure && ce.Reason == "upstream-closed" {
					err = nil
				} else {
					err = fmt.Errorf("viewer read after %d bytes: %w", n, err)
				}
				readDone <- result{down: n, err: err}
				return
			}
		}
	}()

	rng := rand.New(rand.NewPCG(seed, 3))
	src := streamOf(seed ^ upSalt)
	p := pacer{rate: upRate}
	var pending []byte
	send := func(all bool) error {
		for len(pending) > 0 && (all || len(pending) >= 2<<10) {
			k := 1 + rng.IntN(min(len(pending), 4<<10))
			var err error
			if rng.IntN(6) == 0 && k > 1 { // a fragmented message
				j := 1 + rng.IntN(k-1)
				err = v.WriteFrameHeader(ws.Header{OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: int64(j)}, pending[:j])
				if err == nil {
					err = v.WriteFrameHeader(ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Mask: ws.NewMask(), Length: int64(k - j)}, pending[j:k])
				}
			} else {
				err = v.WriteFrame(ws.OpBinary, pending[:k])
			}
			if err != nil {
				return fmt.Errorf("viewer write after %d clipboard bytes: %w", res.up, err)
			}
			pending = pending[k:]
		}
		return nil
	}
	for time.Now().Before(deadline) && res.err == nil {
		n := rng.IntN(256)
		if rng.IntN(8) == 0 {
			n = rng.IntN(8 << 10)
		}
		p.wait(8+n, deadline, nil)
		msg := make([]byte, 8+n)
		msg[0] = rfbparse.MsgClientCutText
		binary.BigEndian.PutUint32(msg[4:], uint32(n))
		_, _ = src.Read(msg[8:])
		pending = append(pending, msg...)
		res.up += int64(n)
		res.err = send(false)
	}
	if res.err == nil {
		pending = append(pending, 3, 0, 0, 0, 0, 0, 0, 8, 0, 8) // the end sentinel
		res.err = send(true)
	}
	if res.err != nil {
		_ = v.NetConn().Close()
		<-readDone
		return
	}
	r := <-readDone
	res.down, res.err, res.end = r.down, r.err, time.Since(deadline)
	if res.err != nil {
		return
	}
	x, ok := f.sessions.Load(seed)
	if !ok {
		res.err = fmt.Errorf("server has no session %016x", seed)
		return
	}
	st := x.(*fakeSession)
	select {
	case <-st.done:
	case <-time.After(30 * time.Second):
		res.err = errors.New("server side of the session did not finish")
		return
	}
	switch {
	case st.err != nil:
		res.err = st.err
	case st.downSent.Load() != res.down:
		res.err = fmt.Errorf("server sent %d bytes, viewer received %d", st.downSent.Load(), res.down)
	case st.upRecv.Load() != res.up:
		res.err = fmt.Errorf("viewer sent %d clipboard bytes, server received %d", res.up, st.upRecv.Load())
	}
	return
}

// viewerHandshake runs the viewer side of RFB 3.8 (security None) with exact
// reads and returns the desktop name.
func viewerHandshake(v *rfbclient.WSConn) (string, error) {
	buf := make([]byte, 24)
	for _, step := range []struct {
		read int
		send []byte
	}{{12, []byte("RFB 003.008\n")}, {2, []byte{1}}, {4, []byte{1}}, {24, nil}} {
		if _, err := io.ReadFull(v, buf[:step.read]); err != nil {
			return "", err
		}
		if step.send != nil {
			if _, err := v.Write(step.send); err != nil {
				return "", err
			}
		}
	}
	name := make([]byte, binary.BigEndian.Uint32(buf[20:]))
	_, err := io.ReadFull(v, name)
	return string(name), err
}
