package pluginhost_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

// A plugin's answer goes out in a WebSocket text frame, which must be
// UTF-8: one that is not is refused rather than passed on to the client.
func TestCallAnswerThatIsNotUTF8IsRefused(t *testing.T) {
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	call := func(answer string) (json.RawMessage, error) {
		params, _ := json.Marshal(map[string]string{"b64": base64.StdEncoding.EncodeToString([]byte(answer))})
		return m.Call(bg, "tester", "raw", backend, params)
	}
	res, err := call(`{"ok":"é"}`)
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":"é"}`, string(res))

	_, err = call("{\"bad\":\"\xff\"}")
	var re *rpc.Error
	require.ErrorAs(t, err, &re)
	require.Equal(t, rpc.CodeInternal, re.Code)
	require.Contains(t, re.Message, "not UTF-8")
}
