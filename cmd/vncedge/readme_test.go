package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"vncedge/tracing"
)

// The README's configuration reference is `vncedge --help`, verbatim.
// Regenerate it with: go run ./cmd/vncedge --help 2>&1 | tail -n +2
func TestREADMEFlagReference(t *testing.T) {
	o := &options{header: headerFlag{}, trace: tracing.DefaultConfig()} // no OTEL_* env: stable defaults
	fs := defineFlags(o)
	var want bytes.Buffer
	fs.SetOutput(&want)
	fs.PrintDefaults()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- flags:begin -->\n```\n", "```\n<!-- flags:end -->"
	s := string(readme)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatal("README lacks the flags:begin/flags:end block")
	}
	if got := s[i+len(begin) : j]; got != want.String() {
		t.Errorf("README flag reference differs from vncedge --help; regenerate it:\n%s", want.String())
	}
}
