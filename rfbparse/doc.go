// Package rfbparse follows the client-to-server half of an RFB (VNC) byte stream
// and applies input policy to it, without allocating and without I/O.
//
// A [Stream] is fed the bytes a viewer sends (in chunks cut anywhere) and the
// bytes the server sends during the handshake. It knows where every client
// message starts and ends, decides per message whether it passes, is dropped or
// is rewritten in place, and hands the passed bytes to an io.Writer in order.
// Decisions never depend on how the stream was cut into chunks.
//
// Only the decision prefix of a message (at most 12 bytes) is ever buffered,
// in a fixed array inside the Stream; the rest of a long message (a clipboard
// transfer) streams through. Passed byte ranges are sub-slices of the caller's
// chunk whenever the prefix lies in one chunk, so the common case copies nothing.
//
// The parser fails closed: an unknown message type, an impossible length, a
// protocol step out of turn, or a security type whose traffic cannot be
// inspected after authentication is an [*Error] whose Reason fits in a
// WebSocket close frame.
package rfbparse
