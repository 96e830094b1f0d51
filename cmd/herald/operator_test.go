package main_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

const adminToken = "admin-token-for-tests-0123"

// scrape reads a Prometheus text exposition into series ("name" or
// `name{label="v",...}`, as printed) and their values.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return out
}

func httpGet(t *testing.T, url, bearer string) (int, []byte) {
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
	return resp.StatusCode, b
}

// startOperatorHerald starts herald with the echo plugin, an operator
// listener and an admin token; it returns herald and the operator
// listener's base URL.
func startOperatorHerald(t *testing.T, origins ...string) (*heraldtest.Herald, string) {
	t.Helper()
	addr, admin := heraldtest.FreeAddr(t), heraldtest.FreeAddr(t)
	allowed, _ := json.Marshal(append([]string{"http://localhost:8080"}, origins...))
	cfg := fmt.Sprintf(`server {
  listen          = %q
  allowed_origins = %s
  admin_listen    = %q
  admin_token     = %q
}
auth {
  token_secret = %q
  api_keys     = [%q]
}
%s`, addr, allowed, admin, adminToken, heraldtest.Secret, heraldtest.APIKey, pluginBlock("echo", "examples/echo-plugin", "")(t))
	path := t.TempDir() + "/config.hcl"
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	h := heraldtest.StartWithConfig(t, path, nil)
	h.WaitLog(t, "admin listener", heraldtest.Timeout)
	waitPlugin(t, h, "echo", func(p pluginStatus) bool { return p.State == "running" })
	return h, "http://" + admin
}

// The operator's metrics on the real binary: a publish through the API, a
// plugin's emit and a plugin call are measured, and the new series exist
// from the start.
func TestOperatorMetrics(t *testing.T) {
	h, admin := startOperatorHerald(t)
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.Subscribe(t, "echo:alice")
	// A notification that reaches a subscription still joining the channel
	// is handed over as missed and not measured (its age says how long the
	// join took): publish a few, one at a time, so that most are live.
	for i := 0; i < 3; i++ {
		h.Publish(t, heraldtest.N("echo:alice", "e", "t", `{}`))
		alice.Notifications(t, 1)
	}
	alice.MustCall(t, "echo.say", map[string]any{"text": "hi"}) // a plugin call that emits
	alice.Notifications(t, 1)

	var m map[string]float64
	require.Eventually(t, func() bool {
		m = scrape(t, admin+"/metrics")
		return m["herald_delivery_latency_seconds_count"] >= 2
	}, heraldtest.Timeout, 20*time.Millisecond, "live deliveries are measured")
	require.Equal(t, 3.0, m[`herald_publish_latency_seconds_count{source="http"}`])
	require.Equal(t, 1.0, m[`herald_publish_latency_seconds_count{source="plugin"}`])
	require.GreaterOrEqual(t, m[`herald_plugin_call_duration_seconds_count{plugin="echo"}`], 2.0, "the subscribe check and echo.say")
	require.Equal(t, 0.0, m[`herald_plugin_restarts_total{plugin="echo"}`])
	for _, series := range []string{"herald_outbox_bytes", `herald_slow_consumer_closes_total{reason="outbox_limit"}`,
		`herald_slow_consumer_closes_total{reason="outbox_bytes"}`, `herald_slow_consumer_closes_total{reason="write_timeout"}`,
		`herald_plugin_restarts_total{plugin="echo"}`} {
		_, ok := m[series]
		require.True(t, ok, "no series %s", series)
	}
}

// With server.admin_listen, the real binary opens the operator listener:
// /metrics and the admin API there only, health and readiness on both.
func TestAdminListener(t *testing.T) {
	h, admin := startOperatorHerald(t)
	for _, base := range []string{h.URL, admin} {
		for _, p := range []string{"/healthz", "/readyz"} {
			status, body := httpGet(t, base+p, "")
			require.Equal(t, http.StatusOK, status, "%s%s: %s", base, p, body)
		}
	}
	status, _ := httpGet(t, h.URL+"/metrics", "")
	require.Equal(t, http.StatusNotFound, status, "metrics left the public listener")
	status, _ = httpGet(t, h.URL+"/admin/api/plugins", adminToken)
	require.Equal(t, http.StatusNotFound, status, "the admin page left the public listener")
	status, _ = httpGet(t, admin+"/metrics", "")
	require.Equal(t, http.StatusOK, status)
	status, _ = httpGet(t, admin+"/admin/api/plugins", "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body := httpGet(t, admin+"/admin/api/plugins", adminToken)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, string(body), `"name":"echo"`)

	// A warning herald logs (a refused origin) is among the recent errors.
	_, _, err := heraldtest.DialURL(h.WSURL, http.Header{"Origin": {"http://elsewhere.example"}})
	require.Error(t, err)
	require.Eventually(t, func() bool {
		_, body = httpGet(t, admin+"/admin/api/errors", adminToken)
		return strings.Contains(string(body), "elsewhere.example")
	}, heraldtest.Timeout, 20*time.Millisecond, "the refused origin's warning is not among the recent errors: %s", body)
}

// chromiumPath finds Debian's chromium (or another Chrome), or skips; under
// CI=true a missing browser fails the test (as examples/web's tests do).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium: the admin page test needs Debian's chromium package")
	}
	t.Skip("no chromium installed (apt-get install chromium): skipping the admin page test")
	return ""
}

// The admin page in headless Chromium against the real herald: it shows a
// connection a test client opened, the channel it holds, the plugin, and
// a notification published from its form reaches the subscribed client.
func TestAdminPageInABrowser(t *testing.T) {
	browser := chromiumPath(t)
	h, admin := startOperatorHerald(t)
	alice := h.Dial(t, h.Token(t, "alice"))
	alice.Subscribe(t, "echo:alice")

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 1000), chromedp.UserDataDir(t.TempDir()))
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	until := func(what, expr string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
		require.NoError(t, err, "waiting for %s", what)
	}

	// The login a browser would prompt for: any user, the token as password.
	login := "Basic " + base64.StdEncoding.EncodeToString([]byte("operator:"+adminToken))
	_, err := chromedp.Call(ctx, network.Enable, network.EnableParams{})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": login}})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(admin+"/admin/")))
	until("the page's first refresh", `document.body.dataset.loaded === 'true'`)
	until("the test client's connection", `!!document.querySelector('#connections tr[data-user="alice"]') && document.getElementById('conn-count').textContent === '1'`)
	until("the channel and its count", `document.getElementById('channel-count').textContent === '1' && document.querySelector('#channels tr[data-channel="echo:alice"]')?.dataset.subscribers === '1'`)
	until("the plugin", `document.querySelector('#plugins tr[data-plugin="echo"]')?.dataset.state === 'running'`)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("pub-channel"), "echo:alice"),
		chromedp.SetValue(chromedp.ID("pub-object"), `{"text":"from the admin page"}`),
		chromedp.Click(chromedp.ID("publish-btn"))))
	until("the publish's result", `document.getElementById('publish-result').dataset.state === 'ok'`)
	n := alice.Notifications(t, 1)[0]
	require.Equal(t, "echo:alice", n.Channel)
	require.JSONEq(t, `{"text":"from the admin page"}`, string(n.Object))

	// A publish the server refuses says why on the page.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("pub-channel"), "nobody:owns"),
		chromedp.Click(chromedp.ID("publish-btn"))))
	until("the refusal", `document.getElementById('publish-result').dataset.state === 'error' && document.getElementById('publish-result').textContent.includes('nobody')`)

	// A warning herald logs (a refused origin) shows among the recent ones.
	_, _, err = heraldtest.DialURL(h.WSURL, http.Header{"Origin": {"http://elsewhere.example"}})
	require.Error(t, err)
	until("the refused origin's warning", `[...document.querySelectorAll('#errors li')].some(li => li.textContent.includes('elsewhere.example'))`)

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	dir := os.Getenv("HERALD_SCREENSHOT_DIR") // to keep it after the test
	if dir == "" {
		dir = t.TempDir()
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "admin-page.png"), png, 0o644))
}

// With log.format = "json", durations read as in the text form: herald's
// own ("next_attempt_in":"400ms") and a plugin's, re-logged by herald.
func TestJSONLogDurationsAreText(t *testing.T) {
	body := preamble + "log {\n  format = \"json\"\n}\n" + pluginBlock("tester", "internal/testplugins/tester",
		fmt.Sprintf("  env = { TESTER_CONFIGURE_DELAY = \"10ms\", TESTER_STATE_UNTIL = %q }", filepath.Join(t.TempDir(), "never")))(t)
	cmd := exec.Command(heraldtest.Binary(t, "cmd/herald"), "serve", "-config", writeConfig(t, body))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// The reader ends when herald's stderr closes (the cleanup kills it)
	// or, before that, when the test is done with it.
	lines, done := make(chan map[string]any), make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			select {
			case lines <- m:
			case <-done:
				return
			}
		}
	}()
	var plugin, own map[string]any
	timeout := time.After(heraldtest.Timeout)
	for plugin == nil || own == nil {
		select {
		case m, ok := <-lines:
			require.True(t, ok, "herald exited")
			switch m["@message"] {
			case "configure delayed":
				plugin = m
			case "restart failed":
				own = m
			}
		case <-timeout:
			t.Fatalf("no plugin line with a duration (%v) or no restart line (%v)", plugin, own)
		}
	}
	require.Equal(t, "10ms", plugin["delay"], "%v", plugin)
	require.IsType(t, "", own["next_attempt_in"], "%v", own)
	_, err = time.ParseDuration(own["next_attempt_in"].(string))
	require.NoError(t, err, "%v", own)
}
