//go:build unix

package pluginhost_test

import (
	"syscall"
	"testing"
	"time"
)

// hostCPU is this process's CPU time so far (user + system).
func hostCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
