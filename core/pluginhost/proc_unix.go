//go:build unix

package pluginhost

import (
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
