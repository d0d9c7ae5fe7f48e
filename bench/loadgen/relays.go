package loadgen

import (
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// TCPRelay accepts on ln and relays every connection to target with io.Copy
// both ways: the cost of one hop with no WebSocket work (contender b).
func TCPRelay(ln net.Listener, target string) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.DialTimeout("tcp", target, 10*time.Second)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, u)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// GoProxy is the baseline a Go team would write (contender e): gorilla/websocket
// for the viewer, a TCP upstream (TCP_NODELAY is Go's default), one goroutine per
// direction. Each upstream read becomes one binary message (32 KiB read
// buffer); each viewer message is copied upstream through a 4 KiB buffer.
// Write buffers are pooled between messages, as gorilla recommends for many
// mostly idle connections.
type GoProxy struct {
	Target string
	up     websocket.Upgrader
}

// NewGoProxy returns a baseline proxy to the raw-TCP RFB server at target.
func NewGoProxy(target string) *GoProxy {
	return &GoProxy{Target: target, up: websocket.Upgrader{
		ReadBufferSize:  4 << 10,
		WriteBufferSize: 4 << 10,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{"binary"},
		CheckOrigin:     func(*http.Request) bool { return true },
	}}
}

// Serve serves viewers on ln.
func (p *GoProxy) Serve(ln net.Listener) error {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

func (p *GoProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := p.up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	u, err := net.DialTimeout("tcp", p.Target, 10*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	go func() { // down: server → viewer
		defer ws.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := u.Read(buf)
			if n > 0 {
				if werr := ws.WriteMessage(websocket.BinaryMessage, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 4<<10) // up: viewer → server
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if _, werr := u.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return
			}
		}
	}
}
