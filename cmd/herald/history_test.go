package main_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// metric returns the value of one series of herald's /metrics.
func metric(t *testing.T, h *heraldtest.Herald, series string) float64 {
	t.Helper()
	status, body := h.Do(t, http.MethodGet, "/metrics", nil, "", nil)
	require.Equal(t, 200, status)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	t.Fatalf("no series %s in /metrics:\n%s", series, body)
	return 0
}

// A channel whose every notification expired (history.ttl) resumes exactly
// once it is published to again: no duplicate, no gap, recovered: true.
func TestResumeAfterAQuietSpell(t *testing.T) {
	// The resumes below come well within ttl of the publishes they expect.
	const ttl = 2 * time.Second
	h := heraldtest.Start(t, heraldtest.Options{HCL: fmt.Sprintf("history {\n  size = 10\n  ttl = %q\n}", ttl)})
	token := h.Token(t, "alice")
	c := h.Dial(t, token)
	sub := c.Subscribe(t, "quiet")[0]
	h.Publish(t, heraldtest.N("quiet", "e", "t", `{"i":1}`), heraldtest.N("quiet", "e", "t", `{"i":2}`))
	got := c.Notifications(t, 2)
	last := got[1].Seq
	c.Close()

	// The quiet spell: both expire. A resume in it finds nothing missed
	// (and makes the server expire them).
	time.Sleep(2 * ttl)
	since := map[string]any{"quiet": map[string]any{"seq": last, "epoch": sub.Epoch}}
	r := h.Dial(t, token)
	s := r.SubscribeParams(t, map[string]any{"channel": "quiet", "since": since})[0]
	require.True(t, *s.Recovered)
	r.NoNotification(t, 100*time.Millisecond)
	r.Close()

	// Publishing resumes; a client that was away catches up exactly.
	for i := 3; i <= 5; i++ {
		h.Publish(t, heraldtest.N("quiet", "e", "t", fmt.Sprintf(`{"i":%d}`, i)))
	}
	back := h.Dial(t, token)
	s = back.SubscribeParams(t, map[string]any{"channel": "quiet", "since": since})[0]
	require.NotNil(t, s.Recovered)
	require.True(t, *s.Recovered)
	require.Equal(t, sub.Epoch, s.Epoch)
	var seqs []uint64
	for _, n := range back.Notifications(t, 3) {
		seqs = append(seqs, n.Seq)
	}
	require.Equal(t, []uint64{last + 1, last + 2, last + 3}, seqs)
	back.NoNotification(t, 100*time.Millisecond)
}

// history.max_bytes bounds history memory: over it, the least recently
// published channels lose theirs (a resume is told recovered: false), and
// /metrics shows the bound, the bytes and what was dropped.
func TestHistoryMaxBytes(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: "history {\n  max_bytes = 65536\n}"})
	require.Equal(t, float64(65536), metric(t, h, "herald_history_max_bytes"))
	require.Zero(t, metric(t, h, "herald_history_evicted_channels_total"))

	first := h.Publish(t, heraldtest.N("big0", "e", "t", fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 2000))))[0]
	c := h.Dial(t, h.Token(t, "alice"))
	epoch := c.Subscribe(t, "big0")[0].Epoch
	c.Close()
	for i := 1; i < 100; i++ {
		h.Publish(t, heraldtest.N(fmt.Sprintf("big%d", i), "e", "t", fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 2000))))
	}
	require.Positive(t, metric(t, h, "herald_history_evicted_channels_total"))
	require.Positive(t, metric(t, h, "herald_history_evicted_bytes_total"))
	require.LessOrEqual(t, metric(t, h, "herald_history_bytes"), float64(65536))
	require.Positive(t, metric(t, h, "herald_history_bytes"))

	// The oldest channel lost its history: its epoch changed. Nobody was
	// subscribed, so it was forgotten whole (its own state counts against
	// max_bytes too): it starts again from seq 0.
	r := h.Dial(t, h.Token(t, "alice"))
	s := r.SubscribeParams(t, map[string]any{"channel": "big0",
		"since": map[string]any{"big0": map[string]any{"seq": first.Seq - 1, "epoch": epoch}}})[0]
	require.False(t, *s.Recovered)
	require.NotEqual(t, epoch, s.Epoch)
	require.Zero(t, s.Seq)
	require.Less(t, metric(t, h, "herald_history_channels"), float64(100), "evicted channels are forgotten")
}

// Subscribing to and dropping channel names that never see a publication
// leaves nothing behind in the broker.
func TestSubscribeChurnKeepsNoState(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "mallory"))
	h.Publish(t, heraldtest.N("real", "e", "t", `{}`))
	require.Equal(t, float64(1), metric(t, h, "herald_history_channels"))
	for round := 0; round < 5; round++ {
		var names []string
		for i := 0; i < 200; i++ {
			names = append(names, fmt.Sprintf("churn%d_%d", round, i))
		}
		c.Subscribe(t, names...)
		c.MustCall(t, "unsubscribe", map[string]any{"channels": names})
	}
	require.Equal(t, float64(1), metric(t, h, "herald_history_channels"), "only the channel that had a publication")
}

// Two backends with their own API keys may use the same Idempotency-Key:
// each gets its own publish. A key over 255 bytes is refused.
func TestIdempotencyKeyScopedByAPIKey(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n  api_keys = [%q, \"other-backend-key\"]", heraldtest.Secret, heraldtest.APIKey)})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "news")
	hdr := http.Header{"Idempotency-Key": {"order-42"}}
	body := heraldtest.N("news", "e", "t", `{}`)

	s1, r1 := h.Do(t, http.MethodPost, "/v1/publish", body, heraldtest.APIKey, hdr)
	s2, r2 := h.Do(t, http.MethodPost, "/v1/publish", body, "other-backend-key", hdr)
	s3, r3 := h.Do(t, http.MethodPost, "/v1/publish", body, heraldtest.APIKey, hdr)
	require.Equal(t, []int{200, 200, 200}, []int{s1, s2, s3})
	require.NotEqual(t, string(r1), string(r2), "the other backend's publish is its own")
	require.JSONEq(t, string(r1), string(r3), "a retry with the same API key gets the first answer")
	require.Len(t, c.Notifications(t, 2), 2)
	c.NoNotification(t, 200*time.Millisecond)

	status, reply := h.Do(t, http.MethodPost, "/v1/publish", body, heraldtest.APIKey,
		http.Header{"Idempotency-Key": {strings.Repeat("k", 256)}})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(reply), "Idempotency-Key")
	c.NoNotification(t, 200*time.Millisecond)
}

var rpcCallSeries = regexp.MustCompile(`(?m)^herald_rpc_calls_total\{method="([^"]*)"\}`)

// Method names a client or backend invents never become /metrics series,
// not even while the plugin they name is down.
func TestMetricsLabelsAreBounded(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: pluginBlock("tester", "internal/testplugins/tester", "")(t)})
	waitPlugin(t, h, "tester", func(p pluginStatus) bool { return p.State == "running" })
	c := h.Dial(t, h.Token(t, "alice"))
	c.MustCall(t, "tester.events", map[string]any{})
	for i := 0; i < 20; i++ {
		c.CallErr(t, fmt.Sprintf("invented%d", i), nil)
		c.CallErr(t, fmt.Sprintf("ghost%d.m", i), nil)
	}

	// While the plugin is down, every call is -32050, invented or not.
	down := 0
	for i := 0; down < 20 && i < 100000; i++ {
		if i%200 == 0 {
			if p := plugins(t, h)["tester"]; p.State == "running" {
				require.NoError(t, syscall.Kill(p.PID, syscall.SIGKILL))
			}
		}
		status, _ := h.Do(t, http.MethodPost, fmt.Sprintf("/v1/plugins/tester/invented%d", i), map[string]any{}, heraldtest.APIKey, nil)
		if status == http.StatusServiceUnavailable {
			down++
		}
	}
	require.Equal(t, 20, down, "calls answered while the plugin was down")

	status, body := h.Do(t, http.MethodGet, "/metrics", nil, "", nil)
	require.Equal(t, 200, status)
	var labels []string
	for _, m := range rpcCallSeries.FindAllStringSubmatch(string(body), -1) {
		labels = append(labels, m[1])
	}
	require.ElementsMatch(t, []string{"tester.events", "other"}, labels)
}
