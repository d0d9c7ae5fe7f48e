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
	"syscall"

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
func dialUpstream(ctx context.Context, rt *Route, tlsConf *tls.Config, tr *tracing.Provider) (net.Conn, []byte, error) {
	u := rt.Upstream
	switch u.Scheme {
	case "tcp":
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
		}
		return c, nil, nil
	case "unix": // a VNC server's unix socket (websockify's --unix-target)
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", u.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
		}
		return c, nil, nil
	case "ws", "wss":
		d := ws.Dialer{
			Protocols: []string{"binary"},
			Header:    ws.HandshakeHeaderHTTP(rt.Header),
			TLSConfig: tlsConf,
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
			d.WrapConn = func(conn net.Conn) net.Conn {
				_, wsSpan = tr.StartChild(ctx, tracing.SpanDialWS)
				return conn
			}
		}
		target := *u
		target.User = nil
		c, br, _, err := d.Dial(ctx, target.String())
		if wsSpan != nil {
			tracing.EndChild(wsSpan, err)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("dial %s: %w", u.Redacted(), err)
		}
		var early []byte
		if br != nil {
			early = make([]byte, br.Buffered())
			_, _ = io.ReadFull(br, early)
			ws.PutReader(br)
		}
		if u.Scheme == "ws" {
			return c, early, nil
		}
		bc, err := bridge(c, early)
		if err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("bridge %s: %w", u.Redacted(), err)
		}
		return bc, nil, nil
	}
	return nil, nil, fmt.Errorf("upstream %s: unsupported scheme", u.Redacted())
}

// dialStatus maps a dial error to the HTTP status the viewer gets.
func dialStatus(err error) *upgrade.Error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &upgrade.Error{Status: http.StatusGatewayTimeout, Message: "upstream timed out"}
	}
	return &upgrade.Error{Status: http.StatusBadGateway, Message: "upstream unreachable"}
}

// bridge puts a conn that is not a socket (a *tls.Conn: gnet has no TLS) behind
// one end of a socketpair and returns the other end, which gnet can enroll.
// Two goroutines copy between them; closing either side closes both.
func bridge(tc net.Conn, early []byte) (net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	loopSide, err := fileConn(fds[0])
	if err != nil {
		syscall.Close(fds[1])
		return nil, err
	}
	pump, err := fileConn(fds[1])
	if err != nil {
		loopSide.Close()
		return nil, err
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			tc.Close()
			pump.Close()
		})
	}
	go func() {
		defer closeBoth()
		if len(early) > 0 {
			if _, err := pump.Write(early); err != nil {
				return
			}
		}
		_, _ = io.Copy(pump, tc)
	}()
	go func() {
		defer closeBoth()
		_, _ = io.Copy(tc, pump)
	}()
	return loopSide, nil
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
