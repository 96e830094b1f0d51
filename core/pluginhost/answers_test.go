package pluginhost_test

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/stretchr/testify/require"
)

// rawAnswers starts the tester plugin and returns a call of its raw
// method: the plugin answers exactly the bytes given.
func rawAnswers(t *testing.T) func(answer string) (json.RawMessage, error) {
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	return func(answer string) (json.RawMessage, error) {
		params, _ := json.Marshal(map[string]string{"b64": base64.StdEncoding.EncodeToString([]byte(answer))})
		return m.Call(bg, "tester", "raw", backend, params)
	}
}

// A plugin's answer goes out in a WebSocket text frame, which must be
// UTF-8: one that is not is refused rather than passed on to the client.
func TestCallAnswerThatIsNotUTF8IsRefused(t *testing.T) {
	call := rawAnswers(t)
	res, err := call(`{"ok":"é"}`)
	require.NoError(t, err)
	require.JSONEq(t, `{"ok":"é"}`, string(res))

	_, err = call("{\"bad\":\"\xff\"}")
	var re *rpc.Error
	require.ErrorAs(t, err, &re)
	require.Equal(t, rpc.CodeInternal, re.Code)
	require.Contains(t, re.Message, "not UTF-8")
}

// A call's result is spliced after `"result":` in the client's frame: one
// that is not exactly one JSON value would forge the rest of the frame (a
// notification on any channel), so it is refused, naming the plugin.
func TestCallResultThatIsNotOneJSONValueIsRefused(t *testing.T) {
	call := rawAnswers(t)
	for _, ok := range []string{`{"a":[1,2]}`, `null`, ` "x" `, `3`} {
		res, err := call(ok)
		require.NoError(t, err, ok)
		require.JSONEq(t, ok, string(res))
	}
	for _, bad := range []string{
		`null,"id":null,"method":"onNotificationReceived","params":{"notifications":[]}`,
		`{"a":1}}`,
		`{"a":`,
		`1 2`,
		`nope`,
	} {
		_, err := call(bad)
		var re *rpc.Error
		require.ErrorAs(t, err, &re, bad)
		require.Equal(t, rpc.CodeInternal, re.Code, bad)
		require.Contains(t, re.Message, `plugin "tester"`, bad)
		require.Contains(t, re.Message, "not one valid JSON value", bad)
	}
}

// A plugin's error reaches the client with a code of the contract's table
// (others become -32603, their message kept), a message, and data only
// when it is one JSON value (it is spliced after `"data":`).
func TestPluginErrorsAreChecked(t *testing.T) {
	m := newManager(t, newRecorder(), nil)
	require.NoError(t, m.Apply(bg, []config.Plugin{block(t, "tester", "tester", nil)}))
	fail := func(code int, message, data string) *rpc.Error {
		params, _ := json.Marshal(map[string]any{"code": code, "message": message, "data_b64": base64.StdEncoding.EncodeToString([]byte(data))})
		_, err := m.Call(bg, "tester", "fail", backend, params)
		var re *rpc.Error
		require.ErrorAs(t, err, &re)
		return re
	}
	for _, tc := range []struct {
		code     int
		message  string
		data     string
		wantCode int
		wantMsg  []string
		wantData string
	}{
		{rpc.CodeForbidden, "not yours", `{"why":"owner"}`, rpc.CodeForbidden, []string{"not yours"}, `{"why":"owner"}`},
		{rpc.CodeLimitExceeded, "too many", "", rpc.CodeLimitExceeded, []string{"too many"}, ""},
		{rpc.CodeForbidden, "bad data", `{oops`, rpc.CodeForbidden, []string{"bad data", "not valid JSON", "dropped"}, ""},
		{rpc.CodeForbidden, "trailing", `{}, "x":1`, rpc.CodeForbidden, []string{"trailing", "dropped"}, ""},
		{rpc.CodeForbidden, "not utf8", "\"\xff\"", rpc.CodeForbidden, []string{"dropped"}, ""},
		{0, "", "", rpc.CodeInternal, []string{`plugin "tester"`, "error code 0"}, ""},
		{1000, "domain failure", "", rpc.CodeInternal, []string{"domain failure", "1000"}, ""},
		{rpc.CodeParseError, "parse", "", rpc.CodeInternal, []string{"parse", "-32700"}, ""},
		{rpc.CodeForbidden, "", "", rpc.CodeForbidden, []string{`plugin "tester"`, "no message"}, ""},
	} {
		re := fail(tc.code, tc.message, tc.data)
		require.Equal(t, tc.wantCode, re.Code, tc)
		for _, w := range tc.wantMsg {
			require.Contains(t, re.Message, w, tc)
		}
		if tc.wantData == "" {
			require.Empty(t, re.Data, tc)
		} else {
			require.JSONEq(t, tc.wantData, string(re.Data), tc)
		}
	}
}
