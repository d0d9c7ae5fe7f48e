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
// # Key state: as the servers keep it
//
// Held keys are tracked under the identity each server uses, in three models
// at once, and a key counts as held until a release frees it in all of them:
//
//   - TigerVNC (Xvnc, x0vncserver; VNCSConnection::keyEvent, checked against
//     Xvnc 1.12 with -Log '*:stderr:100'): a QEMU ExtendedKeyEvent is tracked
//     by its XT keycode (a U32) when non-zero, a plain KeyEvent (or a QEMU
//     event with keycode 0) by 0x80000000|keysym. A release of a key it does
//     not hold is ignored; a repeated press of a held key acts with the keysym
//     of the first press. Xvnc then acts on the keysym, or with -RawKeyboard
//     on the keycode under the X keymap.
//   - QEMU (ui/vnc.c without -k): keys by XT keycode, read as a U16; a plain
//     keysym becomes the keycode of its key on the server's layout (the
//     policy assumes US); a QEMU event with keycode 0 presses nothing.
//   - keysym servers (x11vnc, libvncserver-based servers, QEMU with -k): a
//     release of a keysym, in either case, frees its key.
//
// Where they differ the policy fails closed: a press is dropped when any
// reading of it (its keysym, its keycode's key on a US layout, the keysym
// TigerVNC repeats) completes a forbidden shortcut while any model may hold
// the modifiers, and modifiers are derived from every key any model holds
// (by keysym and by keycode). A release passes only when it frees a key in
// some model; other releases are dropped and change nothing. At most 16 keys
// are tracked (a fixed array); a press that would need a 17th is dropped.
// When control leaves the user, and at the end of a session, every held key
// is released with the kind of event and the identity it was pressed with.
//
// By default ([QEMUKeysToKeysym]) no keycode reaches the server at all: −258
// is replaced in the viewer's SetEncodings and QEMU key events go on as plain
// KeyEvents, so every server acts on the keysym the policy judged, whatever
// its keymap. Forbidden Ctrl shortcuts also match their control-character
// keysyms (0x01–0x1f and the Unicode 0x1000001–0x100001f), with or without
// Ctrl; under the modifiers of a forbidden letter shortcut no non-ASCII
// keysym passes (the server's keymap, not the keysym, decides which key it
// lands on: Cyrillic_shcha is the O key of a Russian keymap, and Chromium
// reads Ctrl + a non-Latin key by position); unless the right button is
// allowed the Menu key and Shift+F10,
// which open the same context menu, are dropped.
//
// The parser fails closed: an unknown message type, an impossible length, a
// protocol step out of turn, or a security type whose traffic cannot be
// inspected after authentication is an [*Error] whose Reason fits in a
// WebSocket close frame.
package rfbparse
