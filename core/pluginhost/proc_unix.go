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

// killGroup kills whatever is left of the plugin's process group (a plugin
// may have started children of its own).
func killGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
