//go:build linux

package pluginhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/internal/heraldtest"
)

// hang stops the plugin's process (SIGSTOP): it keeps its connection but
// answers nothing, as a deadlocked plugin would. The cleanup lets it go on
// if the test ended while it was still the plugin's process.
func hang(t *testing.T, m *pluginhost.Manager, name string) int {
	t.Helper()
	pid := statusOf(m, name).PID
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() {
		if statusOf(m, name).PID == pid {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	require.Eventually(t, func() bool { return heraldtest.AllThreadsStopped(t, pid) }, 10*time.Second, time.Millisecond,
		"every thread of the plugin's process stops")
	return pid
}

func waitState(t *testing.T, m *pluginhost.Manager, name string, want pluginhost.State) pluginhost.Status {
	t.Helper()
	var st pluginhost.Status
	require.Eventually(t, func() bool {
		st = statusOf(m, name)
		return st.State == want
	}, 60*time.Second, 10*time.Millisecond, "plugin %s never became %s: %+v", name, want, st)
	return st
}

// A plugin that hangs (here SIGSTOPped) keeps its process, so no crash is
// ever noticed: the liveness pings find it. Its calls time out as
// unavailable (-32050); after a few unanswered pings it is reported
// unresponsive (not ready, herald_plugin_up 0); after more it is killed and
// restarted as after a crash, and answers again.
func TestHungPluginIsReportedThenRestarted(t *testing.T) {
	checkGoroutines(t)
	reg := prometheus.NewRegistry()
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) { o.CallTimeout = time.Second; o.Registerer = reg })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	require.True(t, m.Ready())
	pid := hang(t, m, "tester")

	_, err := m.Authorize(bg, "tester", pluginhost.Caller{UserID: "alice"}, []string{"tester:ok"})
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.ErrorContains(t, err, `plugin "tester" did not answer authorize within limits.call_timeout (1s)`)

	st := waitState(t, m, "tester", pluginhost.StateUnresponsive)
	require.Equal(t, pid, st.PID, "reported, not yet killed")
	require.Contains(t, st.LastError, "liveness pings")
	require.False(t, m.Ready())
	require.Equal(t, 0.0, metric(t, reg, "herald_plugin_up", "tester"))

	st = waitRunning(t, m, "tester", 1)
	require.NotEqual(t, pid, st.PID, "a new process")
	require.Equal(t, 1, st.Restarts)
	require.Contains(t, st.LastExit, "killed by herald after 6 unanswered liveness pings")
	require.True(t, m.Ready())
	require.Equal(t, 1.0, metric(t, reg, "herald_plugin_up", "tester"))
	require.Equal(t, 1.0, metric(t, reg, "herald_plugin_restarts_total", "tester"))
	_, err = m.Call(bg, "tester", "events", backend, nil)
	require.NoError(t, err)
}

// A plugin that answers its pings again before it is killed (a long pause,
// not a hang) goes back to running, the same process, with no restart.
func TestPluginThatAnswersAgainIsNotRestarted(t *testing.T) {
	checkGoroutines(t)
	reg := prometheus.NewRegistry()
	// A wider window between unresponsive and killed, so that the test's
	// SIGCONT surely comes within it.
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) { o.CallTimeout = 2 * time.Second; o.Registerer = reg })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	pid := hang(t, m, "tester")
	waitState(t, m, "tester", pluginhost.StateUnresponsive)
	require.False(t, m.Ready())
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))

	st := waitState(t, m, "tester", pluginhost.StateRunning)
	require.Equal(t, pid, st.PID, "the same process")
	require.Zero(t, st.Restarts)
	require.Empty(t, st.LastError)
	require.True(t, m.Ready())
	require.Equal(t, 1.0, metric(t, reg, "herald_plugin_up", "tester"))
	require.Equal(t, 0.0, metric(t, reg, "herald_plugin_restarts_total", "tester"))
	_, err := m.Call(bg, "tester", "events", backend, nil)
	require.NoError(t, err)
}

// A plugin that is merely busy (more goroutines on the CPU than the machine
// has cores, for several call timeouts, its own call timing out) still
// answers its pings: it stays running, the same process, never restarted.
func TestBusyPluginStaysRunning(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) { o.CallTimeout = time.Second })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	pid := statusOf(m, "tester").PID
	done := filepath.Join(t.TempDir(), "spun")
	params, err := json.Marshal(map[string]any{"ms": 8000, "workers": 2 * runtime.NumCPU(), "done": done})
	require.NoError(t, err)
	called := make(chan error, 1)
	go func() { // ends when the call times out
		_, err := m.Call(bg, "tester", "spin", backend, params)
		called <- err
	}()
	for {
		st := statusOf(m, "tester")
		require.Equal(t, pluginhost.StateRunning, st.State, "a busy plugin is not unresponsive: %+v", st)
		require.Equal(t, pid, st.PID)
		if _, err := os.Stat(done); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, <-called), "its own call timed out")
	st := statusOf(m, "tester")
	require.Equal(t, pluginhost.StateRunning, st.State)
	require.Zero(t, st.Restarts)
	_, err = m.Call(bg, "tester", "events", backend, nil)
	require.NoError(t, err)
}

// A plugin that does not answer its liveness pings would not drain either:
// a reload that changes or removes it, and the manager's Close (herald's
// shutdown), kill its process group at once instead of waiting for the drain's bound
// (StopTimeout, here far longer than the bounds below).
func TestUnresponsivePluginIsKilledWithoutADrain(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) {
		o.CallTimeout = time.Second
		o.StopTimeout = 2 * time.Minute
	})
	t2 := block(t, "t2", "tester", map[string]string{"TESTER_PREFIX": "t2", "TESTER_ROUTE": "/t2/{id}"})
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil), t2}))
	gone := func(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

	pid := hang(t, m, "tester")
	waitState(t, m, "tester", pluginhost.StateUnresponsive)
	changed := block(t, "tester", "tester", map[string]string{"TESTER_VERSION": "2.0.0"})
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	require.NoError(t, m.Apply(ctx, []config.Plugin{changed, t2}), "a reload changing an unresponsive plugin kills it at once, without waiting for a drain")
	require.True(t, gone(pid), "the old process is gone (reaped)")
	st := statusOf(m, "tester")
	require.Equal(t, pluginhost.StateRunning, st.State)
	require.Equal(t, "2.0.0", st.Version)

	pid = hang(t, m, "tester")
	waitState(t, m, "tester", pluginhost.StateUnresponsive)
	ctx, cancel = context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	require.NoError(t, m.Apply(ctx, []config.Plugin{t2}), "a reload removing an unresponsive plugin kills it at once, without waiting for a drain")
	require.True(t, gone(pid), "the removed plugin's process is gone (reaped)")
	require.Equal(t, pluginhost.StateRunning, statusOf(m, "t2").State, "the other plugin is untouched")

	pid = hang(t, m, "t2")
	waitState(t, m, "t2", pluginhost.StateUnresponsive)
	ctx, cancel = context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	require.NoError(t, m.Close(ctx), "Close kills an unresponsive plugin at once, without waiting for a drain")
	require.True(t, gone(pid), "the plugin's process is gone (reaped)")
}
