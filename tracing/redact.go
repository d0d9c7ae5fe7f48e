package tracing

import (
	"net/url"
	"regexp"
	"strings"
)

var (
	// scheme://anything-up-to-whitespace-or-quote
	urlRE = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s"'<>]+`)
	// token=…, apikey: …, "x-api-key": "…", password=…, authorization: Bearer …
	kvRE = regexp.MustCompile(`(?i)((?:access_|refresh_|id_)?token|api[_-]?key|x-api-key|secret|password|passwd|authorization|credential)("?\s*[=:]\s*"?)(?:bearer\s+)?[^\s&"',;)}\]]+`)
	// bare bearer tokens
	bearerRE = regexp.MustCompile(`(?i)\bbearer\s+[A-Za-z0-9._~+/=\-]+`)
)

// Redacted stands in for what Redact removed.
const Redacted = "REDACTED"

// Redact removes credentials from free text before it goes into a span,
// a metric label or a log line: every URL is cut to scheme://host (userinfo,
// path and query dropped, since upstream paths and queries carry session
// tokens), and token=…, apikey=…, x-api-key: …, password=…, Bearer … values
// are replaced with REDACTED. It is for error messages at session end, not
// for anything per frame.
func Redact(s string) string {
	if s == "" {
		return s
	}
	s = urlRE.ReplaceAllStringFunc(s, redactURL)
	s = kvRE.ReplaceAllString(s, "${1}${2}"+Redacted)
	s = bearerRE.ReplaceAllString(s, "Bearer "+Redacted)
	return s
}

func redactURL(raw string) string {
	trimmed := strings.TrimRight(raw, ":,.;)]}")
	tail := raw[len(trimmed):] // punctuation after the URL, kept
	raw = trimmed
	scheme, rest, _ := strings.Cut(raw, "://")
	host := cleanHost(rest)
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		host = cleanHost(u.Host)
	}
	out := scheme + "://" + host
	if i := strings.IndexAny(rest, "/?#"); i >= 0 && i < len(rest)-1 {
		out += "/…"
	}
	return out + tail
}

// cleanHost keeps the host[:port] of s: it drops userinfo ("user:pass@"),
// and anything from the first '/', '?' or '#'.
func cleanHost(s string) string {
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
