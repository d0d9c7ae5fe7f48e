package proxy

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"syscall"
	"time"

	"vncedge/proxy/record"
	"vncedge/rfbparse"
	"vncedge/tracing"
)

// Config configures a Server. Zero durations and sizes take the defaults
// below, which DefaultConfig returns.
type Config struct {
	// Addr is the listen address, host:port.
	Addr string
	// Loops is the number of event loops; 0 means runtime.GOMAXPROCS(0),
	// which follows a container's CPU limit (gnet's own default,
	// runtime.NumCPU, counts the host's cores).
	Loops int
	// Resolver maps each upgrade request to its upstream. Required.
	Resolver Resolver
	// Policy is the input policy; nil relays viewer input uninspected.
	Policy *rfbparse.Policy
	// AllowedOrigins lists browser origins allowed besides the same host; "*" allows any.
	AllowedOrigins []string
	// TLS, when set, serves viewers over TLS (wss:// and https://); its
	// GetCertificate may reload certificates. See tlsbridge.go.
	TLS *tls.Config
	// ProxyProtocol requires a PROXY protocol (v1 or v2) header in front of
	// every viewer connection, from a load balancer, and takes the viewer's
	// address from it. A connection without one is refused.
	ProxyProtocol bool
	// TrustedProxies are the peers whose X-Forwarded-For or Forwarded
	// fields name the viewer's address; from anyone else they are ignored.
	TrustedProxies []netip.Prefix
	// ForwardedHeader is the field the trusted proxies write:
	// "x-forwarded-for" (the default) or "forwarded" (RFC 7239). The other
	// is ignored, whoever sends it.
	ForwardedHeader string
	// Web, when set, answers plain HTTP GET and HEAD requests that are not
	// upgrades (websockify's --web: the noVNC page on the edge's own port).
	Web http.Handler
	// UpstreamTLS configures wss:// upstreams (RootCAs for a private CA).
	UpstreamTLS *tls.Config
	// UpstreamAllow lists where resolver answers may send vncedge (upstreams
	// and DevTools endpoints): CIDRs, addresses and host names ("*.example.com"
	// for subdomains); empty: anywhere. Addr and AdminAddr are never dialed.
	UpstreamAllow []string
	// AdminAddr is the admin HTTP server's address, never dialed as an upstream.
	AdminAddr string

	DialTimeout      time.Duration // resolve + dial + ws handshake; default 10s
	HandshakeTimeout time.Duration // viewer's HTTP request head must arrive within; default 10s
	CloseTimeout     time.Duration // wait for the viewer's close reply; default 3s
	MaxFramePayload  int64         // largest viewer frame payload (1009 above); default 1 MiB
	MaxViewerBuffer  int           // viewer outbound bytes before the session is cut (slow viewer); default 64 MiB
	ViewerHighWater  int           // viewer outbound bytes above which the upstream is not read; default 1 MiB
	ViewerLowWater   int           // ... and below which reading resumes; default 256 KiB
	MaxEarlyBytes    int           // viewer bytes buffered while the upstream is dialed; default 64 KiB
	MaxPausedInput   int           // viewer bytes held while the upstream is paused (backpressure); default 17 MiB (a full clipboard)
	// MaxUpstreamBuffer caps bytes queued for the upstream (RFB data, pongs,
	// closes): past it the session ends with slow-upstream; default MaxViewerBuffer.
	MaxUpstreamBuffer int
	// NoSplice keeps the server stream of raw-TCP upstreams on gnet's
	// buffers instead of splice(2) (downpump_linux.go).
	NoSplice bool
	// SplicePipeSize is the pipe capacity of a spliced session, the largest
	// frame it sends; default 1 MiB (the kernel may give less: fs.pipe-max-size,
	// fs.pipe-user-pages-soft).
	SplicePipeSize int
	// ViewerNotSentLowat is TCP_NOTSENT_LOWAT on a spliced session's viewer
	// socket: the pump splices more only once fewer bytes than this are
	// unsent there, so bytes wait in the pipe and the upstream's window, not
	// in the viewer's socket, while its send buffer still grows for the
	// bytes in flight. Default 128 KiB; negative: off (the kernel's default).
	ViewerNotSentLowat int
	// UpstreamRecvBuffer, if positive, is SO_RCVBUF of upstream TCP sockets,
	// set before they connect: a bound on what the kernel holds from each
	// VNC server, instead of its autotuning up to net.ipv4.tcp_rmem's
	// maximum. The kernel caps it at net.core.rmem_max. Default 0 (autotuning).
	UpstreamRecvBuffer int
	// UpstreamIdleTimeout closes a session whose upstream sent nothing for
	// this long (1001 upstream-idle); 0: off.
	UpstreamIdleTimeout time.Duration

	// Compat answers resolver refusals as the reference platform does: the
	// upgrade succeeds, then close 1002 (credentials) or 1013 (not ready).
	Compat bool
	// LivenessPeriod is how often live routes are re-verified; default 5s.
	LivenessPeriod time.Duration
	// LivenessGrace ends a live route's sessions when none of its checks
	// succeeded for this long (EndReason(ErrLivenessUnverified)), whatever
	// the Verifier says meanwhile; default 3 × LivenessPeriod, at least 15s
	// (the HTTP resolver's own grace).
	LivenessGrace time.Duration
	// ControlGrace keeps a viewer's control state after both its channels
	// closed, so a reconnect finds it; default 5m.
	ControlGrace time.Duration
	// NewClipboard opens the clipboard client for a DevTools endpoint; nil
	// disables the clipboard (copy and paste answer with an error message).
	NewClipboard func(cdpURL string, header http.Header) ClipboardClient
	// ClipboardTimeout bounds one copy or paste; default 5s.
	ClipboardTimeout time.Duration
	// EndReason names the close reason for a Verifier's ErrSessionEnded
	// error (e.g. "token-expired"); nil or "" means "session-ended".
	EndReason func(error) string

	// PingInterval is how often viewers are pinged; two unanswered pings
	// close the session (a half-open viewer). Default 20s; negative: off.
	PingInterval time.Duration
	// IdleTimeout closes a session whose viewer sent nothing for this long
	// (1000 idle-timeout); 0: off.
	IdleTimeout time.Duration
	// MaxDuration closes any session this old (1000 max-duration); 0: off.
	MaxDuration time.Duration
	// MaxSessions caps open viewer connections (503 beyond); 0: no cap.
	MaxSessions int
	// MaxConns caps open sockets (viewers and upstreams): a viewer accepted
	// beyond it is closed at once, keeping room below the descriptor limit
	// for dials and the accept loop; default RLIMIT_NOFILE minus 128.
	MaxConns int
	// MaxPerIP caps open viewer connections per client IP (429); 0: no cap.
	MaxPerIP int
	// MaxPerOrg caps open sessions per organization (429); 0: no cap.
	MaxPerOrg int

	// Tracing receives one span per session (with resolve and dial children)
	// and the metrics; nil: neither. Nothing is called per frame.
	Tracing *tracing.Provider

	// Logger receives one line per session end and errors; default slog.Default().
	Logger *slog.Logger

	// Recorder, when set, records every VNC channel (see proxy/record and
	// docs/RECORDING.md) unless its Route says Record false.
	Recorder *record.Recorder
}

// DefaultConfig returns the defaults New gives a zero Config: every field
// with a default set to it, the others (off, no cap, required) zero. Loops
// and MaxConns are this process's: GOMAXPROCS and RLIMIT_NOFILE minus 128
// (0, no cap, when the limit is unknown or outside 512..2^30). Flags and
// other front ends take their defaults from here.
func DefaultConfig() Config {
	c := Config{
		DialTimeout:        10 * time.Second,
		HandshakeTimeout:   10 * time.Second,
		CloseTimeout:       3 * time.Second,
		MaxFramePayload:    1 << 20,
		MaxViewerBuffer:    64 << 20,
		ViewerHighWater:    1 << 20,
		MaxEarlyBytes:      64 << 10,
		MaxPausedInput:     rfbparse.DefaultMaxCutText + 1<<20,
		SplicePipeSize:     1 << 20,
		ViewerNotSentLowat: 128 << 10,
		ForwardedHeader:    "x-forwarded-for",
		LivenessPeriod:     5 * time.Second,
		ControlGrace:       5 * time.Minute,
		ClipboardTimeout:   5 * time.Second,
		PingInterval:       20 * time.Second,
		Loops:              runtime.GOMAXPROCS(0),
		MaxConns:           defaultMaxConns(),
		Logger:             slog.Default(),
	}
	// The defaults that follow other fields, as setDefaults derives them.
	c.MaxUpstreamBuffer = c.MaxViewerBuffer
	c.ViewerLowWater = defaultLowWater(c.ViewerHighWater)
	c.LivenessGrace = defaultLivenessGrace(c.LivenessPeriod)
	return c
}

// defaultMaxConns is RLIMIT_NOFILE minus 128, or 0 (no cap) when the limit
// is unknown, small or effectively unlimited.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur > 512 && rl.Cur < 1<<30 {
		return int(rl.Cur) - 128
	}
	return 0
}

// defaultLowWater is a quarter of the high water mark.
func defaultLowWater(high int) int { return high / 4 }

// defaultLivenessGrace is 3 × the liveness period, at least 15s (the HTTP
// resolver's own grace).
func defaultLivenessGrace(period time.Duration) time.Duration {
	return max(3*period, 15*time.Second)
}

// setDefaults fills c's zero (for most fields also negative) fields from
// DefaultConfig. A negative PingInterval stays (pings off); the derived
// defaults follow c's own values: MaxUpstreamBuffer its MaxViewerBuffer,
// ViewerLowWater its ViewerHighWater (also replacing a low water at or
// above it), LivenessGrace its LivenessPeriod.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	def := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	defInt := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&c.DialTimeout, d.DialTimeout)
	def(&c.HandshakeTimeout, d.HandshakeTimeout)
	def(&c.CloseTimeout, d.CloseTimeout)
	def(&c.LivenessPeriod, d.LivenessPeriod)
	def(&c.LivenessGrace, defaultLivenessGrace(c.LivenessPeriod))
	def(&c.ControlGrace, d.ControlGrace)
	def(&c.ClipboardTimeout, d.ClipboardTimeout)
	if c.PingInterval == 0 {
		c.PingInterval = d.PingInterval
	}
	if c.MaxFramePayload <= 0 {
		c.MaxFramePayload = d.MaxFramePayload
	}
	defInt(&c.MaxViewerBuffer, d.MaxViewerBuffer)
	defInt(&c.MaxUpstreamBuffer, c.MaxViewerBuffer)
	defInt(&c.ViewerHighWater, d.ViewerHighWater)
	if c.ViewerLowWater <= 0 || c.ViewerLowWater >= c.ViewerHighWater {
		c.ViewerLowWater = defaultLowWater(c.ViewerHighWater)
	}
	defInt(&c.MaxPausedInput, d.MaxPausedInput)
	defInt(&c.SplicePipeSize, d.SplicePipeSize)
	if c.ViewerNotSentLowat == 0 {
		c.ViewerNotSentLowat = d.ViewerNotSentLowat
	}
	defInt(&c.MaxEarlyBytes, d.MaxEarlyBytes)
	if c.ForwardedHeader == "" {
		c.ForwardedHeader = d.ForwardedHeader
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	defInt(&c.Loops, d.Loops)
	if c.MaxConns <= 0 && d.MaxConns > 0 { // an unknown limit leaves c's value (no cap)
		c.MaxConns = d.MaxConns
	}
}
