//go:build !linux

package natstest

import "syscall"

// dieWithParent: only Linux can tie a child's life to its parent's; a
// server outlives a test process that dies without its cleanup.
func dieWithParent() *syscall.SysProcAttr { return nil }
