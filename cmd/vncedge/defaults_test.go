package main

import (
	"reflect"
	"testing"

	"vncedge/proxy"
	"vncedge/proxy/record"
	"vncedge/proxy/resolve"
	"vncedge/tracing"
)

// The flags' defaults are proxy.DefaultConfig's (and the record and resolve
// packages'), so --help shows what a zero Config gets and the two cannot drift.
func TestFlagDefaultsAreProxyDefaults(t *testing.T) {
	o := &options{header: headerFlag{}, trace: tracing.DefaultConfig()}
	fs := defineFlags(o)
	if err := fs.Parse([]string{"--target", "tcp://127.0.0.1:5900"}); err != nil { // no VNCEDGE_* variables
		t.Fatal(err)
	}
	cfg, _, err := buildConfig(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := proxy.DefaultConfig()
	cv, dv := reflect.ValueOf(cfg), reflect.ValueOf(d)

	// The fields with a flag of their own: exactly the default.
	for _, name := range []string{
		"DialTimeout", "HandshakeTimeout", "CloseTimeout", "MaxFramePayload",
		"MaxViewerBuffer", "ViewerHighWater", "ViewerLowWater", "NoSplice", "SplicePipeSize", "ViewerNotSentLowat", "UpstreamRecvBuffer",
		"PingInterval", "IdleTimeout", "MaxDuration", "UpstreamIdleTimeout",
		"LivenessPeriod", "ControlGrace", "MaxSessions", "MaxPerIP", "MaxPerOrg",
		"ProxyProtocol", "ForwardedHeader",
	} {
		if got, want := cv.FieldByName(name).Interface(), dv.FieldByName(name).Interface(); got != want {
			t.Errorf("%s: flag default %v, proxy.DefaultConfig %v", name, got, want)
		}
	}
	// --loops 0 leaves the count to New (GOMAXPROCS).
	if cfg.Loops != 0 {
		t.Errorf("Loops: flag default %d, want 0 (New's GOMAXPROCS)", cfg.Loops)
	}
	// Every other plain field the flags set is zero (New defaults it) or
	// the default: a flag with a literal default of its own fails here.
	notDefaults := map[string]bool{"Addr": true, "AdminAddr": true} // addresses, not defaults
	for i := range cv.NumField() {
		f := cv.Type().Field(i)
		switch f.Type.Kind() {
		case reflect.Bool, reflect.Int, reflect.Int64, reflect.String:
		default:
			continue
		}
		if notDefaults[f.Name] || cv.Field(i).IsZero() {
			continue
		}
		if got, want := cv.Field(i).Interface(), dv.Field(i).Interface(); got != want {
			t.Errorf("%s: flags give %v, proxy.DefaultConfig %v", f.Name, got, want)
		}
	}

	if o.vncPort != resolve.DefaultVNCPort {
		t.Errorf("--vnc-port default %d, resolve.DefaultVNCPort %d", o.vncPort, resolve.DefaultVNCPort)
	}
	if want := (record.Config{}).Input.String(); o.rec.input != want {
		t.Errorf("--record-input default %q, record's %q", o.rec.input, want)
	}
}
