package rfbparse

import (
	"encoding/binary"
	"io"
)

// Interactor is who drives the remote desktop.
type Interactor uint8

const (
	// User: the viewer's keyboard and pointer reach the server (subject to policy).
	User Interactor = iota
	// Agent: the automation drives; viewer input is dropped.
	Agent
)

func (i Interactor) String() string {
	if i == Agent {
		return "agent"
	}
	return "user"
}

// Event is a set of things the caller may act on, collected by [Stream.TakeEvents].
type Event uint8

const (
	// EventCopy: a copy shortcut key-down passed (Ctrl+C; on Macs also Cmd+C).
	EventCopy Event = 1 << iota
	// EventPaste: a paste shortcut key-down passed (Ctrl+V; on Macs also Cmd+V).
	EventPaste
	// EventCutText: the viewer sent its clipboard (ClientCutText passed).
	EventCutText
	// EventBlocked: a forbidden shortcut was dropped.
	EventBlocked
)

// DropReason says why a message was dropped.
type DropReason uint8

// Drop reasons.
const (
	DropShortcut    DropReason = iota // forbidden shortcut (key-down and its key-up)
	DropRightButton                   // right button in RightDrop mode
	DropAgent                         // input while the agent has control
	DropXVP                           // xvp power control
	DropGII                           // gii event injection
	DropKeyLimit                      // more keys held than the stream tracks
	DropUnmatched                     // key release of no key a server holds
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"shortcut", "right-button", "agent-control", "xvp", "gii-event", "key-limit", "unmatched-release"}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats counts what a Stream has seen. Read it from the Stream's goroutine.
type Stats struct {
	Messages  uint64                 // client messages completed (after ClientInit)
	Dropped   [NumDropReasons]uint64 // messages dropped, by reason
	Rewritten uint64                 // messages rewritten in place (right button stripped)
}

// DroppedTotal sums Dropped.
func (s *Stats) DroppedTotal() (n uint64) {
	for _, d := range s.Dropped {
		n += d
	}
	return n
}

type phase uint8

const (
	phVersion    phase = iota // ProtocolVersion, 12 bytes
	phChoice                  // security type choice, 1 byte (3.7+)
	phAuth                    // VNC authentication response, 16 bytes
	phWaitServer              // nothing may come until the server speaks
	phInit                    // ClientInit, 1 byte
	phMessages                // client messages
	phOpaque                  // uninspectable (no policy): everything passes
	phFailed                  // authentication failed
)

type srvPhase uint8

const (
	srvVersion srvPhase = iota
	srvAwaitClient
	srvSecCount // 3.7+: U8 number of security types
	srvSecTypes // that many bytes
	srvAwaitChoice
	srvSecType33 // 3.3: U32 security type
	srvChallenge // 16 bytes
	srvResult    // U32 SecurityResult
	srvReason    // U32 length, then skip
	srvSkip      // skip srvLeft bytes then srvFailed
	srvFailed
	srvDone
)

// maxHeld bounds the keys tracked as held on the server side; more
// simultaneous key-downs are dropped (a person has ten fingers).
const maxHeld = 16

// Stream follows one RFB connection: the client's bytes through [Stream.Feed],
// the server's handshake bytes through [Stream.Server]. It is not safe for
// concurrent use; a proxy calls it from the goroutine that owns the session.
type Stream struct {
	pol        *Policy
	maxCutText int64
	mac        bool
	interactor Interactor

	phase    phase
	version  int // negotiated minor version: 3, 7 or 8
	cliVer   int
	err      error
	extMouse bool
	trim     int // bytes to cut from the end of the message just decided

	// The item (handshake step or message) in progress.
	hold     [prefixMax]byte // decision prefix split across chunks
	held     int
	remain   int64 // body bytes of the current item still to come
	bodyPass bool
	msgType  byte
	encLeft  int    // SetEncodings entries still to come (+1 until the header finished)
	encPrev  uint32 // last entry passed
	encExt   bool   // the list so far has −316

	// View-only channel (viewdown.go).
	viewOnly bool
	pfLocked bool  // an update was asked for: SetPixelFormat no longer passes
	cliBPP   uint8 // bits per pixel of the last SetPixelFormat passed
	srvRest  int   // bytes after the handshake in the last Server chunk

	// Server side of the handshake.
	srv      srvPhase
	srvVer   int
	srvHold  [16]byte // longest server item: the VNC auth challenge
	srvHeld  int
	srvLeft  uint32
	secType  uint8
	authLeft int

	// Policy state.
	mods       uint16              // modifier keys some server model holds
	grp        Modifier            // groups(mods)
	shared     *SharedKeys         // the desktop's keyboard, shared with its other connections (shared.go)
	published  uint16              // mods as last published to shared
	keys       [maxHeld]heldKey    // keys passed down that some server model holds
	nHeld      int                 //
	ptrX, ptrY uint16              // last pointer position passed
	ptrMask    uint8               // last button mask passed (bit 7 cleared)
	ptrExtra   uint8               // last extended buttons passed
	inject     [MaxReleaseLen]byte // key-ups and button release to send
	nInject    int
	events     Event

	// Stats counts messages and drops.
	Stats Stats
}

// NewStream returns a Stream applying pol. A nil pol disables inspection:
// every message passes, and a security type that cannot be inspected makes
// the rest of the stream opaque instead of an error.
func NewStream(pol *Policy, initial Interactor) *Stream {
	s := &Stream{pol: pol, interactor: initial, maxCutText: DefaultMaxCutText}
	if pol != nil && pol.MaxCutText > 0 {
		s.maxCutText = pol.MaxCutText
	}
	return s
}

// SetMac says whether the viewer runs on macOS, where Cmd (sent by noVNC as
// Alt_L, by other clients as Super or Meta) is the copy/paste modifier.
func (s *Stream) SetMac(mac bool) { s.mac = mac }

// Interactor reports who has control.
func (s *Stream) Interactor() Interactor { return s.interactor }

// SetInteractor hands control to i. When control leaves the user, the keys and
// buttons the user still holds on the server must be released: SetInteractor
// returns those release messages if the stream is at a message boundary (the
// caller writes them upstream, valid until the next call on s); otherwise they
// are queued and the next Feed writes them as soon as the current message ends.
func (s *Stream) SetInteractor(i Interactor) []byte {
	if s.interactor == i {
		return nil
	}
	s.interactor = i
	if i != Agent {
		return nil
	}
	s.queueRelease()
	if s.nInject > 0 && s.AtBoundary() {
		b := s.inject[:s.nInject]
		s.nInject = 0
		return b
	}
	return nil
}

// AtBoundary reports whether the client stream is between messages, where
// bytes of the proxy's own may be inserted.
func (s *Stream) AtBoundary() bool {
	return s.phase == phMessages && s.remain == 0 && s.held == 0 && s.encLeft == 0
}

// TakeEvents returns the events since the last call and clears them.
func (s *Stream) TakeEvents() Event {
	e := s.events
	s.events = 0
	return e
}

// HandshakeDone reports whether the server side of the handshake needs no more
// bytes: [Stream.Server] need not be called again.
func (s *Stream) HandshakeDone() bool {
	return s.srv == srvDone || s.srv == srvFailed || s.phase == phOpaque
}

// Ready reports whether the handshake is over and client messages flow.
func (s *Stream) Ready() bool { return s.phase == phMessages || s.phase == phOpaque }

// Err returns the error that stopped the stream, if any.
func (s *Stream) Err() error { return s.err }

// ExtendedMouseButtons reports whether the client's last SetEncodings asked for
// ExtendedMouseButtons.
func (s *Stream) ExtendedMouseButtons() bool { return s.extMouse }

// Feed parses client bytes p and writes the bytes that pass to w, in order.
// Each Write receives either a sub-slice of p or of the Stream's own prefix
// buffer; it is valid only during that Write. Messages rewritten by policy are
// changed in place in p. After an error, Feed writes nothing more and returns
// the same error; the bytes before the offending message have been written.
func (s *Stream) Feed(p []byte, w io.Writer) error {
	// Fast path: one whole KeyEvent or PointerEvent per chunk at a message
	// boundary, as noVNC sends them (one message per WebSocket frame).
	if s.remain == 0 && s.held == 0 && s.nInject == 0 && s.encLeft == 0 && s.phase == phMessages && s.err == nil {
		if len(p) == 8 && p[0] == MsgKeyEvent {
			s.Stats.Messages++
			if s.key(p[1] != 0, binary.BigEndian.Uint32(p[4:8]), 0, false) {
				return s.emit(w, p)
			}
			return nil
		}
		if len(p) == 6 && p[0] == MsgPointerEvent && (p[1]&0x80 == 0 || !s.extMouse) {
			s.Stats.Messages++
			if s.pointer(p) {
				return s.emit(w, p)
			}
			return nil
		}
	}
	if s.err != nil {
		return s.err
	}
	if s.phase == phOpaque {
		return s.write(w, p)
	}
	run := -1 // start in p of passed bytes not yet written
	i := 0
	for i < len(p) {
		if s.remain > 0 { // body of the current item
			k := len(p) - i
			if int64(k) > s.remain {
				k = int(s.remain)
			}
			if s.bodyPass {
				if run < 0 {
					run = i
				}
			} else if run >= 0 {
				if err := s.write(w, p[run:i]); err != nil {
					return err
				}
				run = -1
			}
			i += k
			s.remain -= int64(k)
			if s.remain == 0 {
				s.finish()
			}
			continue
		}
		if s.phase == phOpaque { // entered mid-chunk
			if run < 0 {
				run = i
			}
			break
		}
		if s.nInject > 0 && s.AtBoundary() {
			if run >= 0 {
				if err := s.write(w, p[run:i]); err != nil {
					return err
				}
				run = -1
			}
			n := s.nInject
			s.nInject = 0
			if err := s.write(w, s.inject[:n]); err != nil {
				return err
			}
		}

		// The decision prefix: in p when it fits, else assembled in s.hold.
		var pre []byte
		var need int
		var total int64
		var err error
		fromHold := s.held > 0
		if !fromHold {
			need, total, err = s.itemNeed(p[i:])
			if err != nil {
				return s.fail(w, p, run, i, err)
			}
			if need > len(p)-i {
				if run >= 0 {
					if err := s.write(w, p[run:i]); err != nil {
						return err
					}
				}
				s.held = copy(s.hold[:], p[i:])
				return nil
			}
			pre = p[i : i+need]
			i += need
		} else {
			for {
				need, total, err = s.itemNeed(s.hold[:s.held])
				if err != nil {
					return s.fail(w, p, run, i, err)
				}
				if s.held >= need {
					break
				}
				if i == len(p) {
					return nil // run < 0: a held prefix only starts a Feed
				}
				k := copy(s.hold[s.held:need], p[i:])
				s.held += k
				i += k
			}
			pre = s.hold[:need]
			s.held = 0
		}

		ph := s.phase
		pass, err := s.decide(pre)
		if err != nil {
			if !fromHold {
				i -= need
			}
			return s.fail(w, p, run, i, err)
		}
		switch {
		case pass && s.trim > 0:
			// Pass the message without its last trim bytes (a 7-byte
			// PointerEvent sent on as a 6-byte one).
			keep := need - s.trim
			s.trim = 0
			if fromHold {
				if err := s.write(w, pre[:keep]); err != nil {
					return err
				}
			} else {
				if run < 0 {
					run = i - need
				}
				if err := s.write(w, p[run:i-need+keep]); err != nil {
					return err
				}
				run = -1
			}
		case pass && fromHold:
			if err := s.write(w, pre); err != nil {
				return err
			}
		case pass:
			if run < 0 {
				run = i - need
			}
		case run >= 0: // dropped: write what passed before it
			if err := s.write(w, p[run:i-need]); err != nil {
				return err
			}
			run = -1
		}
		s.bodyPass = pass
		s.remain = total - int64(need)
		if s.remain == 0 && s.phase == ph {
			s.finish() // not when decide moved on (security choice)
		}
	}
	if run >= 0 {
		if err := s.write(w, p[run:]); err != nil {
			return err
		}
	}
	if s.nInject > 0 && s.AtBoundary() { // the current message ended with p
		n := s.nInject
		s.nInject = 0
		return s.write(w, s.inject[:n])
	}
	return nil
}

// emit writes one whole passed message p.
func (s *Stream) emit(w io.Writer, p []byte) error {
	_, err := w.Write(p)
	if err != nil {
		s.err = err // the stream lost bytes: it cannot go on
	}
	return err
}

func (s *Stream) write(w io.Writer, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := w.Write(b); err != nil {
		return s.writeFailed(err)
	}
	return nil
}

// writeFailed makes a write error final: the stream lost bytes.
func (s *Stream) writeFailed(err error) error {
	s.err = err
	return err
}

// fail writes the passed bytes before position i, then records err.
func (s *Stream) fail(w io.Writer, p []byte, run, i int, err error) error {
	if run >= 0 && run < i {
		if werr := s.write(w, p[run:i]); werr != nil {
			return werr
		}
	}
	s.err = err
	return err
}

// itemNeed is msgNeed extended to the handshake steps.
func (s *Stream) itemNeed(b []byte) (int, int64, error) {
	switch s.phase {
	case phMessages:
		if s.encLeft > 0 {
			return 4, 4, nil // one SetEncodings entry
		}
		return s.msgNeed(b)
	case phVersion:
		return 12, 12, nil
	case phChoice, phInit:
		return 1, 1, nil
	case phAuth:
		return 1, int64(s.authLeft), nil
	case phFailed:
		return 0, 0, errAuthFailed
	}
	return 0, 0, errClientOutOfTurn
}

// decide applies the handshake step or the policy to a complete prefix.
func (s *Stream) decide(pre []byte) (bool, error) {
	switch s.phase {
	case phVersion:
		v, err := parseVersion(pre, errBadVersion)
		if err != nil {
			return false, err
		}
		s.cliVer = v
		switch s.srv {
		case srvAwaitClient:
			s.negotiate()
		case srvVersion:
			// The client spoke first (it pipelined its version): harmless,
			// the server's version settles the rest when it arrives.
			s.phase = phWaitServer
		default:
			return false, errClientOutOfTurn
		}
		return true, nil
	case phChoice:
		if s.srv != srvAwaitChoice {
			return false, errClientOutOfTurn
		}
		return true, s.chooseSecurity(pre[0])
	case phAuth:
		return true, nil
	case phInit:
		// ClientInit's shared-flag: 0 asks the server to disconnect every
		// other client. Under a policy a viewer may not do that to the
		// others (a read-only viewer could lock the controller out): the
		// flag is set, in place.
		if s.pol != nil && pre[0] == 0 {
			pre[0] = 1 // a handshake byte: not counted as a rewritten message
		}
		return true, nil
	}
	if s.encLeft > 0 {
		s.encoding(pre)
		return true, nil
	}
	s.msgType = pre[0]
	if s.viewOnly && !s.viewMessage(pre) {
		return false, nil
	}
	switch pre[0] {
	case MsgKeyEvent:
		return s.key(pre[1] != 0, binary.BigEndian.Uint32(pre[4:8]), 0, false), nil
	case MsgPointerEvent:
		return s.pointer(pre), nil
	case MsgClientCutText:
		if s.pol != nil && s.interactor == Agent {
			s.Stats.Dropped[DropAgent]++
			return false, nil
		}
		s.events |= EventCutText
		return true, nil
	case MsgSetEncodings:
		// The entries follow as 4-byte items (see encoding); the +1 is
		// this header's own finish.
		s.encExt, s.encPrev = false, 0
		if n := int(binary.BigEndian.Uint16(pre[2:4])); n > 0 {
			s.encLeft = n + 1
		}
		return true, nil
	case MsgQEMU:
		if pre[1] == qemuExtendedKeyEvent {
			down := binary.BigEndian.Uint16(pre[2:4]) != 0
			ks := binary.BigEndian.Uint32(pre[4:8])
			if s.pol != nil && s.pol.QEMUKeys == QEMUKeysToKeysym {
				// Layout-proof: the server gets a plain KeyEvent, acted on
				// by keysym, which the policy judges exactly.
				if !s.key(down, ks, 0, false) {
					return false, nil
				}
				pre[0], pre[1], pre[2], pre[3] = MsgKeyEvent, 0, 0, 0
				if down {
					pre[1] = 1
				}
				s.trim = 4
				s.Stats.Rewritten++
				return true, nil
			}
			return s.key(down, ks, binary.BigEndian.Uint32(pre[8:12]), true), nil
		}
		return true, nil
	case MsgSetDesktopSize:
		return s.agentGate(), nil
	case MsgXVP:
		if s.pol != nil && !s.pol.AllowXVP {
			s.Stats.Dropped[DropXVP]++
			return false, nil
		}
		return s.agentGate(), nil
	case MsgGII:
		if s.pol != nil && pre[1]&0x7f == 0 && !s.pol.AllowGIIEvents { // subtype 0: inject events
			s.Stats.Dropped[DropGII]++
			return false, nil
		}
		return s.agentGate(), nil
	}
	return true, nil
}

// finish ends the current item once its last byte went by.
func (s *Stream) finish() {
	switch s.phase {
	case phAuth:
		s.phase = phWaitServer
	case phInit:
		s.phase = phMessages
	case phMessages:
		if s.encLeft > 0 {
			s.encLeft--
			if s.encLeft > 0 {
				return // more entries of the SetEncodings list to come
			}
			s.extMouse = s.encExt
		} else if s.msgType == MsgSetEncodings {
			s.extMouse = false // an empty list
		}
		s.Stats.Messages++
	}
}

// encoding decides one SetEncodings entry, in place: it notes −316 and, when
// the policy makes QEMU key events keysyms, replaces −258 (QEMU Extended Key
// Event) with a copy of the entry before it (Raw when it is the first), which
// changes nothing else: servers read the list as a set in order of preference.
func (s *Stream) encoding(pre []byte) {
	if s.viewOnly {
		s.viewEncoding(pre)
	}
	e := binary.BigEndian.Uint32(pre[:4])
	switch int32(e) {
	case EncodingExtendedMouseButtons:
		s.encExt = true
	case EncodingQEMUExtendedKeyEvent:
		if s.pol != nil && s.pol.QEMUKeys == QEMUKeysToKeysym {
			e = s.encPrev
			binary.BigEndian.PutUint32(pre[:4], e)
			s.Stats.Rewritten++
		}
	}
	s.encPrev = e
}

// Security types whose traffic after authentication stays plain RFB and whose
// client side has a known length.
const (
	secNone    = 1
	secVNCAuth = 2
)

func (s *Stream) chooseSecurity(t uint8) error {
	s.secType = t
	switch t {
	case secNone:
		if s.version == 8 {
			s.phase, s.srv = phWaitServer, srvResult
		} else {
			s.phase, s.srv = phInit, srvDone
		}
		return nil
	case secVNCAuth:
		s.phase, s.authLeft, s.srv = phAuth, 16, srvChallenge
		return nil
	}
	if s.pol == nil {
		s.phase, s.srv = phOpaque, srvDone
		return nil
	}
	return securityError(t)
}

func securityError(t uint8) error {
	name := ""
	switch t {
	case 5, 6:
		name = " (RA2)"
	case 18:
		name = " (TLS)"
	case 19:
		name = " (VeNCrypt)"
	case 16:
		name = " (Tight)"
	}
	return &Error{Reason: "security type " + itoa(int(t)) + name + " cannot be inspected"}
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// negotiate settles the version once both sides have sent theirs.
func (s *Stream) negotiate() {
	s.version = min(s.cliVer, s.srvVer)
	if s.version == 3 {
		s.srv, s.phase = srvSecType33, phWaitServer
	} else {
		s.srv, s.phase = srvSecCount, phChoice
	}
}

// parseVersion reads "RFB 003.00x\n" and returns the minor version it means:
// 3.3 (also 3.4–3.6), 3.7, or 3.8 (also any later 3.x).
func parseVersion(b []byte, bad *Error) (int, error) {
	if len(b) != 12 || string(b[:4]) != "RFB " || b[7] != '.' || b[11] != '\n' {
		return 0, bad
	}
	num := func(d []byte) int {
		n := 0
		for _, c := range d {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	major, minor := num(b[4:7]), num(b[8:11])
	if major != 3 || minor < 3 {
		return 0, bad
	}
	switch {
	case minor >= 8:
		return 8, nil
	case minor == 7:
		return 7, nil
	}
	return 3, nil
}

// Server follows the server's bytes until the handshake is over (see
// [Stream.HandshakeDone]); later calls are no-ops. It only observes: the caller
// forwards p unchanged.
func (s *Stream) Server(p []byte) error {
	if s.err != nil {
		return s.err
	}
	s.srvRest = 0
	for len(p) > 0 {
		switch s.srv {
		case srvDone, srvFailed:
			s.srvRest = len(p)
			return nil
		case srvVersion:
			if !s.srvTake(&p, 12) {
				return nil
			}
			v, err := parseVersion(s.srvHold[:12], errBadServerVersion)
			if err != nil {
				s.err = err
				return err
			}
			s.srvVer, s.srv = v, srvAwaitClient
			if s.cliVer != 0 {
				s.negotiate()
			}
		case srvSecCount:
			if !s.srvTake(&p, 1) {
				return nil
			}
			if n := s.srvHold[0]; n == 0 {
				s.srv = srvReason
			} else {
				s.srvLeft, s.srv = uint32(n), srvSecTypes
			}
		case srvSecTypes:
			if s.srvSkip(&p) {
				s.srv = srvAwaitChoice
			}
		case srvSecType33:
			if !s.srvTake(&p, 4) {
				return nil
			}
			switch t := binary.BigEndian.Uint32(s.srvHold[:4]); t {
			case 0:
				s.srv = srvReason
			case secNone:
				s.srv, s.phase = srvDone, phInit
			case secVNCAuth:
				s.srv, s.phase, s.authLeft = srvChallenge, phAuth, 16
			default:
				if s.pol == nil {
					s.srv, s.phase = srvDone, phOpaque
					return nil
				}
				s.err = securityError(uint8(min(t, 255)))
				return s.err
			}
		case srvChallenge:
			if !s.srvTake(&p, 16) {
				return nil
			}
			s.srv = srvResult
		case srvResult:
			if !s.srvTake(&p, 4) {
				return nil
			}
			if binary.BigEndian.Uint32(s.srvHold[:4]) == 0 {
				if s.phase != phWaitServer {
					s.err = errServerOutOfTurn
					return s.err
				}
				s.srv, s.phase = srvDone, phInit
			} else {
				s.srv, s.phase = srvFailed, phFailed
			}
		case srvReason:
			if !s.srvTake(&p, 4) {
				return nil
			}
			s.srvLeft, s.srv = binary.BigEndian.Uint32(s.srvHold[:4]), srvSkip
			s.phase = phFailed
		case srvSkip:
			if s.srvSkip(&p) {
				s.srv = srvFailed
			}
		default: // srvAwaitClient, srvAwaitChoice
			s.err = errServerOutOfTurn
			return s.err
		}
	}
	return nil
}

// srvTake assembles n bytes of the server's stream in srvHold.
func (s *Stream) srvTake(p *[]byte, n int) bool {
	k := copy(s.srvHold[s.srvHeld:n], *p)
	s.srvHeld += k
	*p = (*p)[k:]
	if s.srvHeld < n {
		return false
	}
	s.srvHeld = 0
	return true
}

// srvSkip skips srvLeft bytes of the server's stream.
func (s *Stream) srvSkip(p *[]byte) bool {
	k := uint32(len(*p))
	if k > s.srvLeft {
		k = s.srvLeft
	}
	*p = (*p)[k:]
	s.srvLeft -= k
	return s.srvLeft == 0
}
