//go:build !linux

package proxy

// bytesAcked is unknown off Linux.
func bytesAcked(int) (acked uint64, queued int, ok bool) { return 0, 0, false }
