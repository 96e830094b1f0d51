package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
)

// The order docs/protocol.md ("Order") promises across channels, pinned
// on one node: publishes one after another arrive in that order at every
// connection, and a resume of several channels replays them channel by
// channel in the order of the request, not merged by acceptance.

// publishTo publishes one notification through POST /v1/publish and
// returns once it is answered.
func publishTo(t *testing.T, p *pubTest, channel string, i int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.ts.URL+"/v1/publish",
		strings.NewReader(fmt.Sprintf(`{"channel":%q,"event":"e","object_type":"t","object":%d}`, channel, i)))
	req.Header.Set("Authorization", "Bearer test-key")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
}

// readNotifications reads frames until n notifications came and returns
// them as "channel:seq", in the order received. Other frames are skipped.
func readNotifications(t *testing.T, ws *websocket.Conn, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		var m struct {
			Method string
			Params struct {
				Notifications []struct {
					Channel string
					Seq     uint64
				}
			}
		}
		frame := read(t, ws)
		require.NoError(t, json.Unmarshal(frame, &m), string(frame))
		if m.Method != "onNotificationReceived" {
			continue
		}
		for _, x := range m.Params.Notifications {
			got = append(got, fmt.Sprintf("%s:%d", x.Channel, x.Seq))
		}
	}
	return got
}

func TestOrderOfPublishesOneAfterAnother(t *testing.T) {
	t.Parallel()
	p := startPubTest(t, testConfig(), nil)
	s1 := p.subscriber(t, "a", "b")
	s2 := p.subscriber(t, "b", "a")
	var want []string
	for i := range 20 {
		ch := []string{"a", "b"}[i%2]
		publishTo(t, p, ch, i)
		want = append(want, fmt.Sprintf("%s:%d", ch, i/2+1))
	}
	require.Equal(t, want, readNotifications(t, s1, len(want)))
	require.Equal(t, want, readNotifications(t, s2, len(want)))
}

func TestResumeOfSeveralChannelsReplaysChannelByChannel(t *testing.T) {
	t.Parallel()
	p := startPubTest(t, testConfig(), nil)
	since := map[string]broker.Position{}
	for _, ch := range []string{"a", "b"} {
		pos, err := p.srv.broker.Position(context.Background(), ch)
		require.NoError(t, err)
		since[ch] = pos
	}
	// Accepted alternately: a1 b1 a2 b2 a3 b3.
	for i := range 6 {
		publishTo(t, p, []string{"a", "b"}[i%2], i)
	}
	ws, _, err := websocket.DefaultDialer.Dial(p.wsURL("/ws"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	send(t, ws, fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channels":["b","a"],"since":%s}}`, mustJSON(since)))
	reply := string(read(t, ws))
	require.Contains(t, reply, `"recovered":true`)
	require.NotContains(t, reply, `"recovered":false`)
	require.Equal(t, []string{"b:1", "b:2", "b:3", "a:1", "a:2", "a:3"}, readNotifications(t, ws, 6),
		"channel by channel, in the order of the request")
}
