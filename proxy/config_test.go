package proxy

import (
	"reflect"
	"runtime"
	"testing"
	"time"
)

// --loops 0 follows GOMAXPROCS (which Go sets from a container's CPU limit),
// not the host's core count.
func TestLoopsFollowGOMAXPROCS(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	var c Config
	c.setDefaults()
	if c.Loops != 1 {
		t.Errorf("Loops = %d with GOMAXPROCS 1, want 1", c.Loops)
	}
	c = Config{Loops: 3}
	c.setDefaults()
	if c.Loops != 3 {
		t.Errorf("Loops = %d, want the 3 asked for", c.Loops)
	}
}

// DefaultConfig is what New's defaulting gives a zero Config, field for field.
func TestDefaultConfigIsZeroConfigDefaulted(t *testing.T) {
	var c Config
	c.setDefaults()
	d := DefaultConfig()
	if !reflect.DeepEqual(c, d) {
		cv, dv := reflect.ValueOf(c), reflect.ValueOf(d)
		for i := range cv.NumField() {
			f := cv.Type().Field(i)
			if !reflect.DeepEqual(cv.Field(i).Interface(), dv.Field(i).Interface()) {
				t.Errorf("%s: setDefaults gives %v, DefaultConfig %v", f.Name, cv.Field(i).Interface(), dv.Field(i).Interface())
			}
		}
	}
	// setDefaults keeps what DefaultConfig already filled.
	c2 := d
	c2.setDefaults()
	if !reflect.DeepEqual(c2, d) {
		t.Error("setDefaults changed DefaultConfig()")
	}
}

// The defaults that are not a plain "zero means default".
func TestSetDefaultsDerivedAndNegative(t *testing.T) {
	c := Config{PingInterval: -1, MaxViewerBuffer: 8 << 20, ViewerHighWater: 4 << 20, ViewerLowWater: 5 << 20, LivenessPeriod: 10 * time.Second, ForwardedHeader: "forwarded"}
	c.setDefaults()
	if c.PingInterval != -1 {
		t.Errorf("PingInterval = %v, want -1 (off) kept", c.PingInterval)
	}
	if c.MaxUpstreamBuffer != 8<<20 {
		t.Errorf("MaxUpstreamBuffer = %d, want MaxViewerBuffer's %d", c.MaxUpstreamBuffer, 8<<20)
	}
	if c.ViewerLowWater != 1<<20 {
		t.Errorf("ViewerLowWater = %d, want a quarter of the high water (%d) for one above it", c.ViewerLowWater, 1<<20)
	}
	if c.LivenessGrace != 30*time.Second {
		t.Errorf("LivenessGrace = %v, want 3 × the 10s period", c.LivenessGrace)
	}
	if c.ForwardedHeader != "forwarded" {
		t.Errorf("ForwardedHeader = %q, want forwarded kept", c.ForwardedHeader)
	}
	c = Config{DialTimeout: -time.Second, MaxFramePayload: -1, SplicePipeSize: -1}
	c.setDefaults()
	d := DefaultConfig()
	if c.DialTimeout != d.DialTimeout || c.MaxFramePayload != d.MaxFramePayload || c.SplicePipeSize != d.SplicePipeSize {
		t.Errorf("negative values not defaulted: %v %d %d", c.DialTimeout, c.MaxFramePayload, c.SplicePipeSize)
	}
}
