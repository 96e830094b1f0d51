//go:build !unix

package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
)

func ownProcessGroup(*exec.Cmd) {}

var signalGroup = func(int) {}

// waitExited cannot wait without reaping here: the runner reaps at once and
// kills only the process itself.
func waitExited(int) bool { return false }

func describeExit(ps *os.ProcessState) string {
	if ps == nil {
		return ""
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}
