package proxy

import "golang.org/x/sys/unix"

// ackedAndQueued is how many bytes the peer of TCP socket fd has acknowledged
// (tcpi_bytes_acked), and how many wait in its send queue, unsent or
// unacknowledged (SIOCOUTQ); ok is false for other sockets (a TLS viewer's
// socketpair). It allocates: for the keepalive check, not per frame.
func ackedAndQueued(fd int) (acked uint64, queued int, ok bool) {
	ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, 0, false
	}
	q, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	if err != nil {
		return 0, 0, false
	}
	return ti.Bytes_acked, q, true
}
