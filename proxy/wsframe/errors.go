package wsframe

import (
	"strconv"

	"github.com/gobwas/ws"
)

// CloseError is a protocol violation found in received frames. Code and
// Reason are what to send in the close frame that fails the connection;
// Reason is short enough to fit in one.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

// Error implements the error interface.
func (e *CloseError) Error() string {
	return "wsframe: " + strconv.Itoa(int(e.Code)) + " " + e.Reason
}

// The errors the package returns are shared values, so returning one does
// not allocate.
var (
	errLengthMSB        = &CloseError{ws.StatusProtocolError, "payload length has the most significant bit set"}
	errLengthNotMinimal = &CloseError{ws.StatusProtocolError, "payload length not minimally encoded"}
	errRsv              = &CloseError{ws.StatusProtocolError, "reserved bits set"}
	errOpCode           = &CloseError{ws.StatusProtocolError, "reserved opcode"}
	errMaskRequired     = &CloseError{ws.StatusProtocolError, "client frame not masked"}
	errMaskUnexpected   = &CloseError{ws.StatusProtocolError, "server frame masked"}
	errControlTooLong   = &CloseError{ws.StatusProtocolError, "control frame payload over 125 bytes"}
	errControlNotFinal  = &CloseError{ws.StatusProtocolError, "fragmented control frame"}
	errContinuation     = &CloseError{ws.StatusProtocolError, "continuation frame without a message"}
	errNotContinuation  = &CloseError{ws.StatusProtocolError, "new data frame inside a fragmented message"}
	errText             = &CloseError{ws.StatusUnsupportedData, "text frames not supported"}
	errTooBig           = &CloseError{ws.StatusMessageTooBig, "frame payload too big"}
	errCloseLength      = &CloseError{ws.StatusProtocolError, "close frame payload of 1 byte"}
	errCloseCode        = &CloseError{ws.StatusProtocolError, "invalid close code"}
	errCloseUTF8        = &CloseError{ws.StatusInvalidFramePayloadData, "close reason not valid UTF-8"}
)
