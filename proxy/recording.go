package proxy

import (
	"vncedge/proxy/record"
	"vncedge/rfbparse"
)

// Session recording hooks (issue 17), of VNC channels only. Each is one line
// where listed below; all the work is in proxy/record, and the loop-side calls
// never block or allocate per frame:
//
//	recStart  upstreamOpen, once the relay starts
//	recServer serverBytes, every server→viewer chunk
//	recInput  upstreamWriter.Write, viewer bytes that passed policy
//	recPolicy viewerFrames.OnData, after the policy ran
//	recNote   controlChange.Run, a change of control
//	recEnd    finish, the close code and reason

// recStart opens the session's recording when the server records and the
// route does not opt out (Route.Record). Only VNC channels open one
// (upstreamOpen).
func (s *session) recStart() {
	rc := s.srv.cfg.Recorder
	rt := s.route
	if rc == nil || rt == nil || (rt.Record != nil && !*rt.Record) {
		return
	}
	h := record.Header{Kind: rt.Kind, ID: rt.ID, Organization: rt.Organization, ClientID: rt.ClientID,
		Viewer: addrString(s.viewer.RemoteAddr()), Start: s.start}
	if u := rt.Upstream; u != nil { // scheme and host only: never credentials
		h.Upstream = u.Scheme + "://" + u.Host
	}
	s.rec = rc.Start(h, func() { s.endAsync(reasonRecordFailed) })
}

// recServer records server bytes sent to the viewer.
func (s *session) recServer(p []byte) {
	if s.rec != nil && s.rec.Server(p) != nil {
		s.end(reasonRecordFailed)
	}
}

// recInput records viewer bytes that passed policy (the recorder keeps what
// --record-input allows; keystrokes only with "all").
func (s *session) recInput(b []byte) {
	if s.rec != nil && s.rec.Client(b) != nil {
		s.end(reasonRecordFailed)
	}
}

// recPolicy notes messages the policy dropped or rewrote since the last call.
func (s *session) recPolicy() {
	if s.rec == nil || s.rfb == nil {
		return
	}
	st := &s.rfb.Stats
	if s.rec.Policy(st.Dropped[:], dropName, st.Rewritten) != nil {
		s.end(reasonRecordFailed)
	}
}

func dropName(i int) string { return rfbparse.DropReason(i).String() }

// recNote notes a change of control.
func (s *session) recNote(to rfbparse.Interactor) {
	if s.rec != nil {
		_ = s.rec.Note(record.NoteControl, 0, to.String())
	}
}

// recEnd ends the recording with the session's close code and reason.
func (s *session) recEnd() {
	if s.rec != nil {
		s.rec.End(int(s.closeCode), s.closeReason)
		s.rec = nil
	}
}
