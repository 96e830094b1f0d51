package heraldtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// AllThreadsStopped reports whether every thread of process pid is stopped
// (state T in /proc). SIGSTOP reaches each thread on its own, so a test
// that stops a plugin waits for this before it counts on the plugin not
// answering.
func AllThreadsStopped(t testing.TB, pid int) bool {
	t.Helper()
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		t.Fatalf("threads of process %d: %v (%d found)", pid, err, len(stats))
	}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces, the state follows its ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}
