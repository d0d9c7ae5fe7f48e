// Command vncedge is a WebSocket edge proxy for VNC: noVNC viewers connect
// over WebSocket, vncedge applies input policy and relays RFB to the VNC server.
//
// Every flag has an environment equivalent: --dial-timeout is
// VNCEDGE_DIAL_TIMEOUT. Flags on the command line win.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vncedge/cmd/vncedge/demo"
	"vncedge/proxy"
	"vncedge/proxy/cdp"
	"vncedge/proxy/resolve"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

var version = "dev"

// headerFlag collects repeated "Name: value" flags.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }
func (h headerFlag) Set(v string) error {
	name, val, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want \"Name: value\", got %q", v)
	}
	http.Header(h).Add(strings.TrimSpace(name), strings.TrimSpace(val))
	return nil
}

type options struct {
	listen, admin, target, sessions, control, upstreamCA string
	compat, cdpURL                                       string
	web, unixTarget, certFile, keyFile                   string
	trustedProxies, forwardedHeader                      string
	proxyProtocol                                        bool
	tokenSecretFile, tokenPublicKeys, controlPlane       string
	upstreamAPIKey                                       string
	upstreamAllow                                        string
	upstreamIdle                                         time.Duration
	vncPort                                              int
	origins, forbidden, rightButton, logFormat, logLevel string
	allowXVP, noPolicy, showVersion, extMouse            bool
	qemuKeys                                             string
	allowMenuKeys                                        bool
	listenAll                                            bool // --listen was a bare port: every address
	dialTimeout, handshakeTimeout, closeTimeout          time.Duration
	livenessPeriod, controlGrace                         time.Duration
	pingInterval, idleTimeout, maxDuration, drainWindow  time.Duration
	maxSessions, maxPerIP, maxPerOrg                     int
	shutdownTimeout                                      time.Duration
	maxFrame, maxViewerBuffer, highWater, lowWater       int64
	splice                                               bool
	splicePipe                                           int64
	notSentLowat, upRecvBuf                              int
	loops                                                int
	header                                               headerFlag
	trace                                                tracing.Config
	rec                                                  recordOptions
}

func parseFlags(args []string) (*options, error) {
	o := &options{header: headerFlag{}, trace: tracing.DefaultConfig()}
	o.trace.FromEnv() // the standard OTEL_* variables; the flags below win
	o.trace.ServiceVersion = version
	fs := defineFlags(o)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), usageLine)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	return applyEnv(fs, o, pos)
}

// defineFlags declares every flag on a new FlagSet writing into o. The
// README's configuration reference is its PrintDefaults (a test keeps them equal).
func defineFlags(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("vncedge", flag.ContinueOnError)
	d := proxy.DefaultConfig() // the proxy's defaults are the flags' (a test keeps them equal)
	fs.BoolVar(&o.trace.Enabled, "tracing", o.trace.Enabled, "export a span per session over OTLP (also on when OTEL_EXPORTER_OTLP_ENDPOINT is set)")
	fs.StringVar(&o.trace.Endpoint, "otlp-endpoint", o.trace.Endpoint, "OTLP endpoint, host:port or URL (default: the OTEL_EXPORTER_OTLP_* variables, else localhost)")
	fs.StringVar(&o.trace.Protocol, "otlp-protocol", o.trace.Protocol, "OTLP protocol: grpc or http/protobuf")
	fs.BoolVar(&o.trace.Insecure, "otlp-insecure", o.trace.Insecure, "OTLP without TLS")
	fs.Float64Var(&o.trace.SampleRatio, "trace-sample-ratio", o.trace.SampleRatio, "fraction of new traces sampled (a viewer's traceparent decides for its own)")
	fs.StringVar(&o.trace.ServiceName, "service-name", o.trace.ServiceName, "service.name of spans and metrics")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:6080", "viewer listen address (host:port)")
	fs.StringVar(&o.admin, "admin", "127.0.0.1:6081", "admin HTTP address for /healthz, /readyz and /metrics (empty: off)")
	fs.StringVar(&o.target, "target", "", "send every path to this upstream: tcp://host:port, ws://host:port/path or wss://…")
	fs.StringVar(&o.sessions, "sessions", "", "YAML file mapping /v1/stream/{vnc,messages}/{kind}/{id} to upstreams and API keys (reloaded when it changes and on SIGHUP)")
	fs.StringVar(&o.unixTarget, "unix-target", "", "send every path to the VNC server on this unix socket (as websockify's --unix-target)")
	fs.StringVar(&o.web, "web", "", "serve the files in this directory (e.g. noVNC) on the listen address to requests that are not upgrades")
	fs.StringVar(&o.certFile, "cert", "", "PEM certificate (chain) for TLS on the listen address: wss:// and https:// (reloaded when it changes)")
	fs.StringVar(&o.keyFile, "key", "", "PEM private key for --cert (default: the --cert file, if it holds the key too)")
	fs.BoolVar(&o.proxyProtocol, "proxy-protocol", d.ProxyProtocol, "every viewer connection starts with a PROXY protocol v1/v2 header (from a load balancer): the viewer's address is taken from it")
	fs.StringVar(&o.forwardedHeader, "forwarded-header", d.ForwardedHeader, "the field --trusted-proxies write the viewer's address in: x-forwarded-for or forwarded (the other is ignored)")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs whose X-Forwarded-For/Forwarded fields name the viewer's address (ignored from anyone else)")
	fs.StringVar(&o.control, "control", "", "who has control when a session starts: user or agent (default: user with --target, agent with --sessions)")
	fs.Var(o.header, "upstream-header", "extra header for ws/wss --target upstreams, \"Name: value\" (repeatable)")
	fs.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM file of CA certificates trusted for wss:// upstreams (default: system roots)")
	fs.StringVar(&o.tokenSecretFile, "token-secret-file", "", "platform routes authenticated by HS256 JWTs signed with the secret in this file")
	fs.StringVar(&o.tokenPublicKeys, "token-public-keys", "", "comma-separated PEM files of Ed25519/RSA public keys for EdDSA/RS256 JWTs")
	fs.StringVar(&o.controlPlane, "control-plane", "", "platform routes resolved by this control-plane base URL: GET {base}/{kind}/{id} (also polled for liveness)")
	fs.StringVar(&o.upstreamAPIKey, "upstream-api-key", "", "x-api-key vncedge sends to routed wss:// upstreams (token resolver)")
	fs.StringVar(&o.upstreamAllow, "upstream-allow", "", "comma-separated CIDRs, addresses and host names (*.example.com: subdomains) that upstreams and DevTools endpoints from resolver answers may be at (empty: anywhere; the listen and admin addresses never)")
	fs.DurationVar(&o.upstreamIdle, "upstream-idle-timeout", d.UpstreamIdleTimeout, "close sessions whose upstream sent nothing for this long (0: off)")
	fs.IntVar(&o.vncPort, "vnc-port", resolve.DefaultVNCPort, "websockify port next to a browser, for upstreams derived from a browser address")
	fs.StringVar(&o.compat, "compat", "", "refusal style: empty (HTTP statuses before the upgrade) or skyvern (upgrade, then close 1002/1013)")
	fs.StringVar(&o.cdpURL, "cdp-url", "", "DevTools endpoint of the browser behind --target (http://host:port or ws://…), for clipboard copy/paste")
	fs.DurationVar(&o.livenessPeriod, "liveness-period", d.LivenessPeriod, "how often live sessions are re-verified with the control plane")
	fs.DurationVar(&o.controlGrace, "control-grace", d.ControlGrace, "how long a viewer's control state outlives its channels (for reconnects)")
	fs.StringVar(&o.origins, "allowed-origins", "", "comma-separated browser origins allowed besides the same host; * allows any")
	fs.StringVar(&o.forbidden, "forbidden", rfbparse.DefaultForbidden, "comma-separated forbidden shortcuts, e.g. ctrl+o,ctrl+shift+i,ctrl+p")
	fs.StringVar(&o.rightButton, "right-button", "strip", "right mouse button: strip, drop or allow")
	fs.BoolVar(&o.allowXVP, "allow-xvp", false, "pass xvp power-control messages (shutdown, reboot)")
	fs.BoolVar(&o.extMouse, "extended-mouse-buttons", false, "pass 7-byte ExtendedMouseButtons pointer events (only if every VNC server supports them)")
	fs.StringVar(&o.qemuKeys, "qemu-keys", "keysym", "QEMU extended key events: keysym (sent on as plain key events, -258 taken out of SetEncodings: layout-proof) or pass (keycodes reach the server)")
	fs.BoolVar(&o.allowMenuKeys, "allow-context-menu-keys", false, "pass the Menu key and Shift+F10 (dropped unless --right-button allow)")
	fs.BoolVar(&o.noPolicy, "no-policy", false, "relay viewer input uninspected (also allows encrypted security types)")
	fs.DurationVar(&o.dialTimeout, "dial-timeout", d.DialTimeout, "upstream resolve + dial + handshake timeout")
	fs.DurationVar(&o.handshakeTimeout, "handshake-timeout", d.HandshakeTimeout, "time a viewer has to send its upgrade request")
	fs.DurationVar(&o.closeTimeout, "close-timeout", d.CloseTimeout, "time a viewer has to answer our close frame")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "time sessions have to close on SIGINT/SIGTERM")
	fs.Int64Var(&o.maxFrame, "max-frame", d.MaxFramePayload, "largest viewer frame payload in bytes (larger: close 1009)")
	fs.Int64Var(&o.maxViewerBuffer, "max-viewer-buffer", int64(d.MaxViewerBuffer), "bytes queued for a slow viewer before its session is cut")
	fs.Int64Var(&o.highWater, "viewer-high-water", int64(d.ViewerHighWater), "bytes queued for a viewer above which the upstream is not read (backpressure)")
	fs.Int64Var(&o.lowWater, "viewer-low-water", int64(d.ViewerLowWater), "bytes queued for a viewer below which reading the upstream resumes")
	fs.BoolVar(&o.splice, "splice", !d.NoSplice, "send tcp:// upstreams' server stream to viewers with splice(2), without copying it through vncedge (Linux)")
	fs.Int64Var(&o.splicePipe, "splice-pipe-size", int64(d.SplicePipeSize), "pipe capacity per spliced session: the largest frame, and the bytes held for a slow viewer")
	fs.IntVar(&o.notSentLowat, "viewer-notsent-lowat", d.ViewerNotSentLowat, "TCP_NOTSENT_LOWAT of a spliced session's viewer socket: unsent bytes it may hold (0: the kernel's default)")
	fs.IntVar(&o.upRecvBuf, "upstream-recv-buffer", d.UpstreamRecvBuffer, "SO_RCVBUF of upstream TCP sockets, a bound on what the kernel holds from each VNC server (0: kernel autotuning, capped by net.core.rmem_max when set)")
	fs.DurationVar(&o.pingInterval, "ping-interval", d.PingInterval, "ping viewers this often; two missed pongs close the session (negative: off)")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", d.IdleTimeout, "close sessions whose viewer sent nothing for this long (0: off)")
	fs.DurationVar(&o.maxDuration, "max-duration", d.MaxDuration, "close sessions older than this (0: off)")
	fs.DurationVar(&o.drainWindow, "drain-window", 0, "on SIGTERM, keep live sessions this long (new ones get 503) before closing them with 1001")
	fs.IntVar(&o.maxSessions, "max-sessions", d.MaxSessions, "maximum open viewer connections; more get 503 (0: no cap)")
	fs.IntVar(&o.maxPerIP, "max-per-ip", d.MaxPerIP, "maximum open viewer connections per client IP; more get 429 (0: no cap)")
	fs.IntVar(&o.maxPerOrg, "max-per-org", d.MaxPerOrg, "maximum open sessions per organization; more get 429 (0: no cap)")
	// --loops 0 is left to New (GOMAXPROCS), so --help does not print this machine's.
	fs.IntVar(&o.loops, "loops", 0, "event loops (0: one per CPU)")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	defineRecordFlags(fs, &o.rec)
	return fs
}

// applyEnv sets every flag not given on the command line from its VNCEDGE_*
// variable.
func applyEnv(fs *flag.FlagSet, o *options, pos []string) (*options, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "VNCEDGE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := applyPositional(o, pos, set); err != nil {
		return nil, err
	}
	var err error
	if o.listen, o.listenAll, err = normalizeListen(o.listen); err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	if o.target, err = normalizeTarget(o.target); err != nil {
		return nil, fmt.Errorf("--target: %w", err)
	}
	if o.unixTarget != "" {
		if o.target != "" {
			return nil, errors.New("--unix-target and a target are exclusive")
		}
		abs, err := filepath.Abs(o.unixTarget)
		if err != nil {
			return nil, fmt.Errorf("--unix-target: %w", err)
		}
		o.target = "unix://" + abs
	}
	return o, nil
}

func newLogger(o *options) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	ho := &slog.HandlerOptions{Level: lvl}
	switch o.logFormat {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, ho)), nil
	}
	return nil, fmt.Errorf("--log-format: want json or text, got %q", o.logFormat)
}

// buildConfig turns options into a proxy.Config.
func buildConfig(o *options, log *slog.Logger) (proxy.Config, *proxy.StaticResolver, error) {
	cfg := proxy.Config{
		NewClipboard: func(endpoint string, h http.Header) proxy.ClipboardClient {
			return cdp.New(endpoint, cdp.Options{Header: h})
		},
		Addr: o.listen, Loops: o.loops, Logger: log,
		DialTimeout: o.dialTimeout, HandshakeTimeout: o.handshakeTimeout, CloseTimeout: o.closeTimeout,
		MaxFramePayload: o.maxFrame, MaxViewerBuffer: int(o.maxViewerBuffer),
		LivenessPeriod: o.livenessPeriod, ControlGrace: o.controlGrace,
		ViewerHighWater: int(o.highWater), ViewerLowWater: int(o.lowWater),
		NoSplice: !o.splice, SplicePipeSize: int(o.splicePipe), ViewerNotSentLowat: lowatField(o.notSentLowat),
		UpstreamRecvBuffer: o.upRecvBuf,
		PingInterval:       o.pingInterval, IdleTimeout: o.idleTimeout, MaxDuration: o.maxDuration,
		MaxSessions: o.maxSessions, MaxPerIP: o.maxPerIP, MaxPerOrg: o.maxPerOrg,
	}
	// setsockopt takes a C int: a larger value would be truncated silently.
	if o.upRecvBuf > math.MaxInt32 {
		return cfg, nil, fmt.Errorf("--upstream-recv-buffer: %d is over the kernel's limit %d", o.upRecvBuf, math.MaxInt32)
	}
	if o.notSentLowat > math.MaxInt32 {
		return cfg, nil, fmt.Errorf("--viewer-notsent-lowat: %d is over the kernel's limit %d", o.notSentLowat, math.MaxInt32)
	}
	allow, err := proxy.ParseUpstreamAllow(o.upstreamAllow)
	if err != nil {
		return cfg, nil, fmt.Errorf("--upstream-allow: %w", err)
	}
	cfg.UpstreamAllow, cfg.AdminAddr, cfg.UpstreamIdleTimeout = allow, o.admin, o.upstreamIdle
	if o.web != "" {
		h, err := proxy.WebDir(o.web)
		if err != nil {
			return cfg, nil, fmt.Errorf("--web: %w", err)
		}
		cfg.Web = h
	}
	cfg.ProxyProtocol = o.proxyProtocol
	switch o.forwardedHeader {
	case "x-forwarded-for", "forwarded":
		cfg.ForwardedHeader = o.forwardedHeader
	default:
		return cfg, nil, fmt.Errorf("--forwarded-header: want x-forwarded-for or forwarded, got %q", o.forwardedHeader)
	}
	if o.trustedProxies != "" {
		ps, err := proxy.ParsePrefixes(o.trustedProxies)
		if err != nil {
			return cfg, nil, fmt.Errorf("--trusted-proxies: %w", err)
		}
		cfg.TrustedProxies = ps
	}
	if o.keyFile != "" && o.certFile == "" {
		return cfg, nil, errors.New("--key needs --cert")
	}
	if o.certFile != "" {
		cf, err := newCertFiles(o.certFile, o.keyFile, log)
		if err != nil {
			return cfg, nil, err
		}
		cfg.TLS = cf.tlsConfig()
	}
	cfg.NewClipboard = func(endpoint string, h http.Header) proxy.ClipboardClient {
		// DevTools dials follow the upstreams' destination rule, at connect time.
		ctl, err := proxy.DialControl(endpoint, allow, o.listen, o.admin)
		if err != nil {
			ctl = func(string, string, syscall.RawConn) error { return err }
		}
		return cdp.New(endpoint, cdp.Options{Header: h, Control: ctl})
	}
	switch o.compat {
	case "":
	case "skyvern":
		cfg.Compat = true
	default:
		return cfg, nil, fmt.Errorf("--compat: want skyvern or nothing, got %q", o.compat)
	}
	if o.origins != "" {
		for _, s := range strings.Split(o.origins, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.AllowedOrigins = append(cfg.AllowedOrigins, s)
			}
		}
	}
	if !o.noPolicy {
		right, err := rfbparse.ParseRightButton(o.rightButton)
		if err != nil {
			return cfg, nil, fmt.Errorf("--right-button: %w", err)
		}
		pol, err := rfbparse.NewPolicy(o.forbidden, right)
		if err != nil {
			return cfg, nil, fmt.Errorf("--forbidden: %w", err)
		}
		pol.AllowXVP = o.allowXVP
		pol.ExtendedMouseButtons = o.extMouse
		if pol.QEMUKeys, err = rfbparse.ParseQEMUKeys(o.qemuKeys); err != nil {
			return cfg, nil, fmt.Errorf("--qemu-keys: %w", err)
		}
		pol.AllowContextMenuKeys = o.allowMenuKeys
		cfg.Policy = pol
	}
	if o.upstreamCA != "" {
		pem, err := os.ReadFile(o.upstreamCA)
		if err != nil {
			return cfg, nil, fmt.Errorf("--upstream-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, nil, fmt.Errorf("--upstream-ca %s: no PEM certificates", o.upstreamCA)
		}
		cfg.UpstreamTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	control := func(def rfbparse.Interactor) (rfbparse.Interactor, error) {
		switch o.control {
		case "":
			return def, nil
		case "user":
			return rfbparse.User, nil
		case "agent":
			return rfbparse.Agent, nil
		}
		return 0, fmt.Errorf("--control: want user or agent, got %q", o.control)
	}
	modes := 0
	for _, set := range []bool{o.target != "", o.sessions != "", o.tokenSecretFile != "" || o.tokenPublicKeys != "", o.controlPlane != ""} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return cfg, nil, errors.New("--target, --sessions, --token-* and --control-plane are exclusive")
	}
	switch {
	case o.tokenSecretFile != "" || o.tokenPublicKeys != "":
		ctl, err := control(rfbparse.Agent)
		if err != nil {
			return cfg, nil, err
		}
		tr, err := newTokenSource(o, ctl) // reload.go: swapped when the key files change
		if err != nil {
			return cfg, nil, err
		}
		cfg.Resolver, cfg.EndReason = tr, resolve.Reason
		return cfg, nil, nil
	case o.controlPlane != "":
		ctl, err := control(rfbparse.Agent)
		if err != nil {
			return cfg, nil, err
		}
		hr, err := resolve.NewHTTPResolver(resolve.HTTPConfig{Base: o.controlPlane, VNCPort: o.vncPort, DefaultControl: ctl})
		if err != nil {
			return cfg, nil, err
		}
		cfg.Resolver, cfg.EndReason = hr, resolve.Reason
		return cfg, nil, nil
	case o.target != "":
		u, err := proxy.ParseTarget(o.target)
		if err != nil {
			return cfg, nil, fmt.Errorf("--target: %w", err)
		}
		ctl, err := control(rfbparse.User)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Resolver = &proxy.TargetResolver{Upstream: u, Header: http.Header(o.header), Control: ctl, CDPURL: o.cdpURL}
		return cfg, nil, nil
	case o.sessions != "":
		ctl, err := control(rfbparse.Agent)
		if err != nil {
			return cfg, nil, err
		}
		sr, err := proxy.LoadStaticResolver(o.sessions, ctl)
		if err != nil {
			return cfg, nil, err
		}
		cfg.Resolver = sr
		return cfg, sr, nil
	}
	return cfg, nil, errors.New("one of --target, --sessions, --token-secret-file/--token-public-keys or --control-plane is required")
}

func main() {
	run := run
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "demo" {
		run, args = runDemo, args[1:]
	}
	if len(args) > 0 && args[0] == "replay" {
		run, args = runReplay, args[1:]
	}
	if err := run(args); err != nil {
		var le loggedError
		if !errors.As(err, &le) { // already a log line (JSON in json mode)
			fmt.Fprintln(os.Stderr, "vncedge:", err)
		}
		os.Exit(1)
	}
}

func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.showVersion {
		fmt.Println("vncedge", version)
		return nil
	}
	return serve(o, nil)
}

// runDemo is `vncedge demo [flags]`: vncedge in front of the built-in demo
// VNC server, with the agent in control at start (so Take control matters)
// and the viewer page on the admin server. vncedge's flags apply, except
// --target and --sessions.
func runDemo(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if o.showVersion {
		fmt.Println("vncedge", version)
		return nil
	}
	if o.sessions != "" && o.target == "" {
		return runSessionsDemo(o) // demo_sessions.go: the viewer page over a sessions file
	}
	if o.target != "" || o.sessions != "" {
		return errors.New("demo: the demo VNC server is the target: no --target or --sessions")
	}
	if o.admin == "" {
		return errors.New("demo: the viewer page is served by the admin server: set --admin")
	}
	listenPort, err := o.listenPort()
	if err != nil {
		return err
	}
	ds, err := demo.Listen(demo.Options{})
	if err != nil {
		return err
	}
	defer ds.Close()
	o.target = "tcp://" + ds.Addr()
	if o.control == "" {
		o.control = "agent"
	}
	if o.origins == "" {
		o.origins = demo.AdminOrigins(o.admin) // the page comes from the admin port
	}
	fmt.Printf("\n  vncedge demo: open %s\n\n", demo.PageURL(o.admin))
	return serve(o, demo.Handler(demo.PageConfig{ListenPort: listenPort, Clipboard: o.cdpURL != ""}))
}

// serve runs vncedge until SIGINT/SIGTERM. page, when set, is served by
// the admin server at / (the demo's viewer page).
func serve(o *options, page http.Handler) error {
	log, err := newLogger(o)
	if err != nil {
		return err
	}
	if err := serveWith(o, page, log); err != nil {
		log.Error("vncedge failed", "err", err.Error())
		return loggedError{err}
	}
	return nil
}

// loggedError is an error serve already logged: main only sets the exit code.
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// serveWith is serve once the logger exists: every error it returns is
// logged by serve, in the chosen format.
func serveWith(o *options, page http.Handler, log *slog.Logger) error {
	raiseFileLimit(log)
	cfg, static, err := buildConfig(o, log)
	if err != nil {
		return err
	}
	o.trace.Logger = log
	tp, err := tracing.Setup(context.Background(), o.trace)
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(ctx); err != nil { // flushes the last sessions' spans
			log.Warn("tracing shutdown", "err", err)
		}
	}()
	cfg.Tracing = tp
	if cfg.Recorder, err = o.rec.recorder(log); err != nil {
		return err
	}
	if rc := cfg.Recorder; rc != nil {
		defer rc.Close() // after the sessions closed: their files are written out
		tp.ObserveRecordings(func() (int64, int64, int64) { st := rc.Stats(); return st.BytesWritten, st.Gaps, st.Open })
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		return err
	}
	tp.ObserveSpliced(func() int64 { return srv.Stats().Spliced })
	var watch *watcher // reload.go: the sessions file or token keys, on change and SIGHUP
	if files, reload := configSource(o, cfg, static); reload != nil {
		count, err := tp.NewReloadCounter()
		if err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		watch = newWatcher(files, reload, log, count)
		stopWatch := make(chan struct{})
		defer close(stopWatch)
		go watch.run(stopWatch)
	}

	// The admin port is bound before anything else: a port in use fails
	// the start (no vncedge without /healthz and /metrics).
	var admin *http.Server
	if o.admin != "" {
		ln, err := net.Listen("tcp", o.admin)
		if err != nil {
			return fmt.Errorf("--admin: %w", err)
		}
		admin = &http.Server{Handler: adminHandler(srv, tp.MetricsHandler, page), ReadHeaderTimeout: 5 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)} // net/http's own lines in the log's format
		defer admin.Close()
		go func() {
			if err := admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin server", "err", err)
			}
		}()
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ListenAndServe() }()
	select { // "listening" only once it is true
	case err := <-serveErr:
		return err
	case <-srv.Ready():
	}
	if o.listenAll {
		log.Warn("listening on every address: --listen is a bare port, which websockify reads as all interfaces; give host:port to narrow it", "addr", o.listen)
	}
	log.Info("vncedge listening", append([]any{"addr", addrString(srv.Addr(), o.listen), "admin", o.admin, "version", version}, describeResolver(o)...)...)
	defer func() {
		st := srv.Stats()
		log.Info("vncedge stopped", "sessions_total", st.Total, "sessions_open", st.Active, "sessions_spliced", st.Spliced, "upgrade_failures", st.UpgradeFailures)
	}()
	for {
		select {
		case err := <-serveErr:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				if watch != nil {
					watch.kick()
				} else {
					log.Info("SIGHUP: nothing to reload (no --sessions or token key files)")
				}
				continue
			}
			log.Info("shutting down", "signal", sig.String(), "drain_window", o.drainWindow.String())
			srv.Drain() // /readyz answers 503 and new sessions are refused from now on
			if o.drainWindow > 0 {
				select {
				case <-time.After(o.drainWindow):
				case <-sigs: // a second signal cuts the window short
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			err := srv.Shutdown(ctx)
			if admin != nil {
				_ = admin.Shutdown(ctx)
			}
			cancel()
			if err != nil {
				return fmt.Errorf("shutdown: %w", err)
			}
			return <-serveErr
		}
	}
}

// raiseFileLimit lifts the soft descriptor limit to the hard one: each
// session holds two sockets, and running out stops gnet's engine.
func raiseFileLimit(log *slog.Logger) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= rl.Max {
		return
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot raise the descriptor limit", "err", err)
	}
}

func adminHandler(srv *proxy.Server, metrics, page http.Handler) http.Handler {
	mux := http.NewServeMux()
	if page != nil {
		mux.Handle("/", page)
	}
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !srv.Serving() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		st := srv.Stats()
		fmt.Fprintf(w, "ready active=%d total=%d\n", st.Active, st.Total)
	})
	return mux
}

// lowatField maps --viewer-notsent-lowat to Config.ViewerNotSentLowat, where
// 0 means the default and a negative value off.
func lowatField(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}
