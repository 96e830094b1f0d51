package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/pluginhost"
)

const testAdminToken = "admin-token-0123456789"

func get(t *testing.T, url, bearer string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// adminServer is a server with the admin page on (testAdminToken), served
// by an httptest server until the test ends.
func adminServer(t *testing.T) (*config.Config, *Server, *httptest.Server) {
	t.Helper()
	cfg := testConfig()
	cfg.Server.AdminToken = testAdminToken
	srv, err := New(Options{Config: cfg})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return cfg, srv, hs
}

var adminPaths = []string{"/admin/", "/admin/static/admin.js", "/admin/api/overview", "/admin/api/connections",
	"/admin/api/channels", "/admin/api/plugins", "/admin/api/errors"}

// Without the admin token, the page, its files and its API answer 401
// (asking the browser for a login); with a wrong one too; with the right
// one, as a bearer token or a basic-auth password, 200.
func TestAdminPageNeedsItsToken(t *testing.T) {
	_, _, hs := adminServer(t)

	for _, p := range adminPaths {
		status, _ := get(t, hs.URL+p, "")
		require.Equal(t, http.StatusUnauthorized, status, p)
		status, body := get(t, hs.URL+p, "wrong-token-0123456789")
		require.Equal(t, http.StatusUnauthorized, status, p)
		require.Contains(t, body, "wrong admin token", p)
		status, body = get(t, hs.URL+p, testAdminToken)
		require.Equal(t, http.StatusOK, status, "%s: %s", p, body)
	}
	resp, err := http.Post(hs.URL+"/admin/api/publish", "application/json", strings.NewReader(`{"channel":"news","event":"e","object_type":"t","object":null}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")

	req, err := http.NewRequest(http.MethodGet, hs.URL+"/admin/api/plugins", nil)
	require.NoError(t, err)
	req.SetBasicAuth("anyone", testAdminToken)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// The lists are JSON arrays, empty ones included ([] rather than null).
func TestAdminListsAreArraysWhenEmpty(t *testing.T) {
	_, _, hs := adminServer(t)
	for path, key := range map[string]string{"/admin/api/connections": "connections", "/admin/api/channels": "channels"} {
		status, body := get(t, hs.URL+path, testAdminToken)
		require.Equal(t, http.StatusOK, status)
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(body), &m))
		require.Equal(t, "[]", string(m[key]), "%s: %s", path, body)
	}
}

// Without server.admin_token the page is off: 404 saying how to turn it on,
// never an open page.
func TestAdminPageIsOffWithoutAToken(t *testing.T) {
	srv, err := New(Options{Config: testConfig()})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	for _, p := range adminPaths {
		status, body := get(t, hs.URL+p, "")
		require.Equal(t, http.StatusNotFound, status, p)
		require.Contains(t, body, "server.admin_token", p)
	}
	status, _ := get(t, hs.URL+"/metrics", "")
	require.Equal(t, http.StatusOK, status, "metrics stay on server.listen without admin_listen")
}

// With server.admin_listen, /metrics and the admin page leave the public
// mux for the operator one; health and readiness are on both.
func TestAdminListenMovesOperatorEndpoints(t *testing.T) {
	cfg := testConfig()
	cfg.Server.AdminToken = testAdminToken
	public, admin := bothListeners(t, cfg)

	for _, p := range []string{"/healthz", "/readyz"} {
		for _, base := range []string{public.URL, admin.URL} {
			status, _ := get(t, base+p, "")
			require.Equal(t, http.StatusOK, status, base+p)
		}
	}
	status, body := get(t, public.URL+"/metrics", "")
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, "server.admin_listen", "the 404 says where it went")
	status, body = get(t, public.URL+"/admin/api/plugins", testAdminToken)
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, body, "server.admin_listen")
	status, body = get(t, admin.URL+"/metrics", "")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "herald_delivery_latency_seconds")
	status, _ = get(t, admin.URL+"/admin/api/plugins", testAdminToken)
	require.Equal(t, http.StatusOK, status)
	status, _ = get(t, admin.URL+"/v1/plugins", "test-key")
	require.Equal(t, http.StatusNotFound, status, "the public API is not on the operator listener")
}

// plugins reports one plugin restarting and one running.
type notReadyPlugins struct{ noPlugins }

func (notReadyPlugins) Ready() bool { return false }
func (notReadyPlugins) Status() []pluginhost.Status {
	return []pluginhost.Status{
		{Name: "chat", State: pluginhost.StateRestarting, LastError: "exit status 2"},
		{Name: "kb", State: pluginhost.StateRunning},
	}
}

// /readyz names each thing that is not ready, and the admin page's
// overview says the same.
func TestReadyzNamesWhatIsNotReady(t *testing.T) {
	cfg := testConfig()
	cfg.Server.AdminToken = testAdminToken
	srv, err := New(Options{Config: cfg})
	require.NoError(t, err)
	srv.SetPlugins(notReadyPlugins{})
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	var got struct {
		Status   string
		NotReady []string `json:"not_ready"`
	}
	status, body := get(t, hs.URL+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, "plugins not ready", got.Status)
	require.Equal(t, []string{"plugin chat: restarting (exit status 2)"}, got.NotReady)

	var overview struct {
		Ready    bool
		NotReady []string `json:"not_ready"`
	}
	status, body = get(t, hs.URL+"/admin/api/overview", testAdminToken)
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal([]byte(body), &overview))
	require.False(t, overview.Ready, body)
	require.Equal(t, got.NotReady, overview.NotReady)

	srv.draining.Store(true)
	status, body = get(t, hs.URL+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, "draining", got.Status)
	require.Equal(t, []string{"draining", "plugin chat: restarting (exit status 2)"}, got.NotReady)
}

// The recent errors are a bounded ring of the logger's warnings and
// errors, newest first.
func TestRecentErrorsAreBounded(t *testing.T) {
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Info})
	cfg := testConfig()
	srv, err := New(Options{Config: cfg, Logger: log})
	require.NoError(t, err)
	log.Info("not kept")
	for i := range recentErrors + 5 {
		log.Named("plugin").Error("boom", "n", i)
	}
	got := srv.admin.errors.list()
	require.Len(t, got, recentErrors)
	require.Equal(t, "boom n=104", got[0].Message)
	require.Equal(t, "boom n=5", got[len(got)-1].Message)
	require.Equal(t, "plugin", got[0].Logger)
	require.Equal(t, "error", got[0].Level)
}

// SIGHUP applies a new admin token at once: the old one stops working,
// and a config without one turns the page off.
func TestReloadChangesTheAdminToken(t *testing.T) {
	cfg, srv, hs := adminServer(t)

	next := *cfg
	next.Server.AdminToken = "the-next-admin-token-42"
	applied, restart := srv.Reload(&next)
	require.Contains(t, applied, "server.admin_token")
	require.Empty(t, restart)
	status, _ := get(t, hs.URL+"/admin/api/plugins", testAdminToken)
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = get(t, hs.URL+"/admin/api/plugins", "the-next-admin-token-42")
	require.Equal(t, http.StatusOK, status)

	off := *cfg
	off.Server.AdminToken = ""
	srv.Reload(&off)
	status, _ = get(t, hs.URL+"/admin/api/plugins", "the-next-admin-token-42")
	require.Equal(t, http.StatusNotFound, status)
}

// Another method on a path herald serves is a 405 with Allow, on both
// listeners, rather than a 404 from the plugin routes behind them.
func TestWrongMethodIs405(t *testing.T) {
	public, admin := bothListeners(t, testConfig())
	for _, c := range []struct{ base, method, path, allow string }{
		{public.URL, "POST", "/healthz", "GET"}, {public.URL, "POST", "/readyz", "GET"},
		{public.URL, "POST", "/ws", "GET"}, {public.URL, "POST", "/v1/plugins", "GET"},
		{public.URL, "GET", "/v1/plugins/chat/members", "POST"}, {public.URL, "GET", "/v1/publish", "POST"},
		{admin.URL, "POST", "/metrics", "GET"}, {admin.URL, "DELETE", "/healthz", "GET"},
	} {
		req, err := http.NewRequest(c.method, c.base+c.path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, "%s %s", c.method, c.path)
		require.Equal(t, c.allow, resp.Header.Get("Allow"), "%s %s", c.method, c.path)
	}
}

// bothListeners serves cfg with server.admin_listen set: the public mux and
// the operator one, each on a test server.
func bothListeners(t *testing.T, cfg *config.Config) (public, admin *httptest.Server) {
	t.Helper()
	cfg.Server.AdminListen = "127.0.0.1:0"
	srv, err := New(Options{Config: cfg})
	require.NoError(t, err)
	public = httptest.NewServer(srv.Handler())
	t.Cleanup(public.Close)
	admin = httptest.NewServer(srv.AdminHandler())
	t.Cleanup(admin.Close)
	return public, admin
}
