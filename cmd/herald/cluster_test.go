package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/natstest"
)

// startNodes starts n herald nodes on the NATS server(s) at urls.
func startNodes(t *testing.T, urls string, n int, extra string) []*heraldtest.Herald {
	t.Helper()
	nodes := make([]*heraldtest.Herald, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = heraldtest.Start(t, heraldtest.Options{HCL: clusterHCL(urls, 1) + extra})
		}()
	}
	wg.Wait()
	for _, h := range nodes {
		waitReady(t, h)
	}
	return nodes
}

// waitReady waits for /readyz: a node listens before its NATS stream is
// set up (at once on an idle machine, later on a loaded one).
func waitReady(t *testing.T, h *heraldtest.Herald) {
	t.Helper()
	require.Eventually(t, func() bool {
		st, _ := h.Do(t, "GET", "/readyz", nil, "", nil)
		return st == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "the node never got ready")
}

func clusterHCL(urls string, replicas int) string {
	return fmt.Sprintf("broker \"nats\" {\n  url = %q\n  replicas = %d\n}\nhistory {\n  size = 1000\n  ttl = \"10m\"\n}\n", urls, replicas)
}

func publishOne(t *testing.T, h *heraldtest.Herald, channel string, i int) heraldtest.PublishResult {
	t.Helper()
	res := h.Publish(t, heraldtest.N(channel, "new", "message", fmt.Sprintf(`{"i":%d}`, i)))
	require.Len(t, res, 1)
	return res[0]
}

// A notification published on any node reaches the subscribers of every
// node, in one order, with the same seq and id everywhere.
func TestClusterDeliversEverywhereInOneOrder(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startNodes(t, ns.URL(), 3, "")
	clients := make([]*heraldtest.Client, len(nodes))
	for i, h := range nodes {
		clients[i] = h.Dial(t, h.Token(t, fmt.Sprintf("u%d", i)))
		sub := clients[i].Subscribe(t, "news")
		require.Equal(t, uint64(0), sub[0].Seq)
	}
	const total = 60
	var wg sync.WaitGroup
	for i, h := range nodes { // three publishers at once, one per node
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < total; j += len(nodes) {
				publishOne(t, h, "news", j)
			}
		}()
	}
	wg.Wait()
	var first []heraldtest.Notification
	for i, c := range clients {
		got := c.Notifications(t, total)
		for k, n := range got {
			require.Equal(t, uint64(k+1), n.Seq, "node %d: seqs from 1 without gap", i)
		}
		if first == nil {
			first = got
			continue
		}
		for k := range got {
			require.Equal(t, first[k].ID, got[k].ID, "node %d: the same id at seq %d", i, k+1)
			require.JSONEq(t, string(first[k].Object), string(got[k].Object))
		}
	}
	// Every node answers the same position.
	for _, h := range nodes {
		c := h.Dial(t, h.Token(t, "late"))
		sub := c.Subscribe(t, "news")
		require.Equal(t, uint64(total), sub[0].Seq)
		require.Equal(t, clients[0].Subscribe(t, "other")[0].Epoch, sub[0].Epoch, "one epoch base everywhere")
	}
}

// A node killed mid-stream: its client resumes on another node and gets
// every notification, in order, none twice.
func TestClusterResumeOnAnotherNodeAfterANodeDied(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startNodes(t, ns.URL(), 3, "")
	a, b, c := nodes[0], nodes[1], nodes[2]
	token := a.Token(t, "alice")
	onA := a.Dial(t, token)
	sub := onA.Subscribe(t, "storm")[0]

	const total = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < total; i++ {
			publishOne(t, b, "storm", i)
		}
	}()
	seen := onA.Notifications(t, 50)
	a.Signal(t, syscall.SIGKILL)
	last := seen[len(seen)-1].Seq

	onC := c.Dial(t, token)
	subs := onC.SubscribeParams(t, map[string]any{
		"channel": "storm",
		"since":   map[string]any{"storm": map[string]any{"seq": last, "epoch": sub.Epoch}},
	})
	require.True(t, *subs[0].Recovered, "resumed on another node")
	<-done
	rest := onC.Notifications(t, total-int(last))
	for k, n := range rest {
		require.Equal(t, last+uint64(k)+1, n.Seq)
	}
}

// An Idempotency-Key retried through another node publishes nothing twice.
func TestClusterIdempotentPublishAcrossNodes(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startNodes(t, ns.URL(), 2, "")
	c := nodes[1].Dial(t, nodes[1].Token(t, "u"))
	c.Subscribe(t, "orders")
	body := map[string]any{"channel": "orders", "event": "new", "object_type": "order", "object": map[string]any{"n": 1}}
	hdr := http.Header{"Idempotency-Key": []string{"order-1"}}
	st1, r1 := nodes[0].PublishRaw(t, body, hdr)
	require.Equal(t, http.StatusOK, st1, "%s", r1)
	st2, r2 := nodes[1].PublishRaw(t, body, hdr)
	require.Equal(t, http.StatusOK, st2, "%s", r2)
	require.JSONEq(t, string(r1), string(r2), "the retry is answered with the original")
	got := c.Notifications(t, 1)
	require.Equal(t, uint64(1), got[0].Seq)
	c.NoNotification(t, 500*time.Millisecond)
}

// Presence counts the connections and users of every node.
func TestClusterPresenceIsClusterWide(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startNodes(t, ns.URL(), 2, "")
	a1 := nodes[0].Dial(t, nodes[0].Token(t, "alice"))
	a2 := nodes[1].Dial(t, nodes[1].Token(t, "alice"))
	b := nodes[1].Dial(t, nodes[1].Token(t, "bob"))
	for _, c := range []*heraldtest.Client{a1, a2, b} {
		c.Subscribe(t, "room")
	}
	for _, c := range []*heraldtest.Client{a1, b} {
		res := c.MustCall(t, "presence", map[string]any{"channel": "room"})
		var p struct {
			Count int      `json:"count"`
			Users []string `json:"users"`
		}
		require.NoError(t, json.Unmarshal(res, &p))
		require.Equal(t, 3, p.Count)
		require.ElementsMatch(t, []string{"alice", "bob"}, p.Users)
	}
}

// NATS down: publishes fail with a 503 at once, /readyz names the broker,
// clients stay connected; NATS back: everything works again.
func TestClusterNATSRestart(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startNodes(t, ns.URL(), 2, "")
	c := nodes[1].Dial(t, nodes[1].Token(t, "u"))
	c.Subscribe(t, "news")
	publishOne(t, nodes[0], "news", 0)
	require.Equal(t, uint64(1), c.Notifications(t, 1)[0].Seq)

	ns.Shutdown()
	require.Eventually(t, func() bool {
		st, body := nodes[0].PublishRaw(t, heraldtest.N("news", "new", "message", `{"i":1}`), nil)
		return st == http.StatusServiceUnavailable && strings.Contains(string(body), "-32050")
	}, 30*time.Second, 100*time.Millisecond, "a publish while NATS is down is a 503")
	require.Eventually(t, func() bool {
		st, body := nodes[0].Do(t, "GET", "/readyz", nil, "", nil)
		return st == http.StatusServiceUnavailable && strings.Contains(string(body), "broker nats")
	}, 30*time.Second, 100*time.Millisecond)
	select {
	case <-c.Closed():
		t.Fatal("the client was disconnected while NATS was down")
	default:
	}

	ns.Restart()
	require.Eventually(t, func() bool {
		st, _ := nodes[0].PublishRaw(t, heraldtest.N("news", "new", "message", `{"i":2}`), nil)
		return st == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "publishes work again once NATS is back")
	got := c.Notifications(t, 1)
	require.Equal(t, uint64(2), got[0].Seq, "nothing refused was placed; the next seq follows")
	require.Eventually(t, func() bool {
		st, _ := nodes[0].Do(t, "GET", "/readyz", nil, "", nil)
		return st == http.StatusOK
	}, 30*time.Second, 100*time.Millisecond, "ready again")
}

// On a 3-server NATS cluster with replicas 3, the NATS server a herald node
// is connected to dies: the node moves to another, catches up what was
// published meanwhile through the other node, and its client misses nothing.
func TestClusterNATSServerLossIsCaughtUp(t *testing.T) {
	nc := natstest.StartCluster(t, 3)
	// Node a talks to server 0 only, node b to server 1 only at first.
	a := heraldtest.Start(t, heraldtest.Options{HCL: clusterHCL(nc.Server(0).URL()+","+nc.Server(2).URL(), 3)})
	b := heraldtest.Start(t, heraldtest.Options{HCL: clusterHCL(nc.Server(1).URL(), 3)})
	waitReady(t, a)
	waitReady(t, b)
	c := a.Dial(t, a.Token(t, "u"))
	c.Subscribe(t, "feed")
	publishOne(t, b, "feed", 0)
	require.Equal(t, uint64(1), c.Notifications(t, 1)[0].Seq)

	nc.Server(0).Shutdown()
	const more = 20
	for i := 1; i <= more; i++ {
		require.Eventually(t, func() bool {
			st, _ := b.PublishRaw(t, heraldtest.N("feed", "new", "message", fmt.Sprintf(`{"i":%d}`, i)), nil)
			return st == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond)
	}
	got := c.Notifications(t, more)
	for k, n := range got {
		require.Equal(t, uint64(k+2), n.Seq)
	}
}

// On a 3-server NATS cluster with replicas 3, two servers stop: the node
// still connected to the third cannot publish (JetStream has no quorum),
// and /readyz says so, naming the stream, until they are back.
func TestClusterReadyzFollowsJetStreamQuorum(t *testing.T) {
	nc := natstest.StartCluster(t, 3)
	h := heraldtest.Start(t, heraldtest.Options{HCL: clusterHCL(nc.Server(0).URL(), 3)})
	waitReady(t, h)
	publishOne(t, h, "feed", 0)
	// The server left leads the stream: it goes on answering as its
	// leader for a while after it has lost its quorum.
	nc.LeadStream("HERALD", 0)

	nc.Server(1).Shutdown()
	nc.Server(2).Shutdown()
	var body []byte
	require.Eventually(t, func() bool {
		var st int
		st, body = h.Do(t, "GET", "/readyz", nil, "", nil)
		return st == http.StatusServiceUnavailable
	}, 90*time.Second, 100*time.Millisecond, "/readyz stays 200 without a JetStream quorum")
	require.Contains(t, string(body), "broker nats")
	require.Contains(t, string(body), "NATS stream HERALD has no quorum", "%s", body)
	st, body := h.PublishRaw(t, heraldtest.N("feed", "new", "message", `{"i":1}`), nil)
	require.Equal(t, http.StatusServiceUnavailable, st, "%s", body)

	nc.Server(1).Restart()
	nc.Server(2).Restart()
	waitReady(t, h)
	require.Eventually(t, func() bool {
		st, _ := h.PublishRaw(t, heraldtest.N("feed", "new", "message", `{"i":2}`), nil)
		return st == http.StatusOK
	}, 60*time.Second, 200*time.Millisecond, "publishes work again once the quorum is back")
}

// A node started while NATS is down listens at once, answers /readyz 503
// naming the broker and refuses publishes with a 503; once NATS is up it
// becomes ready and publishes go through.
func TestClusterNodeStartsWhileNATSIsDown(t *testing.T) {
	ns := natstest.Start(t)
	url := ns.URL()
	ns.Shutdown()
	h := heraldtest.Start(t, heraldtest.Options{HCL: clusterHCL(url, 1)})
	st, body := h.Do(t, "GET", "/readyz", nil, "", nil)
	require.Equal(t, http.StatusServiceUnavailable, st)
	require.Contains(t, string(body), "broker nats")
	st, body = h.PublishRaw(t, heraldtest.N("news", "new", "message", `{}`), nil)
	require.Equal(t, http.StatusServiceUnavailable, st, "%s", body)

	ns.Restart()
	waitReady(t, h)
	c := h.Dial(t, h.Token(t, "u"))
	c.Subscribe(t, "news")
	publishOne(t, h, "news", 1)
	require.Equal(t, uint64(1), c.Notifications(t, 1)[0].Seq, "nothing refused while NATS was down was placed")
}

// A node with plugins that keep State (chat) started while NATS is down
// listens, says why it is not ready, answers the plugin's calls with
// -32050, and starts the plugin once NATS answers: it does not exit.
func TestClusterNodeWithStatefulPluginsStartsWhileNATSIsDown(t *testing.T) {
	ns := natstest.Start(t)
	url := ns.URL()
	ns.Shutdown()
	h := heraldtest.Start(t, heraldtest.Options{HCL: clusterHCL(url, 1) + pluginBlock("chat", "plugins/chat", "")(t)})
	st, body := h.Do(t, "GET", "/readyz", nil, "", nil)
	require.Equal(t, http.StatusServiceUnavailable, st)
	require.Contains(t, string(body), "broker nats")
	member := map[string]any{"group_id": 7, "user_id": "ann"}
	st, body = h.Do(t, "POST", "/v1/plugins/chat/addMember", member, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusServiceUnavailable, st, "%s", body)

	ns.Restart()
	waitReady(t, h)
	st, body = h.Do(t, "POST", "/v1/plugins/chat/addMember", member, heraldtest.APIKey, nil)
	require.Equal(t, http.StatusOK, st, "%s", body)
	c := h.Dial(t, h.Token(t, "ann"))
	c.Subscribe(t, "chat:group:7")
}
