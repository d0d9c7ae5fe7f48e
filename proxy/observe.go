// observe.go is what a session tells the outside: its logger and log lines (logger,
// logf, logEnd, the session-end line with its counters), its trace context and
// span (traceCtx, traceAttrs, endSpan, the span's summary), and the route it
// publishes for readers off the loop (publish). Nothing here changes how bytes
// are relayed.

package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"vncedge/rfbparse"
	"vncedge/tracing"

	"github.com/panjf2000/gnet/v2"
	"go.opentelemetry.io/otel/trace"
)

// observed is what a session counts and reports.
type observed struct {
	bytesUp, bytesDown   uint64 // RFB payload bytes: viewer→server passed, server→viewer
	framesUp, framesDown uint64

	logged bool // the session's last log line is written

	// Tracing: the session span, its context, and events kept until the end.
	span   trace.Span
	spanCx context.Context
	events tracing.EventLog
	status int // HTTP status of a refused upgrade
}

// traceCtx is the session span's context (for children), or Background.
func (s *session) traceCtx() context.Context {
	if s.spanCx != nil {
		return s.spanCx
	}
	return context.Background()
}

// logger is the session's logger: every line carries its identity (once
// resolved) and trace ids. Built per call: sessions log a handful of lines.
func (s *session) logger() *slog.Logger {
	l := s.srv.cfg.Logger
	if s.span != nil {
		info := tracing.SessionInfo{Viewer: addrString(s.viewerAddr())}
		if rt := s.published.Load(); rt != nil {
			info.Kind, info.ID, info.Organization, info.ClientID = rt.Kind, rt.ID, rt.Organization, rt.ClientID
		}
		return tracing.SessionLogger(l, s.span, info)
	}
	return l.With("viewer", addrString(s.viewerAddr()))
}

// traceAttrs are the trace and span ids for the session's log lines.
func (s *session) traceAttrs() []any {
	if s.span == nil {
		return nil
	}
	var out []any
	for _, a := range tracing.LogAttrs(s.span) {
		out = append(out, a)
	}
	return out
}

// endSpan ends the session span with what the session counted: once, at the end.
func (s *session) endSpan() {
	tr := s.srv.cfg.Tracing
	if tr == nil || s.span == nil {
		return
	}
	bytesDown, framesDown := s.downStats()
	sum := tracing.SessionSummary{
		BytesUp: s.bytesUp, BytesDown: bytesDown, FramesUp: s.framesUp, FramesDown: framesDown,
		CloseCode: int(s.closeCode), CloseReason: s.closeReason, HTTPStatus: s.status,
		Duration: time.Since(s.start), Events: s.events.Events(), EventsOmitted: s.events.Omitted(),
	}
	if s.rfb != nil {
		st := &s.rfb.Stats
		sum.MessagesUp, sum.Interactor = st.Messages, s.rfb.Interactor().String()
		for r := range rfbparse.NumDropReasons {
			if st.Dropped[r] > 0 {
				if sum.Dropped == nil {
					sum.Dropped = map[string]uint64{}
				}
				sum.Dropped[r.String()] = st.Dropped[r]
			}
		}
	}
	tr.EndSession(s.span, sum)
	tr.SessionClosed()
	s.span = nil
}

func (s *session) logEnd(err error) {
	if s.logged {
		return
	}
	s.logged = true
	bytesDown, framesDown := s.downStats()
	attrs := []any{
		"viewer", addrString(s.viewerAddr()),
		"duration_ms", time.Since(s.start).Milliseconds(),
		"close_code", int(s.closeCode),
		"close_reason", s.closeReason,
		"bytes_up", s.bytesUp, "bytes_down", bytesDown,
		"frames_up", s.framesUp, "frames_down", framesDown, "pauses", s.pauses,
		"channel", s.channel(),
	}
	if r := s.route; r != nil {
		attrs = append(attrs, "kind", r.Kind, "id", r.ID, "organization", r.Organization, "client_id", r.ClientID)
		if r.Upstream != nil && s.msg == nil { // a VNC channel's: scheme and host only, never credentials
			attrs = append(attrs, "upstream", upstreamName(r.Upstream))
		}
	}
	if s.rfb != nil {
		st := &s.rfb.Stats
		drops := make([]any, 0, 2*int(rfbparse.NumDropReasons))
		for r := range rfbparse.NumDropReasons {
			if st.Dropped[r] > 0 {
				drops = append(drops, r.String(), st.Dropped[r])
			}
		}
		attrs = append(attrs, "messages_up", st.Messages, "rewritten", st.Rewritten,
			slog.Group("dropped", drops...), "interactor", s.rfb.Interactor().String())
	}
	if err != nil && !errors.Is(err, io.EOF) {
		attrs = append(attrs, "err", err.Error())
	}
	attrs = append(attrs, s.traceAttrs()...)
	s.srv.cfg.Logger.Info("session end", attrs...)
}

func (s *session) logf(level slog.Level, msg string) {
	s.srv.cfg.Logger.Log(context.Background(), level, msg, "viewer", addrString(s.viewerAddr()))
}

// publish makes the route visible off the loop (liveness checker, logger).
func (s *session) publish() {
	if rt := s.route; rt != nil {
		s.published.Store(rt)
	}
}

// eventAsync records a span event on the session's loop.
func (s *session) eventAsync(name string) {
	if s.srv.cfg.Tracing == nil {
		return
	}
	_ = s.viewer.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		s.events.Add(name)
		return nil
	}))
}
