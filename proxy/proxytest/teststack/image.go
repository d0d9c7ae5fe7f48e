package teststack

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"vncedge/proxy/proxytest/rfbclient"
)

// NoisePixel returns the 0xRRGGBB colour of pixel i of the noise image for
// seed: a hash of both, so any reordering or loss of pixels shows.
func NoisePixel(seed uint32, i int) uint32 {
	x := uint32(i)*0x9e3779b1 ^ seed*0x85ebca6b
	x ^= x >> 16
	x *= 0x7feb352d
	x ^= x >> 15
	x *= 0x846ca68b
	x ^= x >> 16
	return x & 0xffffff
}

// WriteXWD writes a w×h 24-bit TrueColor image of NoisePixel(seed, ·) as an
// X Window Dump file (the format xwud shows).
func WriteXWD(path string, w, h int, seed uint32) error {
	const name = "vncedge-noise\x00"
	const headerSize uint32 = 25*4 + uint32(len(name))
	buf := make([]byte, headerSize, int(headerSize)+w*h*4)
	fields := []uint32{
		headerSize, 7, // header size, file version
		2, 24, uint32(w), uint32(h), 0, // ZPixmap, depth, width, height, xoffset
		1, 32, 1, 32, 32, // MSBFirst byte order, bitmap unit, bit order, pad, bits per pixel
		uint32(w * 4), 4, // bytes per line, TrueColor visual
		0xff0000, 0xff00, 0xff, 8, 256, 0, // masks, bits per rgb, colormap entries, ncolors
		uint32(w), uint32(h), 0, 0, 0, // window width, height, x, y, border width
	}
	for i, f := range fields {
		binary.BigEndian.PutUint32(buf[4*i:], f)
	}
	copy(buf[100:], name)
	var px [4]byte
	for i := 0; i < w*h; i++ {
		binary.BigEndian.PutUint32(px[:], NoisePixel(seed, i))
		buf = append(buf, px[:]...)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		return fmt.Errorf("writing XWD image: %w", err)
	}
	return nil
}

// ShowNoise shows a w×h noise image (NoisePixel with seed) in a window at
// the top-left corner of the desktop with xwud, moves the pointer to the
// bottom-right corner (Xvnc draws the cursor into the framebuffer of clients
// that do not take the Cursor pseudo-encoding, and its default spot, the
// centre, would cover part of the image), and waits until the image is
// intact in the framebuffer. It returns the image's top-left corner. The
// desktop then stays static until a client moves the pointer (xwud -noclick
// ignores clicks). It skips the test when xwud is not installed.
func (x *Xvnc) ShowNoise(t testing.TB, w, h int, seed uint32) (x0, y0 int) {
	t.Helper()
	Require(t, "xwud")
	path := filepath.Join(t.TempDir(), "noise.xwd")
	if err := WriteXWD(path, w, h, seed); err != nil {
		t.Fatalf("teststack: %v", err)
	}
	p := x.StartClient(t, "xwud", "-noclick", "-in", path, "-geometry", "+0+0")
	x0, y0, err := x.waitNoise(p, w, h, seed)
	if err != nil {
		t.Fatalf("teststack: waiting for xwud's image: %v", err)
	}
	return x0, y0
}

// waitNoise reads the framebuffer over one RFB connection, then awaits
// incremental updates until the noise image is found intact.
func (x *Xvnc) waitNoise(p *Proc, w, h int, seed uint32) (x0, y0 int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", x.Addr())
	if err != nil {
		return 0, 0, fmt.Errorf("dial Xvnc: %w", err)
	}
	defer func() { _ = conn.Close() }()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	// Unblock reads if xwud dies.
	go func() {
		select {
		case <-p.Done():
			_ = conn.SetDeadline(time.Now())
		case <-ctx.Done():
		}
	}()
	c, err := rfbclient.Handshake(conn, rfbclient.Options{})
	if err != nil {
		return 0, 0, err
	}
	if err := c.SetPixelFormat(rfbclient.TrueColor32()); err != nil {
		return 0, 0, err
	}
	if err := c.SetEncodings(); err != nil {
		return 0, 0, err
	}
	if err := c.PointerEvent(0, c.Width()-1, c.Height()-1); err != nil {
		return 0, 0, err
	}
	fb, err := c.ReadFull()
	for err == nil {
		if x0, y0, ok := FindNoise(fb, c.Width(), w, h, seed); ok {
			return x0, y0, nil
		}
		if err = c.Request(true, 0, 0, c.Width(), c.Height()); err != nil {
			break
		}
		if _, err = c.ReadUpdate(); err == nil {
			fb = c.Framebuffer()
		}
	}
	select {
	case <-p.Done():
		return 0, 0, p.exitError()
	default:
	}
	return 0, 0, fmt.Errorf("%w; xwud output:\n%s", err, p.Output())
}

// DistinctColours counts the distinct 0xRRGGBB values in a TrueColor32
// framebuffer.
func DistinctColours(fb []byte) int {
	seen := make(map[uint32]struct{})
	for i := 0; i+4 <= len(fb); i += 4 {
		seen[binary.LittleEndian.Uint32(fb[i:])&0xffffff] = struct{}{}
	}
	return len(seen)
}

// FindNoise locates the w×h noise image of seed in a TrueColor32 framebuffer
// fbW pixels wide and checks every one of its pixels. It returns the image's
// top-left corner, or ok false when it is not there intact.
func FindNoise(fb []byte, fbW, w, h int, seed uint32) (x, y int, ok bool) {
	px := func(x, y int) uint32 {
		return binary.LittleEndian.Uint32(fb[(y*fbW+x)*4:]) & 0xffffff
	}
	fbH := len(fb) / 4 / fbW
	p0, p1 := NoisePixel(seed, 0), NoisePixel(seed, 1)
	for y0 := 0; y0+h <= fbH; y0++ {
		for x0 := 0; x0+w <= fbW; x0++ {
			if px(x0, y0) != p0 || px(x0+1, y0) != p1 {
				continue
			}
			intact := true
			for i := 0; i < w*h && intact; i++ {
				intact = px(x0+i%w, y0+i/w) == NoisePixel(seed, i)
			}
			if intact {
				return x0, y0, true
			}
		}
	}
	return 0, 0, false
}
