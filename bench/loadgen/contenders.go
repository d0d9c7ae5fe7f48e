package loadgen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// Contender names, in table order.
const (
	Direct     = "direct"      // (a) WebSocket straight to the server
	TCPRelayC  = "tcp-relay"   // (b) io.Copy relay in front of the WebSocket server
	VncedgeTCP = "vncedge-tcp" // (c) vncedge, tcp:// upstream
	VncedgeRec = "vncedge-rec" // (c′) vncedge-tcp recording every channel (--record)
	VncedgeWS  = "vncedge-ws"  // (d) vncedge, ws:// upstream through websockify
	GoProxyC   = "go-gorilla"  // (e) goroutine-per-direction gorilla/websocket proxy
	Websockify = "websockify"  // (f) websockify 0.10 (Debian), forks per connection
)

// AllContenders is the table order.
var AllContenders = []string{Direct, TCPRelayC, VncedgeTCP, VncedgeRec, VncedgeWS, GoProxyC, Websockify}

// Cell is one point of the comparison matrix: a workload, its update size
// (RTT, Down) and its session count.
type Cell struct {
	Workload string
	Size, N  int
}

// contenderCells are the cells of the contenders that run only part of the
// matrix. vncedge-rec runs the cells its cost against vncedge-tcp is reported
// for, and no idle cell.
var contenderCells = map[string][]Cell{
	VncedgeRec: {
		{Down, 1 << 20, 16}, {Down, 1 << 20, 64}, {Down, 256 << 10, 64}, {RTT, 1 << 10, 16},
	},
}

// DeclaredCells returns the cells contender name is limited to, nil for a
// contender that runs the whole matrix.
func DeclaredCells(name string) []Cell { return slices.Clone(contenderCells[name]) }

// Runs reports whether contender name runs cell c. A contender that declares
// no cells runs them all; an Idle cell matches a declared Idle cell of any N
// (the idle session count is a flag of the comparison).
func Runs(name string, c Cell) bool {
	cs, ok := contenderCells[name]
	if !ok {
		return true
	}
	for _, d := range cs {
		if d == c || (c.Workload == Idle && d.Workload == Idle) {
			return true
		}
	}
	return false
}

// Env holds the processes of one comparison: the RFB server and the
// contenders, each a child process so that /proc accounts for it alone.
type Env struct {
	Vncbench   string // path of the vncbench binary (server, tcp-relay, go-gorilla)
	Vncedge    string // path of the vncedge binary
	Websockify string // path of websockify
	LogDir     string // stderr of every child goes here
	RecordDir  string // vncedge-rec: parent of its per-start recording directories ("": os.TempDir)

	ServerTCP, ServerWS string
}

// Proc is one running child.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
}

// PID returns the child's pid (0 when p is nil).
func (p *Proc) PID() int {
	if p == nil || p.Cmd == nil || p.Cmd.Process == nil {
		return 0
	}
	return p.Cmd.Process.Pid
}

// Stop ends the child (SIGTERM, then SIGKILL after 5 s) and its process group.
func (p *Proc) Stop() {
	if p == nil || p.Cmd == nil || p.Cmd.Process == nil {
		return
	}
	pid := p.Cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(done) }()
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

// Contender is a running contender.
type Contender struct {
	Name  string
	Addr  string // where viewers connect
	Proxy *Proc  // the process whose CPU and memory are "the proxy" (nil: direct)
	Hop   *Proc  // vncedge-ws: the websockify in between (its CPU is reported apart)
	// RecDir is vncedge-rec's --record directory, made for this start and
	// removed by Stop ("" for the others).
	RecDir string
}

// PID is the proxy process id (0 for direct).
func (c *Contender) PID() int { return c.Proxy.PID() }

// Stop stops the contender's processes.
func (c *Contender) Stop() {
	c.Proxy.Stop()
	c.Hop.Stop()
	if c.RecDir != "" {
		_ = os.RemoveAll(c.RecDir)
	}
}

// RecBytes is the total size of the files under RecDir: what the recorder
// wrote so far (0 without a RecDir).
func (c *Contender) RecBytes() int64 {
	if c.RecDir == "" {
		return 0
	}
	var n int64
	_ = filepath.WalkDir(c.RecDir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil // a file the recorder is renaming or removing: skip it
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// FreeAddr returns a free 127.0.0.1 port.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitListen polls addr until it accepts a connection, at most 15 s.
func waitListen(addr string, p *Proc) error {
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; i < 3000 && time.Now().Before(deadline); i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Cmd.ProcessState != nil {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling a listener with a deadline
	}
	return fmt.Errorf("%s did not listen on %s", p.Name, addr)
}

func (e *Env) start(name, bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	f, err := os.OpenFile(filepath.Join(e.LogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &Proc{Name: name, Cmd: cmd}, nil
}

// StartServer starts the RFB server (raw TCP and WebSocket listeners).
func (e *Env) StartServer() (*Proc, error) {
	var err error
	if e.ServerTCP, err = FreeAddr(); err != nil {
		return nil, err
	}
	if e.ServerWS, err = FreeAddr(); err != nil {
		return nil, err
	}
	p, err := e.start("server", e.Vncbench, "server", "-tcp", e.ServerTCP, "-ws", e.ServerWS)
	if err != nil {
		return nil, err
	}
	if err := waitListen(e.ServerTCP, p); err != nil {
		p.Stop()
		return nil, err
	}
	if err := waitListen(e.ServerWS, p); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Start starts the named contender in front of the server.
func (e *Env) Start(name string) (*Contender, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	c := &Contender{Name: name, Addr: addr}
	var p *Proc
	switch name {
	case Direct:
		c.Addr = e.ServerWS
		return c, nil
	case TCPRelayC:
		p, err = e.start(name, e.Vncbench, "tcp-relay", "-listen", addr, "-target", e.ServerWS)
	case VncedgeTCP:
		p, err = e.start(name, e.Vncedge, "--listen", addr, "--admin", "", "--target", "tcp://"+e.ServerTCP, "--log-level", "warn")
	case VncedgeRec:
		if c.RecDir, err = os.MkdirTemp(e.RecordDir, "vncbench-rec-"); err != nil {
			return nil, fmt.Errorf("vncedge-rec: recording directory: %w", err)
		}
		p, err = e.start(name, e.Vncedge, "--listen", addr, "--admin", "", "--target", "tcp://"+e.ServerTCP, "--log-level", "warn",
			"--record", c.RecDir)
	case VncedgeWS:
		hopAddr, herr := FreeAddr()
		if herr != nil {
			return nil, herr
		}
		hop, herr := e.start(name+"-websockify", e.Websockify, hopAddr, e.ServerTCP)
		if herr != nil {
			return nil, herr
		}
		if herr := waitListen(hopAddr, hop); herr != nil {
			hop.Stop()
			return nil, herr
		}
		c.Hop = hop
		p, err = e.start(name, e.Vncedge, "--listen", addr, "--admin", "", "--target", "ws://"+hopAddr+"/", "--log-level", "warn")
	case GoProxyC:
		p, err = e.start(name, e.Vncbench, "go-proxy", "-listen", addr, "-target", e.ServerTCP)
	case Websockify:
		p, err = e.start(name, e.Websockify, addr, e.ServerTCP)
	default:
		return nil, errors.New("unknown contender " + name)
	}
	if err != nil {
		c.Stop()
		return nil, err
	}
	c.Proxy = p
	if err := waitListen(addr, p); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}
