package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
)

// threeNodes starts nodes a, b and c, on one NATS server or each on its own
// server of a routed three-server NATS cluster.
func threeNodes(t *testing.T, routed bool, edit func(*Options)) []*testNode {
	t.Helper()
	urls := make([]string, 3)
	if routed {
		for i, s := range runNATSCluster(t, 3) {
			urls[i] = s.ClientURL()
		}
	} else {
		u := runNATS(t, nil).ClientURL()
		urls = []string{u, u, u}
	}
	nodes := []*testNode{
		startNode(t, urls[0], "a", edit),
		startNode(t, urls[1], "b", edit),
		startNode(t, urls[2], "c", edit),
	}
	waitMembers(t, nodes, "a", "b", "c")
	return nodes
}

var topologies = []struct {
	name   string
	routed bool
}{
	{"one NATS server", false},
	{"three routed NATS servers", true},
}

func TestPresenceSumsCountsAndDeduplicatesUsersAcrossNodes(t *testing.T) {
	t.Parallel()
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := threeNodes(t, tc.routed, nil)
			a, b, c := nodes[0], nodes[1], nodes[2]
			// Two connections of u1 and one anonymous on a; u2 on a and b.
			a.local.set("room", 4, "u1", "u2")
			b.local.set("room", 2, "u2", "u3")
			c.local.set("other", 7, "u9")

			for _, n := range nodes {
				count, users, err := n.Presence(context.Background(), "room")
				require.NoError(t, err, "from %s", n.ID())
				require.Equal(t, 6, count, "from %s", n.ID())
				require.Equal(t, []string{"u1", "u2", "u3"}, sorted(users), "from %s", n.ID())

				count, users, err = n.Presence(context.Background(), "nobody-here")
				require.NoError(t, err)
				require.Zero(t, count)
				require.Empty(t, users)
			}
			// Every node answered the two others' requests, with one message each.
			for _, n := range nodes {
				st := n.Stats()
				require.Equal(t, uint64(4), st.PresenceAnswered, "node %s", n.ID())
				require.Equal(t, uint64(4), st.PresenceParts, "node %s", n.ID())
				require.Zero(t, st.PresenceIncomplete)
			}
		})
	}
}

func TestNodeThatLeavesStopsCounting(t *testing.T) {
	t.Parallel()
	for _, tc := range topologies {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes := threeNodes(t, tc.routed, nil)
			a, b, c := nodes[0], nodes[1], nodes[2]
			a.local.set("room", 1, "u1")
			b.local.set("room", 1, "u2")
			c.local.set("room", 1, "u3")
			count, _, err := a.Presence(context.Background(), "room")
			require.NoError(t, err)
			require.Equal(t, 3, count)

			// c closes: it says goodbye and the others drop it.
			require.NoError(t, c.Close())
			waitMembers(t, nodes[:2], "a", "b")
			count, users, err := a.Presence(context.Background(), "room")
			require.NoError(t, err)
			require.Equal(t, 2, count)
			require.Equal(t, []string{"u1", "u2"}, sorted(users))

			// b's NATS connection dies without a goodbye: a expires it after
			// three silent heartbeats, and does not wait for it any more.
			b.nc.Close()
			waitMembers(t, nodes[:1], "a")
			count, users, err = a.Presence(context.Background(), "room")
			require.NoError(t, err)
			require.Equal(t, 1, count)
			require.Equal(t, []string{"u1"}, users)

			// b itself knows it is cut off: its presence is its own, and says so.
			count, users, err = b.Presence(context.Background(), "room")
			require.ErrorIs(t, err, ErrDisconnected)
			require.Equal(t, 1, count)
			require.Equal(t, []string{"u2"}, users)
		})
	}
}

func TestSlowNodeBoundsTheWait(t *testing.T) {
	t.Parallel()
	nodes := threeNodes(t, false, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	a.local.set("room", 1, "u1")
	b.local.set("room", 1, "u2")
	c.local.set("room", 1, "u3")
	release := c.local.stall("room")
	defer release()

	// c is alive (its heartbeats go on) but does not answer: the call ends
	// with its context (here once b answered) with a's and b's part, and
	// names c.
	type result struct {
		count int
		users []string
		err   error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		count, users, err := a.Presence(ctx, "room")
		done <- result{count, users, err}
	}()
	waitAnswered(t, a, "room", "b")
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(eventually):
		t.Fatal("Presence did not return although its context ended")
	}
	var inc *IncompleteError
	require.ErrorAs(t, r.err, &inc)
	require.Equal(t, []string{"c"}, inc.Missing)
	require.ErrorIs(t, r.err, context.Canceled)
	require.Equal(t, 2, r.count)
	require.Equal(t, []string{"u1", "u2"}, sorted(r.users))
	require.Equal(t, []string{"a", "b", "c"}, a.Nodes(), "a slow answer is not a dead node")

	// Without a deadline of its own, the call is bounded by PresenceTimeout.
	a2 := startNode(t, a.nc.ConnectedUrl(), "a2", func(o *Options) { o.PresenceTimeout = 100 * time.Millisecond })
	waitMembers(t, []*testNode{a2}, "a", "a2", "b", "c")
	_, _, err := a2.Presence(context.Background(), "room")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	// Once c answers again, its late replies to the ended requests are
	// dropped and the next request counts it once.
	release()
	count, users, err := a.Presence(context.Background(), "room")
	require.NoError(t, err)
	require.Equal(t, 3, count)
	require.Equal(t, []string{"u1", "u2", "u3"}, sorted(users))
}

func TestLargeAnswerIsSplitOverTheMaxPayload(t *testing.T) {
	t.Parallel()
	const maxPayload = 1024
	s := runNATS(t, func(o *server.Options) { o.MaxPayload = maxPayload })
	a := startNode(t, s.ClientURL(), "a", nil)
	b := startNode(t, s.ClientURL(), "b", nil)
	waitMembers(t, []*testNode{a, b}, "a", "b")

	var users []string
	for i := range 500 {
		users = append(users, fmt.Sprintf("user-%05d@example.org", i))
	}
	// One id longer than a whole message cannot be sent: it is left out
	// (and logged), the others still arrive.
	huge := strings.Repeat("x", maxPayload)
	b.local.set("big", 600, append([]string{huge}, users...)...)
	a.local.set("big", 1, "user-00000@example.org")

	count, got, err := a.Presence(context.Background(), "big")
	require.NoError(t, err)
	require.Equal(t, 601, count)
	require.Equal(t, sorted(users), sorted(got))
	st := b.Stats()
	require.Equal(t, uint64(1), st.PresenceAnswered)
	require.Greater(t, st.PresenceParts, uint64(500*len(users[0])/maxPayload), "answer split into parts under the max payload")
	require.Equal(t, uint64(1), st.UsersLeftOut)
}

// flipLog records OnFlip calls across nodes.
type flipLog struct {
	mu    sync.Mutex
	flips []string
	fail  int // how many calls to fail next
}

func (l *flipLog) on(id string) func(context.Context, bool) error {
	return func(_ context.Context, busy bool) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.fail > 0 {
			l.fail--
			l.flips = append(l.flips, fmt.Sprintf("%s:%v:failed", id, busy))
			return errors.New("broker unavailable")
		}
		l.flips = append(l.flips, fmt.Sprintf("%s:%v", id, busy))
		return nil
	}
}

func (l *flipLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.flips...)
}

// waitLeading waits until the leader's view is complete (it has listened
// for a full expiry window), so that it acts on a flip.
func waitLeading(t *testing.T, leader *testNode) {
	t.Helper()
	require.Eventually(t, func() bool {
		leader.mu.Lock()
		defer leader.mu.Unlock()
		return leader.leadingLocked(time.Now())
	}, eventually, poll)
}

func threeNodesWithFlips(t *testing.T, routed bool) ([]*testNode, *flipLog) {
	t.Helper()
	log := &flipLog{}
	nodes := threeNodes(t, routed, func(o *Options) { o.OnFlip = log.on(o.NodeID) })
	waitLeading(t, nodes[0])
	return nodes, log
}

func TestBusyFlipsOnceAcrossTheCluster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		routed   bool
		busyNode int
	}{
		{"leader busy", false, 0},
		{"other node busy", false, 2},
		{"other node busy, three routed NATS servers", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			nodes, log := threeNodesWithFlips(t, tc.routed)
			busyNode := tc.busyNode
			busy := nodes[busyNode]

			busy.local.busy.Store(true)
			require.Eventually(t, func() bool { return len(log.get()) >= 1 }, eventually, poll)
			for _, n := range nodes {
				require.Eventually(t, n.Busy, eventually, poll, "node %s sees the cluster busy", n.ID())
			}
			waitHeard(t, nodes, 3)
			require.Equal(t, []string{"a:true"}, log.get(), "one callback, on the node with the smallest id")

			busy.local.busy.Store(false)
			require.Eventually(t, func() bool { return len(log.get()) >= 2 }, eventually, poll)
			for _, n := range nodes {
				require.Eventually(t, func() bool { return !n.Busy() }, eventually, poll)
			}
			waitHeard(t, nodes, 3)
			require.Equal(t, []string{"a:true", "a:false"}, log.get())
		})
	}
}

func TestBusySignalSurvivesTheLeaderLeaving(t *testing.T) {
	t.Parallel()
	nodes, log := threeNodesWithFlips(t, false)
	a, b, c := nodes[0], nodes[1], nodes[2]

	c.local.busy.Store(true)
	require.Eventually(t, func() bool { return len(log.get()) >= 1 }, eventually, poll)
	waitHeard(t, nodes, 2)

	// The leader leaves while the cluster is busy: b takes over knowing
	// that busy was announced, so it does not announce it again...
	require.NoError(t, a.Close())
	waitMembers(t, nodes[1:], "b", "c")
	waitLeading(t, b)
	waitHeard(t, nodes[1:], 3)
	require.Equal(t, []string{"a:true"}, log.get())

	// ...and announces the way back to normal.
	c.local.busy.Store(false)
	require.Eventually(t, func() bool { return len(log.get()) >= 2 }, eventually, poll)
	waitHeard(t, nodes[1:], 3)
	require.Equal(t, []string{"a:true", "b:false"}, log.get())
}

func TestJoiningNodeDoesNotRepeatTheBusySignal(t *testing.T) {
	t.Parallel()
	log := &flipLog{}
	url := runNATS(t, nil).ClientURL()
	b := startNode(t, url, "b", func(o *Options) { o.OnFlip = log.on("b") })
	waitLeading(t, b)
	b.local.busy.Store(true)
	require.Eventually(t, func() bool { return len(log.get()) >= 1 }, eventually, poll)

	// a has a smaller id: once its view is complete it leads, continuing
	// from what b announced rather than announcing busy again.
	a := startNode(t, url, "a", func(o *Options) { o.OnFlip = log.on("a") })
	nodes := []*testNode{a, b}
	waitMembers(t, nodes, "a", "b")
	waitLeading(t, a)
	waitHeard(t, nodes, 3)
	require.Equal(t, []string{"b:true"}, log.get())

	b.local.busy.Store(false)
	require.Eventually(t, func() bool { return len(log.get()) >= 2 }, eventually, poll)
	waitHeard(t, nodes, 3)
	require.Equal(t, []string{"b:true", "a:false"}, log.get())
}

func TestCloseEndsPresenceInFlight(t *testing.T) {
	t.Parallel()
	nodes := threeNodes(t, false, nil)
	a, c := nodes[0], nodes[2]
	release := c.local.stall("room")
	defer release()

	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		_, _, err := a.Presence(ctx, "room")
		errc <- err
	}()
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.gathers) == 1
	}, eventually, poll)
	require.NoError(t, a.Close())
	select {
	case err := <-errc:
		require.ErrorIs(t, err, ErrClosed)
	case <-time.After(eventually):
		t.Fatal("Presence in flight did not end at Close")
	}
	_, _, err := a.Presence(context.Background(), "room")
	require.ErrorIs(t, err, ErrClosed)
	release()
}

func TestDuplicateNodeIDIsReported(t *testing.T) {
	t.Parallel()
	url := runNATS(t, nil).ClientURL()
	var buf syncBuffer
	logTo := func(o *Options) { o.Logger = newBufferLogger(&buf) }
	a := startNode(t, url, "same", logTo)
	startNode(t, url, "same", nil)
	require.Eventually(t, func() bool {
		return strings.Contains(buf.String(), "another process uses this node id")
	}, eventually, poll)
	require.Equal(t, []string{"same"}, a.Nodes())
}

func TestOptions(t *testing.T) {
	t.Parallel()
	local := newFakeLocal()
	for _, tc := range []struct {
		name string
		opts Options
		err  string
	}{
		{"no local", Options{}, "Local is required"},
		{"wildcard prefix", Options{Local: local, Prefix: "herald.*"}, "Prefix"},
		{"empty token", Options{Local: local, Prefix: "herald..x"}, "empty subject token"},
		{"heartbeat too long", Options{Local: local, Heartbeat: time.Hour}, "Heartbeat"},
		{"negative timeout", Options{Local: local, PresenceTimeout: -1}, "PresenceTimeout"},
		{"long id", Options{Local: local, NodeID: strings.Repeat("n", 200)}, "NodeID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.opts.withDefaults()
			require.ErrorContains(t, err, tc.err)
		})
	}
	o, err := Options{Local: local}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, DefaultPrefix, o.Prefix)
	require.Equal(t, DefaultHeartbeat, o.Heartbeat)
	require.Equal(t, DefaultPresenceTimeout, o.PresenceTimeout)
	require.Len(t, o.NodeID, 26, "a ULID")
	o2, err := Options{Local: local}.withDefaults()
	require.NoError(t, err)
	require.Less(t, o.NodeID, o2.NodeID, "default ids sort by start time")
}

func TestNATSRestartFreezesTheBusySignal(t *testing.T) {
	t.Parallel()
	log := &flipLog{}
	s := runNATS(t, nil)
	port := s.Addr().(*net.TCPAddr).Port
	var nodes []*testNode
	for _, id := range []string{"a", "b"} {
		nodes = append(nodes, startNode(t, s.ClientURL(), id, func(o *Options) { o.OnFlip = log.on(id) }))
	}
	a, b := nodes[0], nodes[1]
	waitMembers(t, nodes, "a", "b")
	waitLeading(t, a)
	b.local.busy.Store(true)
	require.Eventually(t, func() bool { return len(log.get()) >= 1 }, eventually, poll)

	// NATS goes away: each node ends up alone, but does not take the
	// silence of the others for the cluster becoming normal.
	s.Shutdown()
	s.WaitForShutdown()
	waitMembers(t, nodes[:1], "a")
	waitMembers(t, nodes[1:], "b")
	before := a.Stats()
	_, _, err := a.Presence(context.Background(), "room")
	require.ErrorIs(t, err, ErrDisconnected)
	after := a.Stats()
	require.Equal(t, before.PresenceIncomplete+1, after.PresenceIncomplete, "an answer for this node alone is counted incomplete")
	require.Equal(t, before.PresenceGathered+1, after.PresenceGathered)

	// NATS comes back on the same port: the nodes find each other again,
	// and the busy state announced before stays announced once.
	runNATS(t, func(o *server.Options) { o.Port = port })
	waitMembers(t, nodes, "a", "b")
	waitLeading(t, a)
	waitHeard(t, nodes, 3)
	require.Equal(t, []string{"a:true"}, log.get())

	b.local.busy.Store(false)
	require.Eventually(t, func() bool { return len(log.get()) >= 2 }, eventually, poll)
	require.Equal(t, []string{"a:true", "a:false"}, log.get())

	// Before the restarted server's cleanup, which runs first.
	for _, n := range nodes {
		require.NoError(t, n.Close())
	}
}

// Not parallel: it counts the process's goroutines, so it runs before the
// parallel tests start.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Run("cluster", func(t *testing.T) {
		nodes := threeNodes(t, false, nil)
		nodes[1].local.set("room", 1, "u1")
		_, _, err := nodes[0].Presence(context.Background(), "room")
		require.NoError(t, err)
	})
	// Polled here rather than with Eventually, whose own goroutine counts.
	for deadline := time.Now().Add(eventually); runtime.NumGoroutine() > before; time.Sleep(poll) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
	}
}

func TestConcurrentPresenceOfAChannelSharesOneRequest(t *testing.T) {
	t.Parallel()
	nodes := threeNodes(t, false, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	b.local.set("room", 1, "u2")
	c.local.set("room", 1, "u3")
	release := c.local.stall("room")
	defer release()

	type result struct {
		count int
		users []string
		err   error
	}
	results := make(chan result, 2)
	ask := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		count, users, err := a.Presence(ctx, "room")
		results <- result{count, users, err}
	}
	inFlight := func(shared int) func() bool {
		return func() bool {
			a.mu.Lock()
			defer a.mu.Unlock()
			g := a.flights["room"]
			return g != nil && g.shared == shared
		}
	}
	go ask()
	require.Eventually(t, inFlight(0), eventually, poll)
	go ask()
	require.Eventually(t, inFlight(1), eventually, poll, "the second call joins the first")
	release()
	for range 2 {
		r := <-results
		require.NoError(t, r.err)
		require.Equal(t, 2, r.count)
		require.Equal(t, []string{"u2", "u3"}, sorted(r.users))
	}
	require.Equal(t, uint64(1), b.Stats().PresenceAnswered, "one request for two calls")
	require.Equal(t, uint64(1), a.Stats().PresenceShared)

	// A joiner whose own deadline comes first leaves with what is there.
	release = c.local.stall("room")
	defer release()
	go ask()
	waitAnswered(t, a, "room", "b")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	count, users, err := a.Presence(ctx, "room")
	var inc *IncompleteError
	require.ErrorAs(t, err, &inc)
	require.Equal(t, []string{"c"}, inc.Missing)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, count)
	require.Equal(t, []string{"u2"}, users)
	release()
	require.NoError(t, (<-results).err, "the first call is not ended by the joiner leaving")
}

func TestUnreadableMessagesAreIgnoredAndLoggedOnce(t *testing.T) {
	t.Parallel()
	url := runNATS(t, nil).ClientURL()
	var buf syncBuffer
	a := startNode(t, url, "a", func(o *Options) { o.Logger = newBufferLogger(&buf) })
	other := connect(t, url)
	for _, msg := range []string{`{"v":2,"id":"future","every_ms":1000}`, `not json`} {
		require.NoError(t, other.Publish("herald.nodes", []byte(msg)))
	}
	require.NoError(t, other.Publish("herald.presence", []byte{9, 9, 9}))
	require.NoError(t, other.Flush())
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.ignored == 2 // the first one was logged
	}, eventually, poll)
	require.Equal(t, 1, strings.Count(buf.String(), "ignoring"), buf.String())
	require.Equal(t, []string{"a"}, a.Nodes())
}

func TestFailedFlipIsOfferedAgain(t *testing.T) {
	t.Parallel()
	nodes, log := threeNodesWithFlips(t, false)
	log.mu.Lock()
	log.fail = 2
	log.mu.Unlock()

	nodes[1].local.busy.Store(true)
	require.Eventually(t, func() bool { return len(log.get()) >= 3 }, eventually, poll)
	waitHeard(t, nodes, 3)
	require.Equal(t, []string{"a:true:failed", "a:true:failed", "a:true"}, log.get())

}

func TestFailedFlipTakenBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		announced     bool
		pending       *bool
		failed        bool
		wantAnnounced bool
		wantPending   bool
	}{
		// busy failed, nothing since: offer busy again later.
		{"alone", true, nil, true, false, false},
		// busy failed while the cluster went back to normal (queued): the
		// cluster was never told busy, so normal is not news either.
		{"the opposite queued", false, new(false), true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{opts: Options{Heartbeat: time.Second}, announced: tc.announced, pendingFlip: tc.pending}
			n.unannounce(tc.failed)
			require.Equal(t, tc.wantAnnounced, n.announced)
			require.Equal(t, tc.wantPending, n.pendingFlip != nil)
			require.False(t, n.holdUntil.IsZero())
		})
	}

}
