//go:build !linux

package proxy

import (
	"errors"
	"sync/atomic"
	"time"
)

// spliceSupported: no splice(2) here; the server stream stays on gnet.
const spliceSupported = false

// downPump is Linux-only (downpump_linux.go); never built elsewhere.
type downPump struct {
	bytes, frames atomic.Uint64
	last          atomic.Int64
}

func newDownPump(*session, int, int, int) (*downPump, error) {
	return nil, errors.New("splice(2) is Linux-only")
}

func (d *downPump) run()                        {}
func (d *downPump) queue([]byte, bool) bool     { return false }
func (d *downPump) halt(time.Duration)          {}
func (d *downPump) writeUp(bufs [][]byte) error { return nil }
func (d *downPump) held() int                   { return 0 }
