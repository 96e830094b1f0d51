//go:build linux

package pluginhost

import (
	"syscall"
	"unsafe"
)

// waitExited blocks until process pid has exited, without reaping it
// (waitid with WNOWAIT): the zombie keeps its process group id reserved
// until it is reaped, so the runner can kill the group in between and never
// hit a group id the system gave to someone else. It reports false when it
// could not wait (the runner then reaps without a group kill).
func waitExited(pid int) bool {
	const pPID = 1     // idtype_t P_PID
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch errno {
		case 0:
			return true
		case syscall.EINTR:
			continue
		default:
			return false
		}
	}
}
