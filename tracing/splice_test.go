package tracing

import (
	"strings"
	"testing"
)

func TestSplicedMetric(t *testing.T) {
	p, _ := newTestProvider(t, false)
	var n int64 = 7
	p.ObserveSpliced(func() int64 { return n })
	if text := scrape(t, p); !strings.Contains(text, "vncedge_sessions_spliced_total 7") {
		t.Errorf("metrics lack vncedge_sessions_spliced_total 7")
	}
	n = 9
	if text := scrape(t, p); !strings.Contains(text, "vncedge_sessions_spliced_total 9") {
		t.Errorf("metric not updated")
	}
}
