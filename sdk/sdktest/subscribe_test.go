package sdktest_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// joiner subscribes its caller with Call.Subscribe or Host.Subscribe, and
// keeps the subscription events it is told of.
type joiner struct {
	mu     sync.Mutex
	events []string
}

var _ sdk.EventHandler = (*joiner)(nil)

func (j *joiner) HandleEvent(_ context.Context, _ sdk.Host, ev sdk.Event) {
	kind := map[sdk.EventKind]string{sdk.Subscribed: "subscribed", sdk.Unsubscribed: "unsubscribed"}[ev.Kind]
	if kind == "" {
		return
	}
	j.mu.Lock()
	j.events = append(j.events, kind+" "+ev.ConnID+" "+ev.UserID+" "+ev.Channel)
	j.mu.Unlock()
}

func (j *joiner) seen() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

func (j *joiner) Manifest() sdk.Manifest {
	return sdk.Manifest{Name: "joiner", Version: "1", Prefixes: []string{"j"}, AllowAllSubscriptions: true,
		Methods: []sdk.Method{
			{Name: "join", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				var p struct{ Since *sdk.Position }
				if err := c.Bind(&p); err != nil {
					return nil, err
				}
				return c.Subscribe(ctx, "j:room", sdk.SubscribeOptions{Since: p.Since})
			}},
			{Name: "sub", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				return "ok", c.Host.Subscribe(ctx, c.Caller.ConnID, "j:lobby")
			}},
			{Name: "unsub", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				return "ok", c.Host.Unsubscribe(ctx, c.Caller.ConnID, "j:lobby")
			}},
			{Name: "emit", Handler: func(ctx context.Context, c *sdk.Call) (any, error) {
				_, err := c.Host.Emit(ctx, sdk.Notification{Channel: "j:room", Event: "e", ObjectType: "t"})
				return "ok", err
			}},
		}}
}

func join(t *testing.T, h *sdktest.Harness, conn string, since *sdk.Position) sdk.Subscription {
	t.Helper()
	var s sdk.Subscription
	res, err := h.Call("join", h.Client(conn), map[string]any{"since": since})
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(res, &s))
	return s
}

// Call.Subscribe answers the channel's position (epoch sdktest.Epoch), and
// with Since whether the history after it is there.
func TestCallSubscribeAnswersThePosition(t *testing.T) {
	h := sdktest.Start(t, &joiner{}, nil)
	for i := 0; i < 3; i++ {
		_, err := h.Call("emit", sdktest.Backend(), nil)
		require.NoError(t, err)
	}
	for _, c := range []string{"c1", "c2", "c3", "c4"} {
		h.Connect(c, "u-"+c)
	}
	require.Equal(t, sdk.Subscription{Channel: "j:room", Position: sdk.Position{Seq: 3, Epoch: sdktest.Epoch}},
		join(t, h, "c1", nil))
	require.Equal(t, sdk.Subscription{Channel: "j:room", Position: sdk.Position{Seq: 3, Epoch: sdktest.Epoch}, Recovered: true},
		join(t, h, "c2", &sdk.Position{Seq: 1, Epoch: sdktest.Epoch}))
	require.Equal(t, sdk.Subscription{Channel: "j:room", Position: sdk.Position{Seq: 3, Epoch: sdktest.Epoch}},
		join(t, h, "c3", &sdk.Position{Seq: 9, Epoch: sdktest.Epoch}), "ahead of the channel")
	require.Equal(t, sdk.Subscription{Channel: "j:room", Position: sdk.Position{Seq: 3, Epoch: sdktest.Epoch}},
		join(t, h, "c4", &sdk.Position{Seq: 1, Epoch: "another"}), "another epoch")
	require.Equal(t, sdk.Subscription{Channel: "j:room", Position: sdk.Position{Seq: 3, Epoch: sdktest.Epoch}},
		join(t, h, "c2", &sdk.Position{Seq: 1, Epoch: sdktest.Epoch}), "already subscribed: the current position")
}

// The subscriptions a plugin makes or ends itself reach its EventHandler
// as Herald sends them, by the time Call returns.
func TestPluginsOwnSubscriptionsReachItsEvents(t *testing.T) {
	j := &joiner{}
	h := sdktest.Start(t, j, nil)
	h.Connect("c1", "alice")
	_, err := h.Call("join", h.Client("c1"), nil)
	require.NoError(t, err)
	_, err = h.Call("sub", h.Client("c1"), nil)
	require.NoError(t, err)
	_, err = h.Call("sub", h.Client("c1"), nil)
	require.NoError(t, err, "already subscribed: no second event")
	_, err = h.Call("unsub", h.Client("c1"), nil)
	require.NoError(t, err)
	_, err = h.Call("unsub", h.Client("c1"), nil)
	require.NoError(t, err, "not subscribed: no event")
	require.Equal(t, []string{
		"subscribed c1 alice j:room",
		"subscribed c1 alice j:lobby",
		"unsubscribed c1 alice j:lobby",
	}, j.seen())
}
