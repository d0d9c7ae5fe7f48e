package record

import (
	"fmt"
	"io"
	"time"
)

// WriteInfo prints a recording's identity, duration, sizes and annotation
// timeline.
func WriteInfo(w io.Writer, s *Session) {
	h := s.Header
	fmt.Fprintf(w, "format:        %s\n", h.Format)
	fmt.Fprintf(w, "session:       %s/%s (organization %q, client_id %q)\n", h.Kind, h.ID, h.Organization, h.ClientID)
	fmt.Fprintf(w, "viewer:        %s\n", h.Viewer)
	fmt.Fprintf(w, "upstream:      %s\n", h.Upstream)
	fmt.Fprintf(w, "start:         %s\n", h.Start.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "duration:      %s\n", s.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "server bytes:  %d\n", s.Server)
	fmt.Fprintf(w, "input:         %d messages (record-input %s)\n", s.Input, h.Input)
	if s.ServerInit != nil {
		fmt.Fprintf(w, "handshake:     server %q client %q security %d, %dx%d %q\n", trimNL(s.ServerVersion), trimNL(s.ClientVersion),
			s.SecurityType, int(s.ServerInit[0])<<8|int(s.ServerInit[1]), int(s.ServerInit[2])<<8|int(s.ServerInit[3]), s.ServerInit[24:])
	}
	replay := "yes"
	if err := s.Replayable(); err != nil {
		replay = "no: " + err.Error()
	} else if err := NoVNCFormat(s.PixelFormat); err != nil {
		replay = "not in noVNC: " + err.Error()
	}
	fmt.Fprintf(w, "replayable:    %s\n", replay)
	switch {
	case s.Truncated:
		fmt.Fprintf(w, "file:          cut short (crash?): readable up to its last complete record\n")
	case s.Corrupt:
		fmt.Fprintf(w, "file:          corrupt record: read up to it\n")
	}
	fmt.Fprintf(w, "gaps:          %d\n", s.Gaps)
	fmt.Fprintf(w, "timeline:\n")
	for _, ev := range s.Events {
		a := ev.Annotation
		if a == nil {
			continue
		}
		fmt.Fprintf(w, "  %10s  %s", ev.Time.Round(time.Millisecond), a.Kind)
		if a.To != "" {
			fmt.Fprintf(w, " to=%s", a.To)
		}
		if a.Reason != "" {
			fmt.Fprintf(w, " reason=%s", a.Reason)
		}
		if a.Count != 0 {
			fmt.Fprintf(w, " count=%d", a.Count)
		}
		if a.Size != 0 {
			fmt.Fprintf(w, " size=%d", a.Size)
		}
		if a.Code != 0 {
			fmt.Fprintf(w, " code=%d", a.Code)
		}
		fmt.Fprintln(w)
	}
}

func trimNL(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		return s[:n-1]
	}
	return s
}
