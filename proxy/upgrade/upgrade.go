// Package upgrade reads and answers the HTTP/1.1 request that opens a
// WebSocket connection (RFC 6455 §4.2), working on raw bytes.
//
// It is meant for an event loop that reads into its own buffers. [End] finds
// where the request head stops, [Parse] reads the head into a [Request],
// [Check] decides whether the request is an acceptable WebSocket upgrade, and
// [AppendResponse] or [AppendError] write the answer. Nothing here reads from
// or writes to a connection, and a Request keeps no reference to the bytes it
// was parsed from, so the caller may reuse its buffer right after Parse.
//
// Errors meant for the client are *[Error] values that carry the HTTP status
// to answer with.
package upgrade

import (
	"bytes"
	"net/url"
	"strconv"
	"strings"
)

// MaxRequestSize is the largest request head, in bytes, that Parse accepts.
// A client that has sent more than this without finishing its head should be
// answered with [ErrTooLarge].
const MaxRequestSize = 8 << 10

// maxHeaderLines is the most header lines Parse accepts. Browsers send about
// fifteen; the limit keeps the duplicate-merging in Parse cheap.
const maxHeaderLines = 100

// ErrTooLarge is the answer to a request head longer than [MaxRequestSize]
// or with more header lines than Parse accepts.
var ErrTooLarge = &Error{Status: 431, Message: "request header fields too large"}

// An Error is a refused request: the HTTP status to answer with, a short
// plain-text reason that becomes the response body, and any extra response
// header fields the status calls for (such as Allow for 405). [AppendError]
// writes it as a response.
type Error struct {
	Status  int
	Message string
	Header  [][2]string // extra header fields, name and value
}

// Error returns the status and message, for logs.
func (e *Error) Error() string {
	return "upgrade: " + strconv.Itoa(e.Status) + " " + e.Message
}

func badRequest(msg string) *Error { return &Error{Status: 400, Message: msg} }

// A Request is a parsed request head. Parse fills every field; the WebSocket
// fields are copied out of Header for convenience.
type Request struct {
	Method   string // "GET"
	Target   string // request-target as sent, such as "/vnc/a%20b?token=x"
	Path     string // Target before "?", percent-decoded
	RawQuery string // Target after "?", not decoded
	Query    url.Values

	Proto      string // "HTTP/1.1"
	ProtoMajor int    // 1
	ProtoMinor int    // 1

	// Header holds the header fields in the order they first appeared, as
	// pairs of lowercase name and value (without surrounding whitespace).
	// Each name appears once: the values of a repeated field are joined
	// with ", ". Use Get to look a field up.
	Header [][2]string

	Host      string // Host
	Origin    string // Origin, "" for non-browser clients
	Key       string // Sec-WebSocket-Key
	Version   string // Sec-WebSocket-Version
	UserAgent string // User-Agent

	// Protocols lists the subprotocols the client offers in
	// Sec-WebSocket-Protocol, in its order, trimmed, without empty elements.
	Protocols []string

	// Extensions is the Sec-WebSocket-Extensions offer as sent. It is kept
	// for logging only: this package declines every extension.
	Extensions string

	// UpgradeWebSocket reports whether the Upgrade field lists "websocket".
	UpgradeWebSocket bool

	// ConnectionUpgrade reports whether the Connection field lists "upgrade".
	ConnectionUpgrade bool
}

// Get returns the value of the header field name, which is matched without
// regard to case, or "" if the request has no such field. The values of a
// repeated field are joined with ", ".
func (r *Request) Get(name string) string {
	for _, f := range r.Header {
		if equalFold(f[0], name) {
			return f[1]
		}
	}
	return ""
}

// End returns the length of the request head at the start of b: the bytes up
// to and including the empty line that ends it ("\r\n\r\n", or "\n\n" from
// clients that end lines with a bare LF). It returns -1 if b does not yet hold
// a complete head. Bytes after the head are pipelined data, such as a first
// WebSocket frame, that the caller must keep.
func End(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1 // just after a line end: is the next line empty?
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// Parse parses a request head: exactly the bytes that End measured. It checks
// HTTP/1.x syntax (RFC 9112) but not WebSocket rules, which are Check's job.
// Every error it returns is an *[Error]: [ErrTooLarge] for a head longer than
// [MaxRequestSize] or with too many header lines, 505 for an HTTP major
// version other than 1, and 400 for anything malformed, including obsolete
// line folding, whitespace before a header's colon, a repeated Host field, a
// target that is not a path, and a path or query that does not decode.
func Parse(head []byte) (*Request, error) {
	if len(head) > MaxRequestSize {
		return nil, ErrTooLarge
	}
	if End(head) != len(head) {
		return nil, badRequest("incomplete request head")
	}
	// One copy of the whole head; every string in the Request is a part of
	// it, or a constant.
	s := string(head)
	line, rest := cutLine(s)
	r := new(Request)
	if err := r.parseRequestLine(line); err != nil {
		return nil, err
	}
	n := strings.Count(rest, "\n") - 1 // the last one ends the empty line
	if n > maxHeaderLines {
		return nil, ErrTooLarge
	}
	r.Header = make([][2]string, 0, n)
	for {
		line, rest = cutLine(rest)
		if line == "" {
			break
		}
		if err := r.addField(line); err != nil {
			return nil, err
		}
	}
	r.fillWebSocket()
	return r, nil
}

// cutLine splits s after its first line and strips that line's end, "\n" or
// "\r\n". Any other CR stays in the line, where the syntax checks reject it.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	return strings.TrimSuffix(s[:i], "\r"), s[i+1:]
}

// parseRequestLine parses "GET /path?query HTTP/1.1": single spaces between
// three parts, as RFC 9112 §3 requires of senders.
func (r *Request) parseRequestLine(line string) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" {
		return badRequest("malformed request line")
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return badRequest("malformed HTTP version")
	}
	// Checked before the target so that an HTTP/2 connection preface
	// ("PRI * HTTP/2.0") gets 505 rather than a complaint about "*".
	if major != 1 {
		return &Error{Status: 505, Message: "HTTP version not supported"}
	}
	for i := 0; i < len(target); i++ {
		// Visible ASCII only; a fragment is never part of a request-target.
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return badRequest("malformed request target")
		}
	}
	if target[0] != '/' {
		// Absolute-form and asterisk-form have no use here, and browsers
		// send origin-form.
		return badRequest("request target must be a path")
	}
	rawPath, rawQuery, _ := strings.Cut(target, "?")
	path := rawPath
	if strings.IndexByte(rawPath, '%') >= 0 {
		var err error
		if path, err = url.PathUnescape(rawPath); err != nil {
			return badRequest("malformed path escape")
		}
	}
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return badRequest("malformed query")
	}
	r.Method, r.Target, r.Path, r.RawQuery, r.Query = method, target, path, rawQuery, query
	r.Proto, r.ProtoMajor, r.ProtoMinor = proto, major, minor
	return nil
}

// parseVersion parses "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3).
func parseVersion(s string) (major, minor int, ok bool) {
	if len(s) != len("HTTP/1.1") || s[:5] != "HTTP/" || s[6] != '.' ||
		!isDigit(s[5]) || !isDigit(s[7]) {
		return 0, 0, false
	}
	return int(s[5] - '0'), int(s[7] - '0'), true
}

// addField parses one header line, "name: value", and adds it to r.Header,
// joining it to an earlier field of the same name.
func (r *Request) addField(line string) error {
	if line[0] == ' ' || line[0] == '\t' {
		// RFC 9112 §5.2 lets a server reject obs-fold with 400.
		return badRequest("obsolete line folding in header")
	}
	name, value, ok := strings.Cut(line, ":")
	if !ok || name == "" {
		return badRequest("malformed header line")
	}
	if c := name[len(name)-1]; c == ' ' || c == '\t' {
		// RFC 9112 §5.1: a server MUST reject this with 400.
		return badRequest("whitespace before colon in header")
	}
	if !isToken(name) {
		return badRequest("malformed header name")
	}
	value = trimOWS(value)
	for i := 0; i < len(value); i++ {
		// VCHAR, obs-text, SP and HTAB: no controls, in particular no CR.
		if c := value[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return badRequest("malformed header value")
		}
	}
	name = lowerName(name)
	for i := range r.Header {
		if r.Header[i][0] != name {
			continue
		}
		if name == "host" {
			// RFC 9112 §3.2: MUST answer 400.
			return badRequest("repeated Host header")
		}
		r.Header[i][1] += ", " + value
		return nil
	}
	r.Header = append(r.Header, [2]string{name, value})
	return nil
}

// fillWebSocket copies the fields Check needs out of r.Header.
func (r *Request) fillWebSocket() {
	for _, f := range r.Header {
		switch v := f[1]; f[0] {
		case "host":
			r.Host = v
		case "origin":
			r.Origin = v
		case "sec-websocket-key":
			r.Key = v
		case "sec-websocket-version":
			r.Version = v
		case "user-agent":
			r.UserAgent = v
		case "sec-websocket-protocol":
			r.Protocols = splitList(v)
		case "sec-websocket-extensions":
			r.Extensions = v
		case "upgrade":
			r.UpgradeWebSocket = hasToken(v, "websocket")
		case "connection":
			r.ConnectionUpgrade = hasToken(v, "upgrade")
		}
	}
}

// knownNames are the lowercase names of the fields browsers send with an
// upgrade, so that lowerName seldom allocates.
var knownNames = [...]string{
	"host", "connection", "upgrade", "origin", "user-agent", "pragma",
	"cache-control", "accept-encoding", "accept-language", "cookie",
	"sec-websocket-key", "sec-websocket-version", "sec-websocket-protocol",
	"sec-websocket-extensions", "x-forwarded-for", "x-forwarded-proto",
	"x-real-ip", "authorization", "x-api-key",
}

// lowerName returns the ASCII lowercase form of a header name.
func lowerName(name string) string {
	lower := true
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			lower = false
			break
		}
	}
	if lower {
		return name
	}
	for _, k := range knownNames {
		if equalFold(k, name) {
			return k
		}
	}
	return strings.ToLower(name) // a token is ASCII: this is ASCII lowering
}

// splitList splits a comma-separated list into its trimmed, non-empty
// elements. It returns nil for an empty list.
func splitList(v string) []string {
	var list []string
	for e := range strings.SplitSeq(v, ",") {
		if e = trimOWS(e); e != "" {
			if list == nil {
				list = make([]string, 0, strings.Count(v, ",")+1)
			}
			list = append(list, e)
		}
	}
	return list
}

// hasToken reports whether the comma-separated list v has an element equal
// to token without regard to ASCII case.
func hasToken(v, token string) bool {
	for e := range strings.SplitSeq(v, ",") {
		if equalFold(trimOWS(e), token) {
			return true
		}
	}
	return false
}

// trimOWS trims spaces and tabs (RFC 9110 OWS) from both ends of s.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// equalFold reports whether a and b are equal under ASCII case folding.
// Unlike strings.EqualFold it never matches non-ASCII letters to ASCII ones
// (such as the Kelvin sign to "k").
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool { return tokenChars[c] }

// tokenChars marks the RFC 9110 tchar bytes.
var tokenChars = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()
