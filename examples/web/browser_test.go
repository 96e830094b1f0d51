package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestMain(m *testing.M) { heraldtest.Main(m) }

// chromium finds Debian's chromium (or another Chrome), or skips; under
// CI=true a missing browser fails the test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium: the browser test needs Debian's chromium package (.ci/run installs it)")
	}
	t.Skip("no chromium installed (apt-get install chromium): skipping the browser test")
	return ""
}

// The demo page in headless Chromium against the real herald: it sees
// notifications, sees exactly what it missed once its connection comes
// back (resume), and says recovered:false after a server restart.
func TestDemoPageInABrowser(t *testing.T) {
	browser := chromium(t)

	// The page's own server, through which it also publishes.
	d := &demo{APIKey: heraldtest.APIKey, Secret: heraldtest.Secret, SDKDir: filepath.Join(heraldtest.RepoRoot(), "sdk", "js", "src")}
	page := httptest.NewServer(d.handler())
	t.Cleanup(page.Close)

	// Herald on a fixed address so that it can restart in place; the page
	// reaches it through a proxy the test cuts.
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
`, addr, page.URL, heraldtest.Secret, heraldtest.APIKey)), 0o600))
	h := heraldtest.StartWithConfig(t, cfg, nil)
	proxy := heraldtest.StartProxy(t, addr)
	d.WSURL, d.HTTPURL = proxy.WSURL(), "http://"+addr

	ctx := browserContext(t, browser)

	shot := func(name string) {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		dir := os.Getenv("HERALD_SCREENSHOT_DIR") // to keep it after the test
		if dir == "" {
			dir = t.TempDir()
		}
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, png, 0o644))
		t.Logf("screenshot: %s", p)
	}
	defer func() {
		if t.Failed() {
			shot("failure.png")
		}
	}()
	// until polls a JavaScript condition in the page.
	until := func(what, expr string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second), chromedp.WithPollingInterval(20*time.Millisecond)))
		require.NoError(t, err, "waiting for %s", what)
	}
	newsSeqs := func() []int {
		seqs, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
			`[...document.querySelectorAll('#feed li.notification[data-channel="news"]')].map(li => +li.dataset.seq).sort((a, b) => a - b)`))
		require.NoError(t, err)
		return seqs
	}
	count := func(n int) string {
		return fmt.Sprintf(`document.querySelectorAll('#feed li.notification[data-channel="news"]').length === %d`, n)
	}
	state := func(s string) string { return fmt.Sprintf(`document.getElementById('state').dataset.state === %q`, s) }

	// Load, connect with a dev token, subscribe.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(page.URL+"/")))
	until("the herald URL", `document.getElementById('url').value !== ''`)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("connect-btn"))))
	until("connected", state("connected"))
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("channels"), "news"),
		chromedp.Click(chromedp.ID("subscribe-btn"))))
	until("the subscription", `!!document.querySelector('#subscriptions li[data-channel="news"]')`)

	// A publish through the HTTP API, then one from the page's form.
	h.Publish(t, heraldtest.N("news", "new", "message", `{"text":"from the API"}`))
	until("the first notification", count(1))
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.ID("publish-btn"))))
	until("the form's notification", count(2))

	// Cut the page off, publish while it is away: once back it shows
	// exactly those, once each.
	proxy.SetDown(true)
	require.Equal(t, 1, proxy.Cut())
	until("reconnecting", state("reconnecting"))
	for i := 0; i < 3; i++ {
		h.Publish(t, heraldtest.N("news", "new", "message", fmt.Sprintf(`{"text":"while away %d"}`, i)))
	}
	proxy.SetDown(false)
	until("the missed notifications", count(5))
	until("connected again", state("connected"))
	time.Sleep(200 * time.Millisecond) // a duplicate would show by now
	require.Equal(t, []int{1, 2, 3, 4, 5}, newsSeqs())
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('unrecovered').hidden`))
	require.NoError(t, err)
	require.True(t, hidden, "a resume that worked is not reported as unrecovered")

	// A restart loses the memory broker's history: the page says so.
	h.Stop(t)
	h = heraldtest.StartWithConfig(t, cfg, nil)
	until("the recovered:false notice", `(document.getElementById('unrecovered').dataset.channels || '').split(' ').includes('news')`)
	until("connected after the restart", state("connected"))
	h.Publish(t, heraldtest.N("news", "new", "message", `{"text":"after the restart"}`))
	until("the new epoch's first notification", count(6))
	require.Equal(t, []int{1, 1, 2, 3, 4, 5}, newsSeqs())
	shot("demo-page.png")
}

// browserContext starts headless Chromium for one test; the test's cleanup
// stops it.
func browserContext(t *testing.T, browser string) context.Context {
	opts := append([]chromedp.ExecAllocatorOption{},
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1200, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 120*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}
