package pluginhost_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// Calls to a plugin reported unresponsive are refused with -32050 at once,
// not after waiting out limits.call_timeout each (a client's re-subscribe
// would time out on its side first and drop the connection); once the
// plugin answers its pings again, calls reach it.
func TestUnresponsivePluginRefusesCallsAtOnce(t *testing.T) {
	checkGoroutines(t)
	m := newManager(t, newRecorder(), func(o *pluginhost.Options) { o.CallTimeout = 2 * time.Second })
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	pid := hang(t, m, "tester")
	waitState(t, m, "tester", pluginhost.StateUnresponsive)

	_, err := m.Authorize(bg, "tester", pluginhost.Caller{UserID: "alice"}, []string{"tester:ok"})
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.ErrorContains(t, err, `plugin "tester" is unavailable (unresponsive: it has not answered its liveness pings): retry later`)
	_, err = m.Call(bg, "tester", "events", backend, nil)
	require.Equal(t, rpc.CodePluginUnavailable, rpcCode(t, err))
	require.ErrorContains(t, err, "unresponsive")

	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))
	waitState(t, m, "tester", pluginhost.StateRunning)
	_, err = m.Call(bg, "tester", "events", backend, nil)
	require.NoError(t, err)
}
