package loadgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Workloads.
const (
	RTT  = "rtt"  // FramebufferUpdateRequest → one update of Size bytes, one outstanding per session
	Keys = "keys" // KeyEvents, one per WebSocket frame, Window unacknowledged per session
	Down = "down" // the server pushes updates of Size bytes continuously
	Idle = "idle" // sessions held open after the handshake
)

// Config is one load run.
type Config struct {
	Addr     string        // proxy (or server) host:port
	Workload string        // RTT, Keys, Down or Idle
	N        int           // sessions
	Size     int           // update size in bytes (RTT, Down); 16 + 4·k
	Window   int           // Keys: unacknowledged key events per session (default 32)
	Warmup   time.Duration // load before the window opens
	Duration time.Duration // window length; with Ops > 0 the deadline for reaching Ops
	Ops      int64         // if > 0, close the window once this many operations completed
	// DialParallel bounds concurrent handshakes (default 32).
	DialParallel int
	// Start and Stop, when set, run as the window opens and closes (CPU snapshots).
	Start, Stop func()
}

// Result is what the window measured.
type Result struct {
	Sessions int
	Ops      int64         // round trips, key events, or whole updates received
	Bytes    int64         // payload bytes received by the viewers
	Elapsed  time.Duration // window length
	Setup    time.Duration // time to complete all N handshakes
	Lat      []time.Duration
}

// Rate is operations per second.
func (r *Result) Rate() float64 { return float64(r.Ops) / r.Elapsed.Seconds() }

// MBps is payload megabytes (10^6) per second at the viewers.
func (r *Result) MBps() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

// Pct returns the q-quantile (0..1) of the recorded latencies.
func (r *Result) Pct(q float64) time.Duration {
	if len(r.Lat) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Lat)))
	return r.Lat[min(i, len(r.Lat)-1)]
}

// Sessions is a set of handshaken clients.
type Sessions struct {
	C []*Client
}

// DialN opens n sessions to addr with at most par handshakes in flight.
func DialN(addr string, n, par int) (*Sessions, error) {
	if par <= 0 {
		par = 32
	}
	s := &Sessions{C: make([]*Client, n)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, par)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := Dial(addr, 20*time.Second)
			if err != nil {
				mu.Lock()
				if first == nil {
					first = fmt.Errorf("session %d: %w", i, err)
				}
				mu.Unlock()
				return
			}
			s.C[i] = c
		}()
	}
	wg.Wait()
	if first != nil {
		s.Close()
		return nil, first
	}
	return s, nil
}

// Close closes every session.
func (s *Sessions) Close() {
	for _, c := range s.C {
		if c != nil {
			c.Close()
		}
	}
}

type runState struct {
	cfg     Config
	ops     atomic.Int64
	bytes   atomic.Int64
	rec     atomic.Bool
	stop    atomic.Bool
	target  atomic.Int64 // ops count that closes the window; 0 = none
	reached chan struct{}
	once    sync.Once
	mu      sync.Mutex
	lat     []time.Duration
	errs    atomic.Int64
	err     atomic.Value
}

func (st *runState) addOps(k int64) {
	if v := st.ops.Add(k); st.rec.Load() {
		if t := st.target.Load(); t > 0 && v >= t {
			st.once.Do(func() { close(st.reached) })
		}
	}
}

// Run dials cfg.N sessions, runs the workload and measures one window.
func Run(cfg Config) (*Result, error) {
	if cfg.Window <= 0 {
		cfg.Window = 32
	}
	t0 := time.Now()
	ss, err := DialN(cfg.Addr, cfg.N, cfg.DialParallel)
	if err != nil {
		return nil, err
	}
	defer ss.Close()
	res := &Result{Sessions: cfg.N, Setup: time.Since(t0)}
	if cfg.Workload == Idle {
		if cfg.Start != nil {
			cfg.Start()
		}
		if cfg.Stop != nil {
			cfg.Stop()
		}
		return res, nil
	}
	st := &runState{cfg: cfg, reached: make(chan struct{})}
	var work func(*Client, *runState) error
	switch cfg.Workload {
	case RTT:
		work = rttWorker
	case Keys:
		work = keysWorker
	case Down:
		work = downWorker
	default:
		return nil, fmt.Errorf("unknown workload %q", cfg.Workload)
	}
	if cfg.Workload != Keys {
		if _, _, err := UpdateDims(cfg.Size); err != nil {
			return nil, err
		}
	}
	var wg sync.WaitGroup
	for _, c := range ss.C {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(c, st); err != nil && !st.stop.Load() {
				st.errs.Add(1)
				st.err.CompareAndSwap(nil, err)
			}
		}()
	}
	finish := func() {
		st.stop.Store(true)
		ss.Close()
		wg.Wait()
	}
	warm := time.NewTimer(cfg.Warmup)
	<-warm.C
	if e := st.err.Load(); e != nil {
		finish()
		return nil, fmt.Errorf("%d sessions failed, first: %w", st.errs.Load(), e.(error))
	}
	if cfg.Start != nil {
		cfg.Start()
	}
	ops0, bytes0 := st.ops.Load(), st.bytes.Load()
	if cfg.Ops > 0 {
		st.target.Store(ops0 + cfg.Ops)
	}
	w0 := time.Now()
	st.rec.Store(true)
	window := time.NewTimer(cfg.Duration)
	select {
	case <-window.C:
		if cfg.Ops > 0 {
			finish()
			return nil, fmt.Errorf("%d of %d operations in %v", st.ops.Load()-ops0, cfg.Ops, cfg.Duration)
		}
	case <-st.reached:
	}
	st.rec.Store(false)
	res.Elapsed = time.Since(w0)
	res.Ops, res.Bytes = st.ops.Load()-ops0, st.bytes.Load()-bytes0
	if cfg.Stop != nil {
		cfg.Stop()
	}
	finish()
	if e := st.err.Load(); e != nil {
		return nil, fmt.Errorf("%d sessions failed, first: %w", st.errs.Load(), e.(error))
	}
	if cfg.Workload == Down {
		res.Ops = res.Bytes / int64(cfg.Size)
	}
	st.mu.Lock()
	res.Lat = st.lat
	st.mu.Unlock()
	slices.Sort(res.Lat)
	return res, nil
}

func rttWorker(c *Client, st *runState) error {
	w, h, _ := UpdateDims(st.cfg.Size)
	req := []byte{3, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(req[6:], w)
	binary.BigEndian.PutUint16(req[8:], h)
	frame := maskFrame(req)
	c.Grow(64 << 10)
	size := st.cfg.Size
	lat := make([]time.Duration, 0, 1024)
	defer func() {
		st.mu.Lock()
		st.lat = append(st.lat, lat...)
		st.mu.Unlock()
	}()
	for !st.stop.Load() {
		t0 := time.Now()
		if err := c.Send(frame); err != nil {
			return err
		}
		for left := size; left > 0; {
			p, err := c.Next()
			if err != nil {
				return err
			}
			left -= len(p)
			if left < 0 {
				return errors.New("rtt: more bytes than one update")
			}
		}
		d := time.Since(t0)
		if st.rec.Load() && len(lat) < 1<<20 {
			lat = append(lat, d)
		}
		st.bytes.Add(int64(size))
		st.addOps(1)
	}
	return nil
}

func keysWorker(c *Client, st *runState) error {
	win := st.cfg.Window
	down := maskFrame([]byte{4, 1, 0, 0, 0, 0, 0, 'a'})
	up := maskFrame([]byte{4, 0, 0, 0, 0, 0, 0, 'a'})
	fl := len(down)
	batch := make([]byte, 0, (2*win+1)*fl)
	for range win + 1 {
		batch = append(batch, down...)
		batch = append(batch, up...)
	}
	c.Grow(16 << 10)
	inflight, sent := 0, 0
	for !st.stop.Load() {
		if inflight < win {
			k := win - inflight
			off := (sent & 1) * fl
			if err := c.Send(batch[off : off+k*fl]); err != nil {
				return err
			}
			sent += k
			inflight += k
		}
		p, err := c.Next()
		if err != nil {
			return err
		}
		inflight -= len(p)
		st.bytes.Add(int64(len(p)))
		st.addOps(int64(len(p)))
	}
	return nil
}

func downWorker(c *Client, st *runState) error {
	w, h, _ := UpdateDims(st.cfg.Size)
	req := []byte{150, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint16(req[6:], w)
	binary.BigEndian.PutUint16(req[8:], h)
	if err := c.Send(maskFrame(req)); err != nil {
		return err
	}
	c.Grow(256 << 10)
	size := int64(st.cfg.Size)
	var part int64
	for !st.stop.Load() {
		p, err := c.Next()
		if err != nil {
			return err
		}
		st.bytes.Add(int64(len(p)))
		part += int64(len(p))
		if part >= size {
			st.addOps(part / size)
			part %= size
		}
	}
	return nil
}
