package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"vncedge/proxy"
	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/rfbparse"
)

// freeAddr returns a 127.0.0.1 port that was free a moment ago; gnet binds it
// with SO_REUSEADDR.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProxy runs a Server with cfg (Addr and Logger filled in when empty)
// until the test ends.
func startProxy(t testing.TB, cfg proxy.Config) (*proxy.Server, string) {
	t.Helper()
	srv, addr, _ := startOwnedProxy(t, cfg)
	return srv, addr
}

// startOwnedProxy is startProxy with the shutdown in the test's hands: the
// returned stop shuts the server down (once; the cleanup calls it too) and
// waits for ListenAndServe to return, so the test can look at the server's
// state and log afterwards.
func startOwnedProxy(t testing.TB, cfg proxy.Config) (*proxy.Server, string, func()) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = freeAddr(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("proxy did not start: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return srv, cfg.Addr, stop
}

// targetConfig relays every path to upstream with the default policy.
func targetConfig(t testing.TB, upstream string, control rfbparse.Interactor) proxy.Config {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	return proxy.Config{
		Resolver: &proxy.TargetResolver{Upstream: u, Control: control},
		Policy:   rfbparse.DefaultPolicy(),
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialWS(t testing.TB, addr, path string) *rfbclient.WSConn {
	t.Helper()
	c, err := rfbclient.DialWS(ctxT(t), "ws://"+addr+path, []string{"binary"}, nil)
	if err != nil {
		t.Fatalf("dial proxy: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func asStatus(err error, target **rfbclient.StatusError) bool {
	return errors.As(err, target)
}
