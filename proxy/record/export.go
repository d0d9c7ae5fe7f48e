package record

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// ExportWebsockify writes the recording in websockify's --record format, a
// JavaScript file defining VNC_frame_data for noVNC's playback tools: one
// string per frame, "{ms{data" from the server and "}ms}data" from the
// client, bytes as latin-1 characters in a single-quoted JS string. The
// client side is the recorded handshake and input.
func ExportWebsockify(w io.Writer, s *Session) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "var VNC_frame_encoding = 'binary';\nvar VNC_frame_data = [\n")
	if s.ClientVersion != "" {
		// noVNC's player needs the client's side of the handshake only for
		// display; the version is enough.
		writeFrame(bw, '}', 0, []byte(s.ClientVersion))
	}
	for _, ev := range s.Events {
		switch ev.Type {
		case TypeServer:
			writeFrame(bw, '{', ev.Time, ev.Data)
		case TypeInput:
			writeFrame(bw, '}', ev.Time, ev.Data)
		}
	}
	fmt.Fprintf(bw, "'EOF'];\n")
	if a, err := json.Marshal(s.Header); err == nil {
		fmt.Fprintf(bw, "var VNC_frame_header = %s;\n", a)
	}
	return bw.Flush()
}

func writeFrame(w *bufio.Writer, dir byte, t time.Duration, data []byte) {
	ms := t.Milliseconds()
	_ = w.WriteByte('\'')
	fmt.Fprintf(w, "%c%d%c", dir, ms, dir)
	const hex = "0123456789abcdef"
	for _, c := range data {
		switch {
		case c == '\\':
			_, _ = w.WriteString(`\\`)
		case c == '\'':
			_, _ = w.WriteString(`\'`)
		case c == '\n':
			_, _ = w.WriteString(`\n`)
		case c == '\r':
			_, _ = w.WriteString(`\r`)
		case c == '\t':
			_, _ = w.WriteString(`\t`)
		case c >= 0x20 && c < 0x7f:
			_ = w.WriteByte(c)
		default:
			_, _ = w.WriteString(`\x`)
			_ = w.WriteByte(hex[c>>4])
			_ = w.WriteByte(hex[c&15])
		}
	}
	_, _ = w.WriteString("',\n")
}

// ParseWebsockify reads back a VNC_frame_data file written by
// ExportWebsockify (or websockify --record): server frames' bytes in order.
// It is the test's independent check of the export.
func ParseWebsockify(src string) (server, client [][]byte, err error) {
	lines := strings.Split(src, "\n")
	for _, ln := range lines {
		if !strings.HasPrefix(ln, "'{") && !strings.HasPrefix(ln, "'}") {
			continue
		}
		ln = strings.TrimSuffix(ln, ",")
		if len(ln) < 2 || ln[len(ln)-1] != '\'' {
			return nil, nil, fmt.Errorf("bad frame line %q", ln)
		}
		body := ln[1 : len(ln)-1]
		dir := body[0]
		i := strings.IndexByte(body[1:], dir)
		if i < 0 {
			return nil, nil, fmt.Errorf("bad frame line %q", ln)
		}
		b, err := unescapeJS(body[i+2:])
		if err != nil {
			return nil, nil, err
		}
		if dir == '{' {
			server = append(server, b)
		} else {
			client = append(client, b)
		}
	}
	return server, client, nil
}

func unescapeJS(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(s) {
			return nil, fmt.Errorf("dangling escape")
		}
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("short \\x escape")
			}
			var v byte
			for _, h := range []byte(s[i+1 : i+3]) {
				v <<= 4
				switch {
				case h >= '0' && h <= '9':
					v |= h - '0'
				case h >= 'a' && h <= 'f':
					v |= h - 'a' + 10
				default:
					return nil, fmt.Errorf("bad \\x escape")
				}
			}
			out = append(out, v)
			i += 2
		default:
			out = append(out, s[i])
		}
	}
	return out, nil
}
