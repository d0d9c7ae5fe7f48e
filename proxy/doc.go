// Package proxy is vncedge's WebSocket-to-VNC relay on the gnet event loop.
//
// A viewer connects and sends an HTTP upgrade request, which is parsed over
// bytes (package upgrade). The [Resolver] names the upstream, which is dialed
// off the loop before the viewer gets its 101; the upstream conn is then
// enrolled on the viewer's own event loop, so both halves of a session run on
// one goroutine and write to each other without locks.
//
// Server to viewer, the heavy direction, is cut-through: each upstream read
// becomes one binary frame written with writev straight from gnet's buffer.
// Viewer to server goes through an rfbparse.Stream, which applies input policy
// and hands on the passed byte ranges: raw for tcp:// upstreams, re-framed and
// masked in place for ws:// and wss:// ones. No step allocates per frame.
package proxy
