package main

import (
	"strings"
	"testing"
)

// TestAttack5SocketSizingFlags: --upstream-recv-buffer and
// --viewer-notsent-lowat with negative, huge and overflowing values. A
// negative value is "off" for both (documented); a value past the kernel's
// int (setsockopt takes a C int: SetsockoptInt truncates to int32, so
// --upstream-recv-buffer=4294967296 became SO_RCVBUF 0: measured 2304 bytes
// back from getsockopt, the kernel's smallest buffer, for every upstream;
// 2147483648 became -2^31, which the kernel happened to cap at rmem_max) must
// be refused with an error naming the flag, not applied silently.
func TestAttack5SocketSizingFlags(t *testing.T) {
	cases := []struct {
		args      []string
		parseErr  bool   // the flag package refuses it
		wantErr   string // buildConfig refuses it
		recv, low int    // else the Config values
	}{
		{args: []string{"--upstream-recv-buffer=-1"}, recv: -1, low: 128 << 10},
		{args: []string{"--upstream-recv-buffer=0"}, recv: 0, low: 128 << 10},
		{args: []string{"--upstream-recv-buffer=2147483647"}, recv: 2147483647, low: 128 << 10},
		{args: []string{"--upstream-recv-buffer=2147483648"}, wantErr: "--upstream-recv-buffer"},
		{args: []string{"--upstream-recv-buffer=4294967296"}, wantErr: "--upstream-recv-buffer"},
		{args: []string{"--upstream-recv-buffer=99999999999999999999"}, parseErr: true},
		{args: []string{"--upstream-recv-buffer=1k"}, parseErr: true},
		{args: []string{"--viewer-notsent-lowat=-5"}, low: -1},
		{args: []string{"--viewer-notsent-lowat=0"}, low: -1},
		{args: []string{"--viewer-notsent-lowat=1"}, low: 1},
		{args: []string{"--viewer-notsent-lowat=4294967296"}, wantErr: "--viewer-notsent-lowat"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			o, err := parseFlags(append([]string{"--target", "tcp://127.0.0.1:5900"}, tc.args...))
			if tc.parseErr {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := buildConfig(o, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one naming %s (the value would be truncated to a C int)", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.UpstreamRecvBuffer != tc.recv || cfg.ViewerNotSentLowat != tc.low {
				t.Fatalf("UpstreamRecvBuffer %d ViewerNotSentLowat %d, want %d %d", cfg.UpstreamRecvBuffer, cfg.ViewerNotSentLowat, tc.recv, tc.low)
			}
		})
	}
}
