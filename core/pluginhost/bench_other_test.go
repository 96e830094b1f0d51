//go:build !unix

package pluginhost_test

import (
	"testing"
	"time"
)

// hostCPU is not measured here: the CPU figures read 0.
func hostCPU(*testing.B) time.Duration { return 0 }
