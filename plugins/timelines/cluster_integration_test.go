package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/natstest"
	"github.com/stretchr/testify/require"
)

// Two herald nodes on one NATS server (JetStream in process), each running
// its own timelines process: the grants are the JetStream bucket they
// share.

func startClusterNodes(t *testing.T, url string, n int) []*stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts NATS, herald nodes and the timelines plugin")
	}
	nodes := make([]*stack, n)
	for i := range nodes {
		h := heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "timelines", NATS: url,
			Auth: fmt.Sprintf("token_secret = %q\n  api_keys = [%q]\n", heraldtest.Secret, heraldtest.APIKey)})
		nodes[i] = &stack{Stack: h, t: t}
	}
	return nodes
}

// dropLog is what a timelines process logs when its watch of the grants
// dropped subscriptions after a revoke made through another node.
const dropLog = "dropped subscriptions after a revoke"

// A grant made through node A opens the channel on node B; a revoke through
// A drops, on B, the subscriptions that stood on it, and only those; and
// the other way round.
func TestIntegrationClusterRevokeDropsOnEveryNode(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startClusterNodes(t, ns.URL(), 2)
	a, b := nodes[0], nodes[1]
	view := map[string]any{"network": "n1", "user": "u2", "message": "m5", "permission": "view_readers"}
	admin := map[string]any{"network": "n1", "user": "u2", "group": "g5", "role": "admin"}
	a.mustBackend("grant", view)
	a.mustBackend("grant", admin)

	bob := token(t, "gu2", time.Hour, map[string]net{"n1": {User: "u2"}})
	carol := token(t, "gu3", time.Hour, map[string]net{"n1": {User: "u3", Permissions: []string{"view_readers"}}})
	bobOnB := b.subscribeSpeakap(bob, "message_readers:m5:n1", "network_timeline:n1")
	carolOnB := b.subscribeSpeakap(carol, "message_readers:m5:n1")
	bobOnA := a.subscribeSpeakap(bob, "group_admin_memberships:g5:n1", "network_timeline:n1")

	var rv struct {
		Revoked      bool
		Unsubscribed int
	}
	require.NoError(t, json.Unmarshal(a.mustBackend("revoke", view), &rv))
	require.True(t, rv.Revoked)
	require.Equal(t, 0, rv.Unsubscribed, "a's own connections: none held it")
	b.WaitLog(t, dropLog, heraldtest.Timeout)
	// Bob no longer holds it on b; carol, by her token, does.
	res := bobOnB.MustCall(t, "unsubscribe", map[string]any{"channel": "message_readers:m5:n1"})
	require.JSONEq(t, `{"unsubscribed":[]}`, string(res))
	a.emit("message_readers:m5:n1", validPayloads["message_readers"][0])
	a.emit("network_timeline:n1", validPayloads["network_timeline"][0])
	require.Equal(t, "message_readers:m5:n1", one(t, carolOnB).Channel)
	requireUnsubscribed(t, bobOnB, "message_readers:m5:n1")
	require.Equal(t, "network_timeline:n1", one(t, bobOnB).Channel, "bob's next notification is the timeline's")
	// And a new subscribe on b is refused.
	e := b.Dial(t, "").CallErr(t, "subscribe", map[string]any{"channel": "message_readers:m5:n1", "accessToken": bob})
	require.Equal(t, -32003, e.Code)

	// The other way round: revoked through b, dropped on a.
	b.mustBackend("revoke", admin)
	a.WaitLog(t, dropLog, heraldtest.Timeout)
	require.Equal(t, "network_timeline:n1", one(t, bobOnA).Channel, "the timeline emitted before")
	requireUnsubscribed(t, bobOnA, "group_admin_memberships:g5:n1")
	b.emit("group_admin_memberships:g5:n1", validPayloads["group_admin_memberships"][0])
	b.emit("network_timeline:n1", validPayloads["network_timeline"][0])
	require.Equal(t, "network_timeline:n1", one(t, bobOnA).Channel, "nothing of g5 any more")
	res = bobOnA.MustCall(t, "unsubscribe", map[string]any{"channel": "group_admin_memberships:g5:n1"})
	require.JSONEq(t, `{"unsubscribed":[]}`, string(res))
}
