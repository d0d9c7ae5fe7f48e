package rfbparse

import "strconv"

// Error is a protocol or policy violation that ends the stream. Reason is short
// (under 123 bytes) so a proxy can put it in a WebSocket close frame as is.
type Error struct {
	Reason string
}

func (e *Error) Error() string { return "rfbparse: " + e.Reason }

func errorf(reason string, n int64) *Error {
	return &Error{Reason: reason + " " + strconv.FormatInt(n, 10)}
}

var (
	errBadVersion       = &Error{Reason: "malformed ProtocolVersion"}
	errBadServerVersion = &Error{Reason: "malformed server ProtocolVersion"}
	errClientOutOfTurn  = &Error{Reason: "client sent data out of turn in the handshake"}
	errServerOutOfTurn  = &Error{Reason: "server sent data out of turn in the handshake"}
	errAuthFailed       = &Error{Reason: "client data after failed authentication"}
	errFenceLength      = &Error{Reason: "ClientFence payload longer than 64 bytes"}
)
