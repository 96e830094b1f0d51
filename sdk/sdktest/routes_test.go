package sdktest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// router has a route of each Auth mode; each answers who called it and
// whether it saw an Authorization header.
type router struct{}

func (router) Manifest() sdk.Manifest {
	who := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := sdk.CallerFrom(r.Context())
		fmt.Fprintf(w, "user=%s backend=%t authorization=%q", c.UserID, c.Backend, r.Header.Get("Authorization"))
	})
	return sdk.Manifest{Name: "router", Version: "1", Prefixes: []string{"router"}, AllowAllSubscriptions: true,
		Routes: []sdk.Route{
			{Method: http.MethodGet, Pattern: "/r/any", Auth: sdk.AuthAny, Handler: who},
			{Method: http.MethodGet, Pattern: "/r/token", Auth: sdk.AuthToken, Handler: who},
			{Method: http.MethodGet, Pattern: "/r/key", Auth: sdk.AuthAPIKey, Handler: who},
			{Method: http.MethodGet, Pattern: "/r/open", Auth: sdk.AuthNone, Handler: who},
			{Method: http.MethodPost, Pattern: "/r/post", Auth: sdk.AuthAny, Handler: who},
			{Method: http.MethodPut, Pattern: "/r/post", Auth: sdk.AuthAny, Handler: who},
		}}
}

type answer struct {
	status      int
	allow, body string
}

func get(t *testing.T, hd http.Handler, method, path string) answer {
	t.Helper()
	srv := httptest.NewServer(hd)
	defer srv.Close()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer secret")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{resp.StatusCode, resp.Header.Get("Allow"), string(b)}
}

// A route's Auth is applied to the caller as Herald applies it: a 403
// with Herald's JSON error for the wrong kind of caller, no caller for a
// public route, and credentials never reach the plugin.
func TestRouteAuthIsApplied(t *testing.T) {
	h := sdktest.Start(t, router{}, nil)
	user, backend := h.Handler(sdk.Caller{UserID: "alice"}), h.Handler(sdktest.Backend())

	require.Equal(t, answer{403, "", `{"error":{"code":-32003,"message":"this route needs a user token, not an API key"}}` + "\n"},
		get(t, backend, "GET", "/r/token"))
	require.Equal(t, answer{403, "", `{"error":{"code":-32003,"message":"this route needs an API key"}}` + "\n"},
		get(t, user, "GET", "/r/key"))

	require.Equal(t, answer{200, "", `user=alice backend=false authorization=""`}, get(t, user, "GET", "/r/token"))
	require.Equal(t, answer{200, "", `user= backend=true authorization=""`}, get(t, backend, "GET", "/r/key"))
	require.Equal(t, answer{200, "", `user=alice backend=false authorization=""`}, get(t, user, "GET", "/r/any"))
	require.Equal(t, answer{200, "", `user= backend=true authorization=""`}, get(t, backend, "GET", "/r/any"))
	require.Equal(t, answer{200, "", `user= backend=false authorization=""`}, get(t, user, "GET", "/r/open"), "a public route has no caller")
}

// A request no route serves gets Herald's JSON 404, or its 405 with Allow
// when a route serves the path with other methods.
func TestUnroutedRequestsAnswerAsHerald(t *testing.T) {
	h := sdktest.Start(t, router{}, nil)
	hd := h.Handler(sdktest.Backend())
	require.Equal(t, answer{404, "", `{"error":{"code":-32601,"message":"no route for GET /nowhere"}}` + "\n"},
		get(t, hd, "GET", "/nowhere"))
	require.Equal(t, answer{405, "POST, PUT", `{"error":{"code":-32600,"message":"GET /r/post: use POST, PUT"}}` + "\n"},
		get(t, hd, "GET", "/r/post"))
}
