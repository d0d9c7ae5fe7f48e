// Package record writes VNC sessions to disk as they pass through vncedge,
// reads them back, replays them to any WebSocket VNC viewer and exports them
// to websockify's VNC_frame_data format. The file format is in
// docs/RECORDING.md.
package record

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"time"
)

// Magic opens every recording: "VNCREC", then the format version (major, minor).
var Magic = [8]byte{'V', 'N', 'C', 'R', 'E', 'C', 1, 0}

// Record types on disk.
const (
	TypeHeader     = 'H' // JSON Header, first record
	TypeServer     = 'S' // server→viewer RFB bytes, as relayed
	TypeHandshake  = 'C' // client's ProtocolVersion and security choice (never its auth response)
	TypeInput      = 'I' // one viewer message that passed policy and the --record-input filter
	TypeAnnotation = 'A' // JSON Annotation
)

// In-memory only record types, turned into disk records by the writer goroutine.
const (
	memClient = 'c' // raw viewer bytes that passed policy
	memNote   = 'n' // binary note: kind u8, value u64, text
)

const (
	recHeaderSize = 13 // type u8, time u64 (ns since start), length u32
	recTrailer    = 4  // CRC-32 (IEEE) of header and payload
	// MaxPayload bounds one record's payload; larger lengths mean a corrupt file.
	MaxPayload = 1 << 20
)

// Header is the first record's JSON payload: who, when, and what was recorded.
type Header struct {
	Format       string    `json:"format"` // "vncrec/1.0"
	Kind         string    `json:"kind,omitempty"`
	ID           string    `json:"id,omitempty"`
	Organization string    `json:"organization,omitempty"`
	ClientID     string    `json:"client_id,omitempty"`
	Viewer       string    `json:"viewer,omitempty"`   // viewer address
	Upstream     string    `json:"upstream,omitempty"` // scheme://host only
	Start        time.Time `json:"start"`
	Input        string    `json:"record_input"` // none, pointer or all
}

// Annotation is an event on the session's timeline.
type Annotation struct {
	Kind   string `json:"kind"`             // see the Note* constants' names
	To     string `json:"to,omitempty"`     // control: who has control now
	Reason string `json:"reason,omitempty"` // drop, end: why
	Size   int64  `json:"size,omitempty"`   // clipboard: bytes; gap: bytes lost
	Code   int    `json:"code,omitempty"`   // end: WebSocket close code
	Count  uint64 `json:"count,omitempty"`  // drop: messages dropped since the last note
}

// Note kinds (fixed set: they become the Annotation's kind).
const (
	NoteControl      uint8 = iota // control changed; text: to
	NoteDrop                      // policy dropped messages; text: reason, value: count
	NoteStripped                  // right button stripped from pointer events; value: count
	NoteClipboard                 // viewer sent its clipboard; value: size (content never recorded)
	NoteGap                       // bytes lost (queue full or write failed); value: bytes
	NoteEnd                       // session ended; value: close code, text: reason
	NoteInputSkipped              // viewer input no longer parsed (unknown message); text: type
	numNotes
)

var noteNames = [numNotes]string{"control", "drop", "stripped", "clipboard", "gap", "end", "input-unparsed"}

// Record is one record read from a file.
type Record struct {
	Type    byte
	Time    time.Duration // since the header's Start
	Payload []byte
}

// ErrCorrupt is returned for a record whose checksum or length is wrong.
var ErrCorrupt = errors.New("record: corrupt record")

// appendRecord appends one disk record to b.
func appendRecord(b []byte, typ byte, t time.Duration, payload []byte) []byte {
	start := len(b)
	b = append(b, typ)
	b = binary.BigEndian.AppendUint64(b, uint64(t))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:]))
}
