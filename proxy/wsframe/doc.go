// Package wsframe encodes and decodes RFC 6455 WebSocket frames over byte
// slices without allocating.
//
// It reuses the types of github.com/gobwas/ws (ws.Header, ws.OpCode,
// ws.StatusCode) and adds what that package does only over io.Reader and
// io.Writer: [PutHeader] and [DecodeHeader] work on plain byte slices, and
// [Decoder] is a streaming frame decoder fed with chunks cut at arbitrary
// points, such as the reads an event loop hands out. The decoder never keeps
// a reference to a chunk after [Decoder.Feed] returns: a partial header and
// a partial control frame are kept in fixed arrays inside the Decoder, and
// data payload goes straight to the [Handler] as sub-slices of the chunk,
// unmasked in place.
//
// Protocol violations are reported as [*CloseError] values carrying the
// status code and a short reason to put in the close frame, which
// [AppendClose] builds.
package wsframe
