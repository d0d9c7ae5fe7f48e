// Command vncbench is the peer benchmark driver for vncedge.
//
//	vncbench server   -tcp ADDR -ws ADDR        the benchmark RFB server (raw TCP and WebSocket)
//	vncbench tcp-relay -listen ADDR -target ADDR io.Copy relay (contender b)
//	vncbench go-proxy -listen ADDR -target ADDR  gorilla/websocket baseline proxy (contender e)
//	vncbench load -addr ADDR -workload W -n N -size S -duration D   one load run, printed
//	vncbench compare [flags]                     the whole matrix; writes docs/BENCHMARKS.md
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"vncedge/bench/loadgen"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: vncbench server|tcp-relay|go-proxy|load|compare [flags]")
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "server":
		err = serverCmd(args)
	case "tcp-relay", "go-proxy":
		err = relayCmd(cmd, args)
	case "load":
		err = loadCmd(args)
	case "compare":
		err = compareCmd(args)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vncbench:", err)
		os.Exit(1)
	}
}

// serveUntilSignal runs fns until one fails or SIGTERM/SIGINT arrives.
func serveUntilSignal(fns ...func() error) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errs <- fn() }()
	}
	select {
	case <-sigs:
		return nil
	case err := <-errs:
		return err
	}
}

func serverCmd(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	tcp := fs.String("tcp", "127.0.0.1:5955", "raw RFB listen address")
	ws := fs.String("ws", "127.0.0.1:5956", "WebSocket RFB listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lt, err := net.Listen("tcp", *tcp)
	if err != nil {
		return err
	}
	lw, err := net.Listen("tcp", *ws)
	if err != nil {
		return err
	}
	var s loadgen.Server
	return serveUntilSignal(func() error { return s.ServeTCP(lt) }, func() error { return s.ServeWS(lw) })
}

func relayCmd(kind string, args []string) error {
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:6090", "listen address")
	target := fs.String("target", "127.0.0.1:5955", "upstream host:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	if kind == "tcp-relay" {
		return serveUntilSignal(func() error { return loadgen.TCPRelay(ln, *target) })
	}
	return serveUntilSignal(func() error { return loadgen.NewGoProxy(*target).Serve(ln) })
}

func loadCmd(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:6080", "WebSocket address of the proxy or server")
	fs.StringVar(&cfg.Workload, "workload", loadgen.RTT, "rtt, keys, down or idle")
	fs.IntVar(&cfg.N, "n", 1, "sessions")
	fs.IntVar(&cfg.Size, "size", 1024, "update size in bytes (16+4k)")
	fs.IntVar(&cfg.Window, "window", 32, "keys: unacknowledged key events per session")
	fs.DurationVar(&cfg.Warmup, "warmup", 250*time.Millisecond, "warm-up before the window")
	fs.DurationVar(&cfg.Duration, "duration", time.Second, "measurement window")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var c0 time.Duration
	cfg.Start = func() { c0 = loadgen.SelfCPU() }
	var load time.Duration
	cfg.Stop = func() { load = loadgen.SelfCPU() - c0 }
	r, err := loadgen.Run(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("%s N=%d S=%d: %.0f ops/s %.1f MB/s p50=%v p99=%v p99.9=%v setup=%v loadgen-cpu=%v in %v\n",
		cfg.Workload, cfg.N, cfg.Size, r.Rate(), r.MBps(), r.Pct(0.5), r.Pct(0.99), r.Pct(0.999),
		r.Setup.Round(time.Millisecond), load, r.Elapsed.Round(time.Millisecond))
	return nil
}
