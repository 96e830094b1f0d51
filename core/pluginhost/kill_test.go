//go:build linux

package pluginhost_test

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/stretchr/testify/require"
)

// A plugin's process group is killed before its process is reaped, never
// after (a reaped leader's group id may already be someone else's), on a
// crash as on a stop; and what the plugin started dies with it.
func TestProcessGroupKilledBeforeReap(t *testing.T) {
	checkGoroutines(t)
	var (
		mu    sync.Mutex
		kills []string // "<pgid> <state of the leader at that moment>"
	)
	restore := pluginhost.SetSignalGroup(func(pgid int) {
		state := "reaped"
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pgid)); err == nil {
			state = "alive"
			var pid int
			var comm, st string
			if _, err := fmt.Sscanf(string(b), "%d %s %s", &pid, &comm, &st); err == nil && st == "Z" {
				state = "zombie"
			}
		}
		mu.Lock()
		kills = append(kills, fmt.Sprintf("%d %s", pgid, state))
		mu.Unlock()
	})
	t.Cleanup(restore) // after the manager's cleanup: registered first
	core := newRecorder()
	m := newManager(t, core, nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))

	spawn := func() int {
		res, err := m.Call(bg, "tester", "spawn", backend, nil)
		require.NoError(t, err)
		var pid int
		require.NoError(t, json.Unmarshal(res, &pid))
		return pid
	}
	gone := func(pid int) bool {
		// The child is ours to watch, not to reap: it is gone or a zombie
		// (its parent, the plugin, died before reaping it).
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		var p int
		var comm, st string
		_, _ = fmt.Sscanf(string(b), "%d %s %s", &p, &comm, &st)
		return st == "Z"
	}

	// A crash: the leader is SIGKILLed from outside.
	child := spawn()
	leader := statusOf(m, "tester").PID
	require.NoError(t, syscall.Kill(leader, syscall.SIGKILL))
	require.Eventually(t, func() bool { return gone(child) }, 20*time.Second, 10*time.Millisecond, "the plugin's child dies with it")
	waitRunning(t, m, "tester", 1)

	// A stop.
	child = spawn()
	leader2 := statusOf(m, "tester").PID
	require.NoError(t, m.Apply(bg, nil))
	require.Eventually(t, func() bool { return gone(child) }, 20*time.Second, 10*time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, kills)
	for _, k := range kills {
		var pgid int
		var state string
		_, _ = fmt.Sscanf(k, "%d %s", &pgid, &state)
		require.Contains(t, []int{leader, leader2}, pgid)
		require.NotEqual(t, "reaped", state, "group %d killed after its leader was reaped: %v", pgid, kills)
	}
}
