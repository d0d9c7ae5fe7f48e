package proxy_test

import (
	"bytes"
	"testing"

	"vncedge/proxy/proxytest/rfbclient"
	"vncedge/proxy/proxytest/rfbtest"
	"vncedge/rfbparse"
)

func TestRelayFramebuffer(t *testing.T) {
	for _, size := range []int{1 << 10, 64 << 10, 1 << 20, 4 << 20} {
		t.Run(byteSize(size), func(t *testing.T) {
			vnc := rfbtest.NewServer(t, rfbtest.Options{UpdateSize: size, Seed: uint32(size)})
			_, addr := startProxy(t, targetConfig(t, "tcp://"+vnc.Addr(), rfbparse.User))
			ws := dialWS(t, addr, "/websockify")
			c, err := rfbclient.Handshake(ws, rfbclient.Options{})
			if err != nil {
				t.Fatalf("handshake through proxy: %v", err)
			}
			if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
				t.Fatal(err)
			}
			if err := c.SetEncodings(0); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				if err := c.RequestFull(); err != nil {
					t.Fatal(err)
				}
				fb, err := c.ReadFull()
				if err != nil {
					t.Fatalf("update %d: %v", i, err)
				}
				if len(fb) < size || !bytes.Equal(fb, vnc.Framebuffer()) {
					t.Fatalf("update %d: framebuffer of %d bytes differs from the server's %d", i, len(fb), len(vnc.Framebuffer()))
				}
			}
		})
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return itoa(n>>10) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
