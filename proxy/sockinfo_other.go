//go:build !linux

package proxy

// ackedAndQueued is unknown off Linux.
func ackedAndQueued(int) (acked uint64, queued int, ok bool) { return 0, 0, false }
