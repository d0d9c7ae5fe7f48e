package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"go.opentelemetry.io/otel/trace"

	"vncedge/proxy/upgrade"
	"vncedge/tracing"
)

// dialUpstream connects to rt.Upstream before the viewer gets its 101. It
// returns a conn gnet can enroll (a socket) and the bytes the ws handshake
// already read past the 101 (the RFB banner may ride with it), which must be
// handled before anything read from the conn.
//
// With tr set, the TLS handshake and the WebSocket upgrade get child spans of
// the dial span in ctx.
//
// The response head is read through a limit (MaxResponseHead); route headers
// go only where SafeHeaders allows. For wss the returned io.Closer ends the
// bridge (both goroutines, the TLS conn and the socketpair); its two extra
// sockets count in conns while it lives. recvBuf > 0 sets the TCP socket's
// SO_RCVBUF before it connects (Config.UpstreamRecvBuffer).
func dialUpstream(ctx context.Context, rt *Route, tlsConf *tls.Config, tr *tracing.Provider, conns *atomic.Int64, guard *destGuard, recvBuf int) (net.Conn, []byte, io.Closer, error) {
	u := rt.Upstream
	if u.Scheme == "unix" { // the operator's --unix-target (ParseTarget; resolvers cannot name one)
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", u.Path)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
		}
		return c, nil, nil, nil
	}
	if err := guard.checkURL(u); err != nil {
		return nil, nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
	}
	control := withRecvBuffer(guard.control(u.Hostname()), recvBuf) // every address connected to is checked
	switch u.Scheme {
	case "tcp":
		d := net.Dialer{Control: control}
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
		}
		return c, nil, nil, nil

	case "ws", "wss":
		var raw net.Conn // the conn under the head limit (a *tls.Conn for wss)
		var tcp net.Conn // the socket
		d := ws.Dialer{
			Protocols: []string{"binary"},
			TLSConfig: tlsConf,
			NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				nd := net.Dialer{Control: control}
				c, err := nd.DialContext(ctx, network, addr)
				tcp = c
				return c, err
			},
		}
		if h := SafeHeaders(rt.Header, u.Scheme, u.Hostname()); len(h) > 0 {
			d.Header = ws.HandshakeHeaderHTTP(h)
		}
		d.WrapConn = func(conn net.Conn) net.Conn {
			raw = conn
			return upgrade.NewHeadLimit(conn)
		}
		var wsSpan trace.Span
		if tr != nil {
			d.TLSClient = func(conn net.Conn, host string) net.Conn {
				cfg := &tls.Config{MinVersion: tls.VersionTLS12}
				if tlsConf != nil {
					cfg = tlsConf.Clone()
				}
				if cfg.ServerName == "" {
					cfg.ServerName = host
				}
				tc := tls.Client(conn, cfg)
				_, span := tr.StartChild(ctx, tracing.SpanDialTLS)
				err := tc.HandshakeContext(ctx) // a failure resurfaces on the upgrade's first write
				tracing.EndChild(span, err)
				return tc
			}
			limitOnly := d.WrapConn
			d.WrapConn = func(conn net.Conn) net.Conn {
				_, wsSpan = tr.StartChild(ctx, tracing.SpanDialWS)
				return limitOnly(conn)
			}
		}
		target := *u
		target.User = nil
		_, br, _, err := d.Dial(ctx, target.String())
		if err == nil && ctx.Err() != nil {
			err = ctx.Err() // the dialer poisoned the conn's deadline: unusable
		}
		if wsSpan != nil {
			tracing.EndChild(wsSpan, err)
		}
		if err != nil {
			if raw != nil {
				raw.Close() // the dialer closes only on its own errors
			}
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				// The dial timed out, whatever error the interrupted step
				// reported (a TLS handshake cut by its context reports
				// "use of closed connection"): 504, not 502.
				err = fmt.Errorf("%w: %w", cerr, err)
			}
			return nil, nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
		}
		_ = raw.SetDeadline(time.Time{})
		var early []byte
		if br != nil {
			early = make([]byte, br.Buffered())
			_, _ = io.ReadFull(br, early)
			ws.PutReader(br)
		}
		if u.Scheme == "ws" {
			return raw, early, nil, nil
		}
		b, bc, err := bridge(raw, tcp, early, conns)
		if err != nil {
			raw.Close()
			return nil, nil, nil, fmt.Errorf("bridge %s: %w", u.Redacted(), err)
		}
		return bc, nil, b, nil
	}
	return nil, nil, nil, fmt.Errorf("upstream %s: unsupported scheme", u.Redacted())
}

// MaxResponseHead bounds what vncedge reads of an upstream's (or DevTools
// endpoint's) handshake response, head and any bytes riding with it.
const MaxResponseHead = upgrade.MaxResponseHead

// dialStatus maps a dial error to the HTTP status the viewer gets.
func dialStatus(err error) *upgrade.Error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &upgrade.Error{Status: http.StatusGatewayTimeout, Message: "upstream timed out"}
	}
	return &upgrade.Error{Status: http.StatusBadGateway, Message: "upstream unreachable"}
}

// bridgeWriteTimeout bounds one write to a wss upstream: a peer that stops
// reading for this long is gone.
const bridgeWriteTimeout = 30 * time.Second

// wssBridge copies between a *tls.Conn and one end of a socketpair. Close
// ends it from any goroutine: both sockets close, so both copies return.
type wssBridge struct {
	sock, pump net.Conn // the TLS conn's socket, the socketpair's far end
	once       sync.Once
}

// Close implements io.Closer. It closes the TLS conn's socket, not the
// *tls.Conn, whose Close may wait seconds writing close_notify to a peer
// that does not read: Close runs on event loops.
func (b *wssBridge) Close() error {
	b.once.Do(func() {
		b.sock.Close()
		b.pump.Close()
	})
	return nil
}

// bridge puts a conn that is not a socket (a *tls.Conn: gnet has no TLS) behind
// one end of a socketpair and returns the other end, which gnet can enroll.
// Two goroutines copy between them; closing either side, or the returned
// bridge, closes both. Its two sockets (the TLS one and the pump end) count
// in conns until both goroutines are done.
func bridge(tc, sock net.Conn, early []byte, conns *atomic.Int64) (*wssBridge, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	loopSide, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	pump, err := fileConn(fds[1])
	if err != nil {
		loopSide.Close()
		return nil, nil, err
	}
	if sock == nil {
		sock = tc
	}
	b := &wssBridge{sock: sock, pump: pump}
	if conns != nil {
		conns.Add(2)
	}
	var running atomic.Int32
	running.Store(2)
	end := func() {
		b.Close()
		if running.Add(-1) == 0 && conns != nil {
			conns.Add(-2)
		}
	}
	go func() {
		defer end()
		if len(early) > 0 {
			if _, err := pump.Write(early); err != nil {
				return
			}
		}
		_, _ = io.Copy(pump, tc)
	}()
	go func() {
		defer end()
		_, _ = io.Copy(deadlineWriter{tc}, pump)
	}()
	return b, loopSide, nil
}

// deadlineWriter gives every write bridgeWriteTimeout.
type deadlineWriter struct{ c net.Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(bridgeWriteTimeout))
	return w.c.Write(p)
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "vncedge-bridge")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("socketpair conn: %w", err)
	}
	return c, nil
}

// withRecvBuffer sets SO_RCVBUF to n (if n > 0) on the socket before control
// checks it. A fixed receive buffer turns off the kernel's autotuning for the
// socket, and the kernel caps it at net.core.rmem_max.
func withRecvBuffer(control func(network, address string, c syscall.RawConn) error, n int) func(string, string, syscall.RawConn) error {
	if n <= 0 {
		return control
	}
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n) }); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_RCVBUF: %w", serr)
		}
		return control(network, address, c)
	}
}
