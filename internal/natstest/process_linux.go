package natstest

import "syscall"

// dieWithParent has the kernel kill a server process when the test process
// that started it dies (a panic, a timeout), so that no server outlives
// its test holding ports and a store. The signal follows the thread that
// started the process, which the Go runtime ends only when a goroutine
// locked to it returns without unlocking; no test that runs a cluster
// locks one.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
