package pluginhost_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// A plugin whose Configure fails because its State cannot be reached yet
// (a node started before NATS answers) does not fail the boot: it is
// restarting, its prefixes claimed and its calls answering -32050, until a
// start works.
func TestBootWaitsForAPluginWhoseStateIsNotThereYet(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), nil)
	ready := filepath.Join(t.TempDir(), "state-up")
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", map[string]string{"TESTER_STATE_UNTIL": ready})}),
		"a passing condition is no boot failure")
	require.False(t, m.Ready())
	owner, ok := m.Owner("tester:a")
	require.True(t, ok, "its prefixes stay claimed meanwhile")
	require.Equal(t, "tester", owner)
	_, err := m.Call(bg, "tester", "events", backend, nil)
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.Equal(t, pluginhost.StateRestarting, statusOf(m, "tester").State)

	require.NoError(t, os.WriteFile(ready, nil, 0o600))
	require.Eventually(t, m.Ready, 60*time.Second, 20*time.Millisecond, "it starts once its State answers")
	_, err = m.Call(bg, "tester", "events", backend, nil)
	require.NoError(t, err)
}

// A call the plugin does not answer within limits.call_timeout is
// unavailable (-32050: retry later), not internal, and says that it may or
// may not have taken effect.
func TestCallTimeoutIsUnavailable(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) { o.CallTimeout = time.Second })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	_, err := m.Call(bg, "tester", "block", backend, json.RawMessage(`{}`))
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.ErrorContains(t, err, `plugin "tester" did not answer block within limits.call_timeout (1s)`)
	require.ErrorContains(t, err, "may or may not have taken effect")
}
