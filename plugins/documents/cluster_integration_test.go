package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/natstest"
	"github.com/stretchr/testify/require"
)

// startCluster starts n herald nodes on one NATS server, each with its own
// documents process; their State is one JetStream bucket.
func startCluster(t *testing.T, n int, ttl string) []*stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts NATS, herald nodes and their documents plugins")
	}
	ns := natstest.Start(t)
	var nodes []*stack
	for _, h := range heraldtest.StartPluginNodes(t, n, heraldtest.PluginOptions{Name: "documents", NATS: ns.URL(),
		Config: fmt.Sprintf("    resume_window = \"30s\"\n    liveness_ttl = %q", ttl)}) {
		nodes = append(nodes, &stack{Stack: h, t: t})
	}
	return nodes
}

// TestIntegrationClusterTwoNodes runs two herald nodes on NATS: a room made
// on node A is joined on node B; counts are the cluster's; a write through
// node B reaches alice on node A once per phase; when node B dies, its
// subscriber's leave reaches alice once, after liveness_ttl.
func TestIntegrationClusterTwoNodes(t *testing.T) {
	nodes := startCluster(t, 2, "3s")
	a, b := nodes[0], nodes[1]
	alice, bob := a.dial("alice"), b.dial("bob")
	room, ch := sub(t, alice, map[string]any{"index": "shop", "collection": "items", "state": "all", "users": "all",
		"body": map[string]any{"range": map[string]any{"price": map[string]any{"lt": 10}}}})
	_, o := next(t, alice)
	require.Equal(t, "in", o["user"])

	var joined map[string]any
	deadline := time.Now().Add(heraldtest.Timeout)
	for { // node B knows the room once its watch has it, or reads it fresh
		res, rpcErr, err := bob.Call("documents.join", map[string]any{"roomId": room, "state": "all", "users": "all"})
		require.NoError(t, err)
		if rpcErr == nil {
			require.NoError(t, json.Unmarshal(res, &joined))
			break
		}
		require.True(t, time.Now().Before(deadline), "node B never found room %s: %v", room, rpcErr)
		time.Sleep(20 * time.Millisecond)
	}
	require.Equal(t, ch, joined["channel"], "one channel for the same room and options on every node")
	n, o := next(t, alice)
	require.Equal(t, ch, n.Channel)
	require.Equal(t, "in", o["user"])
	require.Equal(t, 2.0, o["result"].(map[string]any)["count"], "bob, on node B, counts")
	require.Equal(t, 2.0, call(t, alice, "count", map[string]any{"roomId": room})["count"])

	st, body := b.backend("create", map[string]any{"index": "shop", "collection": "items", "_id": "pen", "body": map[string]any{"price": 5}})
	require.Equal(t, http.StatusOK, st, "%s", body)
	for _, want := range []string{"pending", "done"} {
		n, o := next(t, alice)
		require.Equal(t, ch, n.Channel)
		require.Equal(t, "create", o["action"])
		require.Equal(t, want, o["state"])
	}
	// Bob has the same notifications; alice has nothing more (each was
	// emitted once, by node B).
	bob.Notifications(t, 3) // his own "in", then pending and done
	st, body = a.backend("update", map[string]any{"index": "shop", "collection": "items", "_id": "pen", "body": map[string]any{"price": 50}})
	require.Equal(t, http.StatusOK, st, "%s", body)
	n, o = next(t, alice)
	require.Equal(t, "update", o["action"])
	require.Equal(t, "out", o["scope"])
	require.Equal(t, ch, n.Channel)

	// Node B dies with bob on it: once its plugin's liveness key expires,
	// node A buries bob and tells alice, once.
	b.Signal(t, syscall.SIGKILL)
	n, o = next(t, alice)
	require.Equal(t, ch, n.Channel)
	require.Equal(t, "out", o["user"])
	require.Equal(t, 1.0, o["result"].(map[string]any)["count"])
	require.Equal(t, 1.0, call(t, alice, "count", map[string]any{"roomId": room})["count"])
	// The next notification on the channel is a later write's: no second
	// leave came before it.
	st, body = a.backend("publish", map[string]any{"index": "shop", "collection": "items", "body": map[string]any{"price": 1}})
	require.Equal(t, http.StatusOK, st, "%s", body)
	_, o = next(t, alice)
	require.Equal(t, "publish", o["action"])
}
