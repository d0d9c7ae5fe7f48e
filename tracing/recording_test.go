package tracing

import (
	"strings"
	"testing"
)

func TestRecordingMetrics(t *testing.T) {
	p, _ := newTestProvider(t, false)
	var bytes, gaps, open int64 = 123, 2, 1
	p.ObserveRecordings(func() (int64, int64, int64) { return bytes, gaps, open })
	text := scrape(t, p)
	for _, want := range []string{"vncedge_record_bytes_total 123", "vncedge_record_gaps_total 2", "vncedge_record_open 1"} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepRecord(text))
		}
	}
	bytes, open = 200, 0
	if text := scrape(t, p); !strings.Contains(text, "vncedge_record_bytes_total 200") || !strings.Contains(text, "vncedge_record_open 0") {
		t.Errorf("metrics not updated:\n%s", grepRecord(text))
	}
}

func grepRecord(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, "record") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
