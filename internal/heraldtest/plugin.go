package heraldtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// PluginPID is the pid of herald's child process running the binary bin
// (a plugin), or 0 when there is none (Linux: it reads /proc).
func (h *Herald) PluginPID(bin string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != bin {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(h.Pid()) {
			return pid
		}
	}
	return 0
}
