package bench

import (
	"io"
	"log/slog"
	"net"
	"net/url"
	"testing"

	"vncedge/proxy"
	"vncedge/proxy/record"
	"vncedge/rfbparse"
)

// startRecordingProxy is startProxy with recording to rc (nil: off).
func startRecordingProxy(tb testing.TB, upstream string, rc *record.Recorder) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u, _ := url.Parse(upstream)
	srv, err := proxy.New(proxy.Config{
		Addr: addr, Loops: 1,
		Resolver: &proxy.TargetResolver{Upstream: u, Control: rfbparse.User},
		Policy:   rfbparse.DefaultPolicy(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Recorder: rc,
	})
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe() }()
	select {
	case <-srv.Ready():
	case err := <-done:
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(tb.Context()); <-done })
	return addr
}

// BenchmarkRecordUpdateDown is BenchmarkRelayUpdateDown with recording off
// and on (to a directory under the test's TempDir), in one run: MB/s and
// allocs per 64 KiB down, and for "on" the bytes written and gaps (chunks
// the disk could not take in time) per op.
//
//	go test -run '^$' -bench RecordUpdateDown -benchtime 3000x -count 3 ./bench/
func BenchmarkRecordUpdateDown(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			const size = 64 << 10
			var rc *record.Recorder
			if on {
				var err error
				rc, err = record.New(record.Config{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
			}
			vnc := startFakeVNC(b, size)
			addr := startRecordingProxy(b, "tcp://"+vnc.ln.Addr().String(), rc)
			v := dialViewer(b, addr)
			defer v.c.Close()
			sink := make([]byte, 256<<10)
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			if err := v.readPayload(int64(b.N)*size, sink); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if rc != nil {
				st := rc.Stats()
				b.ReportMetric(float64(st.BytesWritten)/float64(b.N), "rec-B/op")
				b.ReportMetric(float64(st.Gaps), "gaps")
			}
		})
	}
}
