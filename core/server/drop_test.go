package server

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// A subscription that herald ends on its own (here on a plugin's behalf:
// Server.Unsubscribe is what the plugin host calls) is told to the client
// with a $server unsubscribed, after what was queued for the channel
// before, and nothing of the channel follows it. The batching delay holds
// what follows the first notification, so the drop most likely finds the
// others queued.
func TestDropIsToldAfterWhatWasQueuedForTheChannel(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Delivery.MaxDelay = 300 * time.Millisecond
	p := startPubTest(t, cfg, nil)
	ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	send(t, ws, `{"jsonrpc":"2.0","id":1,"method":"hello","params":{"methods":["onNotificationReceived"]}}`)
	var hello struct {
		Result struct {
			SessionID string `json:"session_id"`
		}
	}
	require.NoError(t, json.Unmarshal(read(t, ws), &hello))
	send(t, ws, `{"jsonrpc":"2.0","id":2,"method":"subscribe","params":{"channels":["a","b"]}}`)
	require.Contains(t, string(read(t, ws)), `"subscriptions"`)

	for i := range 3 {
		publishTo(t, p, "a", i)
	}
	require.NoError(t, p.srv.Unsubscribe(context.Background(), "tester", hello.Result.SessionID, "a", true))
	// Not subscribed any more: nothing to tell.
	require.NoError(t, p.srv.Unsubscribe(context.Background(), "tester", hello.Result.SessionID, "a", true))
	publishTo(t, p, "a", 3)
	publishTo(t, p, "b", 4)

	var got []string
	var object json.RawMessage
	for len(got) < 5 {
		var m struct {
			Params struct {
				Notifications []struct {
					Channel, Event string
					Seq            uint64
					Object         json.RawMessage
				}
			}
		}
		require.NoError(t, json.Unmarshal(read(t, ws), &m))
		for _, n := range m.Params.Notifications {
			if n.Channel == ServerChannel {
				object = n.Object
			}
			got = append(got, fmt.Sprintf("%s:%s:%d", n.Channel, n.Event, n.Seq))
		}
	}
	require.Equal(t, []string{"a:e:1", "a:e:2", "a:e:3", "$server:unsubscribed:1", "b:e:1"}, got)
	require.JSONEq(t, `{"channels":[{"channel":"a","reason":"ended by plugin tester"}]}`, string(object))
}
