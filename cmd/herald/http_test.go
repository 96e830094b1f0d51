package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

func TestPublishAPI(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "news")

	t.Run("api key", func(t *testing.T) {
		status, body := h.Do(t, http.MethodPost, "/v1/publish", heraldtest.N("news", "e", "t", `{}`), "", nil)
		require.Equal(t, 401, status)
		require.Contains(t, string(body), "API key")
		status, _ = h.Do(t, http.MethodPost, "/v1/publish", heraldtest.N("news", "e", "t", `{}`), "wrong", nil)
		require.Equal(t, 401, status)
		c.NoNotification(t, 100*time.Millisecond)
	})

	t.Run("single", func(t *testing.T) {
		status, body := h.PublishRaw(t, heraldtest.N("news", "new", "message", `{"a":1}`), nil)
		require.Equal(t, 200, status)
		var res struct{ Results []heraldtest.PublishResult }
		require.NoError(t, json.Unmarshal(body, &res))
		require.Len(t, res.Results, 1)
		require.Equal(t, "news", res.Results[0].Channel)
		require.Equal(t, uint64(1), res.Results[0].Seq)
		require.NotEmpty(t, res.Results[0].ID)
		require.Equal(t, res.Results[0].ID, c.Notifications(t, 1)[0].ID)
	})

	t.Run("bad bodies name the field and publish nothing", func(t *testing.T) {
		cases := map[string]string{
			`not json`: "body",
			`{"notifications":[{"channel":"news","event":"e","object_type":"t","object":{}},{"channel":"news","object_type":"t","object":{}}]}`: "notifications[1].event",
			`{"channel":"news","event":"e","object":{}}`:                               "object_type",
			`{"channel":"news","event":"e","object_type":"t"}`:                         "object",
			`{"channel":"bad name","event":"e","object_type":"t","object":1}`:          "channel",
			`{"channel":"news","event":5,"object_type":"t","object":1}`:                "event",
			`{"channel":"news","event":"e","object_type":"t","object":1,"extra":true}`: "extra",
			`{"notifications":[]}`: "notifications",
			`{"channel":"$server","event":"e","object_type":"t","object":1}`: "channel",
		}
		for body, field := range cases {
			status, reply := h.PublishRaw(t, []byte(body), nil)
			require.Equal(t, 400, status, body)
			var e struct {
				Error struct {
					Code    int
					Message string
				}
			}
			require.NoError(t, json.Unmarshal(reply, &e))
			require.True(t, strings.HasPrefix(e.Error.Message, field), "%s: %q should name %q", body, e.Error.Message, field)
		}
		c.NoNotification(t, 100*time.Millisecond)
	})

	t.Run("idempotency key", func(t *testing.T) {
		hdr := http.Header{"Idempotency-Key": {"retry-1"}}
		body := map[string]any{"notifications": []map[string]any{heraldtest.N("news", "e", "t", `{"once":true}`)}}
		s1, r1 := h.PublishRaw(t, body, hdr)
		s2, r2 := h.PublishRaw(t, body, hdr)
		require.Equal(t, 200, s1)
		require.Equal(t, 200, s2)
		require.JSONEq(t, string(r1), string(r2))
		require.Len(t, c.Notifications(t, 1), 1)
		c.NoNotification(t, 200*time.Millisecond)
	})
}

func TestPublishBodyLimit(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `limits { max_publish_bytes = 2048 }`})
	big := heraldtest.N("news", "e", "t", fmt.Sprintf(`{"pad":%q}`, strings.Repeat("z", 4096)))
	status, body := h.PublishRaw(t, big, nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
	require.Contains(t, string(body), "limits.max_publish_bytes")
	status, _ = h.PublishRaw(t, heraldtest.N("news", "e", "t", `{}`), nil)
	require.Equal(t, 200, status)
}

func TestHealthReadyMetrics(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "m")
	h.Publish(t, heraldtest.N("m", "e", "t", `{}`))
	c.Notifications(t, 1)
	c.CallErr(t, "nope", nil)

	status, _ := h.Do(t, http.MethodGet, "/healthz", nil, "", nil)
	require.Equal(t, 200, status)
	status, _ = h.Do(t, http.MethodGet, "/readyz", nil, "", nil)
	require.Equal(t, 200, status)
	status, body := h.Do(t, http.MethodGet, "/metrics", nil, "", nil)
	require.Equal(t, 200, status)
	for _, want := range []string{
		"herald_connections 1",
		"herald_subscriptions 1",
		"herald_notifications_published_total 1",
		"herald_notifications_delivered_total 1",
		"herald_batch_size_count",
		"herald_outbox_dropped_total 0",
		`herald_rpc_calls_total{method="subscribe"} 1`,
		`herald_rpc_errors_total{code="-32601",method="other"} 1`,
	} {
		require.Contains(t, string(body), want)
	}
}

func TestSIGTERMDrainsWith1001(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "x")
	h.Signal(t, syscall.SIGTERM)
	n := c.Notifications(t, 1)[0]
	require.Equal(t, "$server", n.Channel)
	require.Equal(t, "shutdown", n.Event)
	require.Equal(t, 1001, c.WaitClosed(t))
	require.NoError(t, h.Wait(t, 20*time.Second))
}

func TestSIGHUPDoesNotDropClients(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "x")
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "reload", 10*time.Second)
	h.Publish(t, heraldtest.N("x", "e", "t", `{}`))
	require.Len(t, c.Notifications(t, 1), 1)
}

func TestConfigChannelSignalsBusyAndNormal(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `overload {
  busy_connections = 3
}`})
	watcher := h.Dial(t, h.Token(t, "ops"))
	watcher.Subscribe(t, "config")
	extra := []*heraldtest.Client{h.Dial(t, h.Token(t, "a")), h.Dial(t, h.Token(t, "b"))}
	n := watcher.Notifications(t, 1)[0]
	require.Equal(t, "config", n.Channel)
	require.Equal(t, "servers_busy", n.Event)
	require.Equal(t, "config", n.ObjectType)
	require.JSONEq(t, `{"type":"servers_busy"}`, string(n.Object))
	for _, c := range extra {
		c.Close()
	}
	n = watcher.Notifications(t, 1)[0]
	require.Equal(t, "servers_normal", n.Event)
	require.JSONEq(t, `{"type":"servers_normal"}`, string(n.Object))
}

// A publish no client could ever receive is refused, naming why, and
// publishes nothing of its request; another method on the path is a 405.
func TestPublishRefusesChannelsNobodyCanReceive(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "news")

	cases := map[string]string{
		`{"channel":"foo:bar","event":"e","object_type":"t","object":{}}`:                                                                                  `no plugin owns the namespace \"foo\"`,
		`{"notifications":[{"channel":"news","event":"e","object_type":"t","object":{}},{"channel":"foo:bar","event":"e","object_type":"t","object":{}}]}`: "notifications[1].channel",
		`{"channel":"config","event":"servers_busy","object_type":"config","object":{"type":"servers_busy"}}`:                                              "herald's own channel",
	}
	for body, want := range cases {
		status, reply := h.PublishRaw(t, []byte(body), nil)
		require.Equal(t, 400, status, body)
		require.Contains(t, string(reply), want, body)
	}
	c.NoNotification(t, 100*time.Millisecond)

	status, reply := h.Do(t, http.MethodGet, "/v1/publish", nil, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusMethodNotAllowed, status, string(reply))

	closed := heraldtest.Start(t, heraldtest.Options{Auth: fmt.Sprintf("token_secret = %q\n  api_keys = [%q]\n  open_channels = false", heraldtest.Secret, heraldtest.APIKey)})
	status, reply = closed.PublishRaw(t, heraldtest.N("news", "e", "t", `{}`), nil)
	require.Equal(t, 400, status)
	require.Contains(t, string(reply), "open_channels = false")
}
