package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// The page's other controls in headless Chromium: unsubscribe stops the
// notifications of that channel, a plugin method's result and error are
// shown, and a page whose origin herald refuses says what to set, while
// herald's log names the refused origin.
func TestDemoPageControlsAndOriginHint(t *testing.T) {
	browser := chromium(t)
	sdkDir := filepath.Join(heraldtest.RepoRoot(), "sdk", "js", "src")
	allowed := &demo{APIKey: heraldtest.APIKey, Secret: heraldtest.Secret, SDKDir: sdkDir, OriginAllowed: true}
	page := httptest.NewServer(allowed.handler())
	t.Cleanup(page.Close)
	refused := &demo{APIKey: heraldtest.APIKey, Secret: heraldtest.Secret, SDKDir: sdkDir}
	other := httptest.NewServer(refused.handler())
	t.Cleanup(other.Close)
	refused.Origin = other.URL

	addr := heraldtest.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "config.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`server {
  listen          = %q
  allowed_origins = [%q]
}
auth {
  token_secret = %q
  api_keys     = [%q]
}
plugin "echo" {
  command = %q
}
`, addr, page.URL, heraldtest.Secret, heraldtest.APIKey, heraldtest.Binary(t, "examples/echo-plugin"))), 0o600))
	h := heraldtest.StartWithConfig(t, cfg, nil)
	for _, d := range []*demo{allowed, refused} {
		d.WSURL, d.HTTPURL = "ws://"+addr+"/ws", "http://"+addr
	}

	ctx := browserContext(t, browser)
	until := func(what, expr string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
		require.NoError(t, err, "waiting for %s", what)
	}
	count := func(ch string) string {
		return fmt.Sprintf(`document.querySelectorAll('#feed li.notification[data-channel=%q]').length`, ch)
	}

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(page.URL+"/")))
	until("the herald URL", `document.getElementById('url').value !== ''`)
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('origin-warning').hidden`))
	require.NoError(t, err)
	require.True(t, hidden, "an allowed origin shows no warning")
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("connect-btn"))))
	until("connected", `document.getElementById('state').dataset.state === 'connected'`)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("channels"), "news echo:alice"),
		chromedp.Click(chromedp.ID("subscribe-btn"))))
	until("the subscriptions", `!!document.querySelector('#subscriptions li[data-channel="echo:alice"]')`)

	// A plugin method: its result, then an error with its code.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("call-method"), "echo.say"),
		chromedp.SetValue(chromedp.ID("call-params"), `{"text":"hi"}`),
		chromedp.Click(chromedp.ID("call-btn"))))
	until("the call's result", `document.getElementById('call-result').dataset.outcome === 'result'`)
	until("the emitted notification", count("echo:alice")+` === 1`)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("call-method"), "nosuch.method"),
		chromedp.Click(chromedp.ID("call-btn"))))
	until("the call's error", `document.getElementById('call-result').dataset.outcome === 'error' && document.getElementById('call-result').textContent.includes('-32004')`)

	// Unsubscribe from news: later news no longer arrives, echo still does.
	h.Publish(t, heraldtest.N("news", "new", "message", `{"n":1}`))
	until("news before unsubscribing", count("news")+` === 1`)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(`#subscriptions li[data-channel="news"] button.unsubscribe`)))
	until("the subscription gone", `!document.querySelector('#subscriptions li[data-channel="news"]')`)
	h.Publish(t, heraldtest.N("news", "new", "message", `{"n":2}`))
	require.NoError(t, chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("call-method"), "echo.say"), chromedp.Click(chromedp.ID("call-btn"))))
	until("a later echo", count("echo:alice")+` === 2`)
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](count("news")))
	require.NoError(t, err)
	require.Equal(t, 1, n, "news published after unsubscribing reached the page")

	// A page on an origin herald refuses: it says which key to set, and so
	// does herald's log.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(other.URL+"/")))
	until("the origin warning", `!document.getElementById('origin-warning').hidden && document.getElementById('origin-warning').textContent.includes('server.allowed_origins')`)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("connect-btn"))))
	until("the connect hint", `document.getElementById('state').textContent.includes('allowed_origins')`)
	h.WaitLog(t, "refused a WebSocket from an origin that is not allowed", 10*time.Second)
	require.Contains(t, h.Logs(), other.URL)
}
