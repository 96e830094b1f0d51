//go:build unix

package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the plugin in a process group of its own, so that a
// SIGHUP or SIGINT sent to Herald's group (the terminal's) never reaches it:
// Herald reloads on SIGHUP and must not take its plugins down with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup SIGKILLs the process group pgid: the plugin and whatever it
// started. The runner calls it only while the group's leader is not reaped,
// so the group id is still the plugin's (a zombie leader keeps it
// reserved); a variable so that tests can watch when it is called.
var signalGroup = func(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// describeExit says how a reaped process ended, naming the signal that
// killed it: an operator's kill -9 and the kernel's OOM killer both read
// "killed by signal SIGKILL".
func describeExit(ps *os.ProcessState) string {
	if ps == nil {
		return ""
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "killed by signal " + signalName(ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

var signalNames = map[syscall.Signal]string{
	syscall.SIGKILL: "SIGKILL", syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT",
	syscall.SIGQUIT: "SIGQUIT", syscall.SIGHUP: "SIGHUP", syscall.SIGABRT: "SIGABRT",
	syscall.SIGSEGV: "SIGSEGV", syscall.SIGBUS: "SIGBUS", syscall.SIGILL: "SIGILL",
	syscall.SIGFPE: "SIGFPE", syscall.SIGPIPE: "SIGPIPE", syscall.SIGUSR1: "SIGUSR1",
	syscall.SIGUSR2: "SIGUSR2",
}

func signalName(sig syscall.Signal) string {
	if n, ok := signalNames[sig]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}
