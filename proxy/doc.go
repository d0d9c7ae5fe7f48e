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
// A raw-TCP upstream that streams bulk moves to a down pump (downpump.go,
// downpump_linux.go), which splices it into the viewer socket through a pipe.
// Viewer to server goes through an rfbparse.Stream, which applies input policy
// and hands on the passed byte ranges: raw for tcp:// upstreams, re-framed and
// masked in place for ws:// and wss:// ones. No step allocates per frame.
//
// A viewer's second WebSocket, the message channel (JSON text frames:
// control and clipboard), is a session too, for what every viewer
// connection has (upgrade, admission, keepalive, close, logs, span), with
// its own part in a msgChannel (msgchannel.go): it dials nothing, and its
// data frames go to the msgChannel instead of an RFB stream. The registry
// pairs it with the VNC channel of the same client_id (registry.go).
//
// # One owner per field
//
// Every field of a session, and of its msgChannel, belongs to its viewer's
// event loop: it is read and written only in gnet callbacks of the session's
// two conns and in tasks run with EventLoop().Execute on that loop.
// Goroutines that work for a session (the dial or resolve goroutine,
// liveness checks, clipboard calls, the drain waiter, the ticker) never touch
// a session field. What they need is
// copied for them on the loop when they start (a dialJob: context, span,
// request, logger; a clipboard call's context and logger), and what they
// produce goes back through Execute, where the loop checks that the session
// still wants it (a dial result that arrives after the viewer left is
// released there: its conn closed, its organization slot given back).
//
// The exceptions are documented atomics and immutable fields:
//   - session.viewer and session.srv are set before the session is shared and
//     never change; gnet's Conn.EventLoop, AsyncWrite and Close are safe from
//     any goroutine, RemoteAddr is not (gnet clears it on close).
//     msgChannel.s, its session, is likewise set before the channel is
//     shared and never changes. A clipboard goroutine or another channel's
//     loop that holds a msgChannel (from the registry) sends to it with
//     send(…, false), which hands the message to the channel's loop through
//     Execute (messageTask): nothing writes to a channel off its loop.
//   - session.deadline and session.nextCheck are atomics the ticker reads;
//     session.published is the route for the liveness checker.
//   - pair fields (its vnc *session and msg *msgChannel among them) are
//     guarded by registry.mu, pair.lastCutText is an atomic, and a pair's
//     clipboard client has its own mutex.
//   - Server counters and caps are atomics or guarded by Server.mu.
//   - A down pump's goroutine owns the write side of the viewer socket and
//     the read side of the upstream socket while it runs; it shares with
//     the loop only the control-frame queue under downPump.mu and its
//     counters (atomics). A flusher goroutine owns the buffer it writes
//     upstream until it hands it back through Execute.
//   - A paused session's drainWaiter (flow_pause.go) holds a dup of the
//     viewer socket only to wait for its writability in Go's netpoller; it
//     never reads or writes it, and reaches the loop through the viewer
//     conn's Wake, which gnet allows from any goroutine.
package proxy
