// Package rlimit lifts the open-file limit of herald's processes: every
// connection is a file descriptor, on both sides of a load test.
package rlimit

import (
	"fmt"
	"syscall"
)

// RaiseOpenFiles lifts the soft RLIMIT_NOFILE to the hard limit and returns
// the limit in force. (Go already does this at start on Linux; calling it
// makes the limit explicit and reportable, whatever the runtime does.)
func RaiseOpenFiles() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return l.Cur, nil
}
