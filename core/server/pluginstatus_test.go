package server

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

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
