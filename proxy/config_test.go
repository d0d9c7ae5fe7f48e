package proxy

import (
	"runtime"
	"testing"
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
