package main

import (
	"testing"

	"vncedge/proxy"
	"vncedge/rfbparse"
)

// The example sessions file in deploy/ must stay loadable.
func TestExampleSessionsFile(t *testing.T) {
	if _, err := proxy.LoadStaticResolver("../../deploy/sessions.example.yaml", rfbparse.Agent); err != nil {
		t.Fatal(err)
	}
}
