package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// A plugin's invalid-params error may name a more precise 4xx in its data
// (documents: 404, 409); the statuses that have codes of their own, other
// classes and other codes keep the code's status.
func TestPluginErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		code   int
		data   string
		status int
	}{
		{rpc.CodeInvalidParams, ``, 400},
		{rpc.CodeInvalidParams, `{"status":404,"_id":"x"}`, 404},
		{rpc.CodeInvalidParams, `{"status":409}`, 409},
		{rpc.CodeInvalidParams, `{"status":400}`, 400},
		{rpc.CodeInvalidParams, `{"status":401}`, 400},
		{rpc.CodeInvalidParams, `{"status":403}`, 400},
		{rpc.CodeInvalidParams, `{"status":429}`, 400},
		{rpc.CodeInvalidParams, `{"status":500}`, 400},
		{rpc.CodeInvalidParams, `{"status":"404"}`, 400},
		{rpc.CodeInvalidParams, `[404]`, 400},
		{rpc.CodeForbidden, `{"status":404}`, 403},
		{rpc.CodeInternal, `{"status":404}`, 500},
		{rpc.CodePluginUnavailable, ``, 503},
		{rpc.CodeLimitExceeded, ``, http.StatusTooManyRequests},
	} {
		re := &rpc.Error{Code: tc.code, Message: "m", Data: json.RawMessage(tc.data)}
		require.Equal(t, tc.status, pluginErrorStatus(re), "%d %s", tc.code, tc.data)
	}
}

// paramsPlugins answers every call with the params it was given.
type paramsPlugins struct{ noPlugins }

func (paramsPlugins) Call(_ context.Context, _, _ string, _ pluginhost.Caller, params json.RawMessage) (json.RawMessage, error) {
	return append(json.RawMessage(nil), params...), nil
}

// A backend call's body that is empty, blank or null reaches the plugin as
// {}, as a WebSocket call's absent or null params do.
func TestPluginCallBodyWithoutParamsIsAnEmptyObject(t *testing.T) {
	srv := boundedServer(t, func(*config.Config) {})
	srv.SetPlugins(paramsPlugins{})
	addr := serveBounded(t, srv)
	for _, body := range []string{"", "  \n", "null", " null\n", `{"a":1}`} {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/plugins/p/m", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer test-key")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%q: %s", body, got)
		want := "{}"
		if strings.HasPrefix(body, "{") {
			want = body
		}
		require.Equal(t, want, string(got), "body %q", body)
	}
}
