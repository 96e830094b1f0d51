package hostcheck_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk/codes"
	"github.com/heraldhq/herald/sdk/hostcheck"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

func TestPluginError(t *testing.T) {
	for _, tc := range []struct {
		code          int
		message, data string
		want          hostcheck.Error
	}{
		{codes.Forbidden, "no", `{"a":1}`, hostcheck.Error{Code: codes.Forbidden, Message: "no", Data: json.RawMessage(`{"a":1}`)}},
		{1000, "nope", "", hostcheck.Error{Code: codes.Internal, Message: `nope (plugin "p"'s error code 1000 is not one of Herald's)`}},
		{1000, "", "", hostcheck.Error{Code: codes.Internal, Message: `plugin "p" failed with error code 1000, which is not one of Herald's`}},
		{codes.ParseError, "x", "", hostcheck.Error{Code: codes.Internal, Message: `x (plugin "p"'s error code -32700 is not one of Herald's)`}},
		{codes.InvalidParams, "", "{", hostcheck.Error{Code: codes.InvalidParams,
			Message: `plugin "p" failed and gave no message (plugin "p"'s error data was not valid JSON and was dropped)`}},
	} {
		require.Equal(t, &tc.want, hostcheck.PluginError("p", tc.code, tc.message, []byte(tc.data)), "%d %q", tc.code, tc.message)
	}
}

func TestRefusals(t *testing.T) {
	rs, e := hostcheck.Refusals("p", []string{"p:a", "p:b"}, []*pluginpb.Refusal{
		{Channel: "p:a", Code: 1000, Reason: "one"}, {Channel: "p:a", Reason: "two"}, {Channel: "p:b", Code: int32(codes.UnknownNamespace)},
	})
	require.Nil(t, e)
	require.Equal(t, []hostcheck.Refusal{{Channel: "p:a", Code: codes.Forbidden, Reason: "one"}, {Channel: "p:b", Code: codes.UnknownNamespace}}, rs)

	_, e = hostcheck.Refusals("p", []string{"p:a"}, []*pluginpb.Refusal{{Channel: "q:z"}})
	require.Equal(t, &hostcheck.Error{Code: codes.Internal,
		Message: `plugin "p" answered a subscription check with a refusal of "q:z", a channel it was not asked about`}, e)
}

func TestClientCalls(t *testing.T) {
	require.NotNil(t, hostcheck.ClientMethod("onNotificationReceived"))
	require.Nil(t, hostcheck.ClientMethod("where"))
	for params, ok := range map[string]bool{"": true, " null ": true, `{"a":1}`: true, `[1]`: true, `5`: false, `{"a":`: false, "[\"\xff\"]": false} {
		_, e := hostcheck.ClientParams("p", "m", []byte(params))
		require.Equal(t, ok, e == nil, params)
	}
}

func TestMethodTimeout(t *testing.T) {
	require.Equal(t, 10*time.Second, hostcheck.MethodTimeout(10*time.Second, 0))
	require.Equal(t, 10*time.Second, hostcheck.MethodTimeout(10*time.Second, 5000))
	require.Equal(t, time.Minute, hostcheck.MethodTimeout(10*time.Second, 60000))
	require.Equal(t, hostcheck.MaxMethodTimeout, hostcheck.MethodTimeout(10*time.Second, 1<<31))
}

func TestRoutes(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("POST /a", http.NotFoundHandler())
	status, allow, e := hostcheck.Unrouted(mux, httptest.NewRequest("GET", "/a", nil))
	require.Equal(t, http.StatusMethodNotAllowed, status)
	require.Equal(t, "POST", allow)
	require.Equal(t, &hostcheck.Error{Code: codes.InvalidRequest, Message: "GET /a: use POST"}, e)
	status, allow, e = hostcheck.Unrouted(mux, httptest.NewRequest("GET", "/b", nil))
	require.Equal(t, http.StatusNotFound, status)
	require.Empty(t, allow)
	require.Equal(t, &hostcheck.Error{Code: codes.MethodNotFound, Message: "no route for GET /b"}, e)

	require.NotNil(t, hostcheck.RouteCaller(pluginpb.RouteAuth_ROUTE_AUTH_TOKEN, true))
	require.Nil(t, hostcheck.RouteCaller(pluginpb.RouteAuth_ROUTE_AUTH_TOKEN, false))
	require.NotNil(t, hostcheck.RouteCaller(pluginpb.RouteAuth_ROUTE_AUTH_API_KEY, false))
	require.Nil(t, hostcheck.RouteCaller(pluginpb.RouteAuth_ROUTE_AUTH_API_KEY, true))
	require.Nil(t, hostcheck.RouteCaller(pluginpb.RouteAuth_ROUTE_AUTH_ANY, false))
	require.False(t, hostcheck.ForwardedHeader("Authorization"))
	require.True(t, hostcheck.ForwardedHeader("Accept"))
}
