//go:build linux

package proxy

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPumpViewerReason: a pump's write to a viewer that reset or closed is
// "viewer-gone" (seen on 1000-session benchmark runs, where the pump's write
// fails before gnet reads the close); other write errors stay ours.
func TestPumpViewerReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want endReason
	}{
		{errors.Join(errPumpViewer, unix.EPIPE), reasonViewerGone},
		{errors.Join(errPumpViewer, unix.ECONNRESET), reasonViewerGone},
		{errors.Join(errPumpViewer, unix.ENOBUFS), reasonViewerWriteLost},
		{errPumpViewer, reasonViewerWriteLost},
	} {
		if got := pumpViewerReason(c.err); got != c.want {
			t.Errorf("pumpViewerReason(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
