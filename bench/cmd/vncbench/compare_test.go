package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"vncedge/bench/loadgen"
)

// TestMatrix checks that every cell a contender declares is in the full matrix
// (else it would silently not run) and that the quick matrix has a 256 KiB
// down cell.
func TestMatrix(t *testing.T) {
	full := matrix(false)
	for _, name := range loadgen.AllContenders {
		for _, d := range loadgen.DeclaredCells(name) {
			if !slices.Contains(full, cell{d.Workload, d.Size, d.N}) {
				t.Errorf("%s declares %+v, not in the matrix", name, d)
			}
		}
	}
	if !slices.Contains(matrix(true), cell{loadgen.Down, 256 << 10, 64}) {
		t.Error("the quick matrix has no 256 KiB down cell")
	}
}

// TestGoalsReport writes a report from made-up medians: a measured goal shows
// its value and verdict, an unmeasured one "—", and 0 allocs meets ≤ 0.
func TestGoalsReport(t *testing.T) {
	dir := t.TempDir()
	micro := filepath.Join(dir, "micro.txt")
	if err := os.WriteFile(micro, []byte("BenchmarkRelayUpdateDown-2 \t 100\t 10 ns/op\t 0 B/op\t 0 allocs/op\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d64 := cell{loadgen.Down, 1 << 20, 64}
	r16 := cell{loadgen.RTT, 1 << 10, 16}
	res := map[key][]meas{
		{loadgen.VncedgeTCP, d64}: {{mbps: 1300, proxyCPU: 0.2, bytes: 1.3e9, elapsed: 1}},
		{loadgen.GoProxyC, d64}:   {{mbps: 1000, proxyCPU: 0.8, bytes: 1e9, elapsed: 1}},
		{loadgen.TCPRelayC, d64}:  {{mbps: 2000, elapsed: 1}},
		{loadgen.VncedgeTCP, r16}: {{p50: 100e3, mbps: 40, bytes: 40e6, proxyCPU: 0.5, elapsed: 1}},
		{loadgen.VncedgeRec, r16}: {{p50: 120e3, mbps: 36, bytes: 36e6, proxyCPU: 0.6, recBytes: 36.5e6, elapsed: 1}},
		{loadgen.GoProxyC, r16}:   {{p50: 200e3, elapsed: 1}},
	}
	o := compareOpts{runs: 1, out: filepath.Join(dir, "b.md"), micro: micro, idleN: 9900,
		contenders: loadgen.AllContenders, cmdline: "test"}
	if err := writeReport(o, matrix(false), res, time.Second, time.Second, time.Second); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(o.out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| down MB/s S=1MiB N=64, vncedge-tcp ÷ go-gorilla | 1.30 | ≥ 1.3 | yes |",
		"| down MB/s S=1MiB N=64, vncedge-tcp ÷ tcp-relay | 0.65 | ≥ 0.8 | **no** |",
		"| down MB/s S=256KiB N=16, vncedge-tcp ÷ go-gorilla | — | ≥ 1.3 | — |",
		"| proxy CPU s/GB down S=1MiB N=64, vncedge-tcp ÷ go-gorilla | 0.19 | ≤ 0.5 | yes |",
		"| rtt p50 N=16 S=1KiB, vncedge-tcp ÷ go-gorilla | 0.50 | ≤ 0.7 | yes |",
		"| idle KiB per session pair (Pss), vncedge-tcp, N=9900 | — | ≤ 8 | — |",
		"| allocs per forwarded frame (micro benchmarks, worst; TLS ones not counted: their in-process client's crypto/tls allocates) | 0 | ≤ 0 | yes |",
		"| rtt S=1KiB N=16 | 40 | 36 | 0.90 | 12.50 | 16.67 | 1.33 | 100.0 | 120.0 | 1.20 | 1.01 GB |",
		"| c′ | vncedge-rec |",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	_, goals, _ := strings.Cut(string(b), "## Goals\n\n")
	goals, _, _ = strings.Cut(goals, "\n\n")
	// 12 down MB/s, down N=1, 2 CPU s/GB, rtt p50, rtt req/s, keys/s, CPU per key, idle, allocs.
	if n := strings.Count(goals, "\n") - 1; n != 21 {
		t.Errorf("%d goal rows, want 21:\n%s", n, goals)
	}
}
