package proxy

import (
	"errors"
	"strconv"
	"strings"
)

// Sessions-file errors go to the log (at start and on every failed
// reload): they name the file and line, never a secret. URLs are quoted
// with their userinfo and query redacted (they may carry a password or a
// token), and API keys are never quoted (see sessionsParser.apiKey).

// redactRawURL returns raw, which need not parse, with the userinfo of its
// authority replaced by "xxxxx" and its query and fragment cut.
func redactRawURL(raw string) string {
	s := raw
	if q := strings.IndexAny(s, "?#"); q >= 0 {
		s = s[:q] + "?…"
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if j := strings.IndexAny(s[start:], "/?"); j >= 0 {
		end = start + j
	}
	if at := strings.LastIndex(s[start:end], "@"); at >= 0 {
		s = s[:start] + "xxxxx" + s[start+at:]
	}
	return s
}

// redactURLError returns err's message with every form of raw in it
// redacted, and raw's userinfo removed wherever it appears.
func redactURLError(err error, raw string) error {
	red := redactRawURL(raw)
	msg := err.Error()
	msg = strings.ReplaceAll(msg, strconv.Quote(raw), strconv.Quote(red))
	msg = strings.ReplaceAll(msg, raw, red)
	if i := strings.Index(raw, "://"); i >= 0 {
		auth := raw[i+3:]
		if j := strings.IndexAny(auth, "/?#"); j >= 0 {
			auth = auth[:j]
		}
		if at := strings.LastIndex(auth, "@"); at > 0 {
			for _, part := range strings.Split(auth[:at], ":") {
				if part != "" {
					msg = strings.ReplaceAll(msg, part, "xxxxx")
				}
			}
		}
	}
	if q := strings.IndexAny(raw, "?#"); q >= 0 && q+1 < len(raw) {
		msg = strings.ReplaceAll(msg, raw[q+1:], "…")
	}
	return errors.New(msg)
}
