package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/stretchr/testify/require"
)

// These tests run the real herald binary with the real documents binary
// and talk to them with WebSocket clients and HTTP, as users do.

func TestMain(m *testing.M) { heraldtest.Main(m) }

type stack struct {
	*heraldtest.Stack
	t   *testing.T
	dir string
}

// startStack serves the documents plugin with Herald's State in dir.
func startStack(t *testing.T, dir, window string) *stack {
	t.Helper()
	h := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "documents", StateDir: dir,
		Config: fmt.Sprintf("    resume_window = %q", window)})
	return &stack{Stack: h, t: t, dir: dir}
}

// backend POSTs a documents method with the API key.
func (s *stack) backend(method string, body any) (int, json.RawMessage) {
	s.t.Helper()
	return s.Backend(s.t, method, body)
}

func (s *stack) dial(user string) *heraldtest.Client {
	s.t.Helper()
	return s.Dial(s.t, heraldtest.MintToken(s.t, user, time.Hour, nil))
}

// kill9 kills the plugin with SIGKILL and waits for herald to restart it.
func (s *stack) kill9() { s.t.Helper(); s.Kill9(s.t) }

// call calls documents.<method> and decodes the result into a map.
func call(t *testing.T, c *heraldtest.Client, method string, params any) map[string]any {
	t.Helper()
	var out map[string]any
	require.NoError(t, json.Unmarshal(c.MustCall(t, "documents."+method, params), &out))
	return out
}

// sub subscribes with params and returns the room and its channel.
func sub(t *testing.T, c *heraldtest.Client, params map[string]any) (roomID, channel string) {
	t.Helper()
	res := call(t, c, "subscribe", params)
	roomID, _ = res["roomId"].(string)
	channel, _ = res["channel"].(string)
	require.NotEmpty(t, roomID, "%v", res)
	require.True(t, strings.HasPrefix(channel, "documents:"+roomID+"-"), "%v", res)
	return roomID, channel
}

// obj decodes a notification's object.
func obj(t *testing.T, n heraldtest.Notification) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(n.Object, &m), "%s", n.Object)
	return m
}

// next waits for one notification and decodes its object.
func next(t *testing.T, c *heraldtest.Client) (heraldtest.Notification, map[string]any) {
	t.Helper()
	n := c.Notifications(t, 1)[0]
	return n, obj(t, n)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

var docKeys = []string{"status", "index", "collection", "controller", "action", "protocol", "timestamp", "volatile", "scope", "state", "result", "room", "type"}
var userKeys = []string{"status", "error", "index", "collection", "controller", "action", "protocol", "timestamp", "volatile", "user", "result", "room", "type"}
