//go:build unix

package main

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process used so far (user and system, all
// threads): on a shared machine it says more than wall-clock time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
