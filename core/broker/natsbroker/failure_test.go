package natsbroker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/broker/natsbroker"
	"github.com/heraldhq/herald/internal/natstest"
)

type collector struct {
	mu   sync.Mutex
	pubs []*broker.Publication
}

func (c *collector) HandlePublication(p *broker.Publication) {
	c.mu.Lock()
	c.pubs = append(c.pubs, p)
	c.mu.Unlock()
}

func (c *collector) waitFor(t *testing.T, n int) []*broker.Publication {
	t.Helper()
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pubs) >= n
	}, 30*time.Second, time.Millisecond, "waiting for %d publications", n)
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*broker.Publication(nil), c.pubs...)
}

func note(ch string) []broker.Notification {
	return []broker.Notification{{Channel: ch, Event: "e", ObjectType: "t", Object: json.RawMessage(`{}`)}}
}

// watch does what the hub does for a channel's first subscriber, asking
// again while the broker is unavailable (a replicated stream still being
// set up on a loaded machine), as a client's subscribe would be retried.
func watch(t *testing.T, b *natsbroker.Broker, ch string) {
	t.Helper()
	b.Watch(ch)
	require.Eventually(t, func() bool {
		_, err := b.Position(context.Background(), ch)
		if err != nil && !errors.Is(err, broker.ErrUnavailable) {
			require.NoError(t, err)
		}
		return err == nil
	}, 60*time.Second, 10*time.Millisecond)
}

// positionEventually reads ch's position, retrying while the broker is
// unavailable (an R3 stream still being set up on a fresh cluster).
func positionEventually(t *testing.T, b *natsbroker.Broker, ch string) broker.Position {
	t.Helper()
	return whenAvailable(t, func() (broker.Position, error) { return b.Position(context.Background(), ch) })
}

// publishEventually publishes, retrying while the broker is unavailable
// (a stream leader being elected after a server died).
func publishEventually(t *testing.T, b *natsbroker.Broker, ns []broker.Notification) []*broker.Publication {
	t.Helper()
	return whenAvailable(t, func() ([]*broker.Publication, error) { return b.Publish(context.Background(), ns) })
}

// whenAvailable calls f until it succeeds, for up to a minute, while it
// fails with broker.ErrUnavailable; any other error fails the test.
func whenAvailable[T any](t *testing.T, f func() (T, error)) T {
	t.Helper()
	var v T
	require.Eventually(t, func() bool {
		var err error
		v, err = f()
		if err != nil && !errors.Is(err, broker.ErrUnavailable) {
			require.NoError(t, err)
		}
		return err == nil
	}, 60*time.Second, 10*time.Millisecond)
	return v
}

// While NATS is down, a publish fails at once (or within its own bound)
// with ErrUnavailable, and Ready says why; once it is back, publishing goes
// on where it was.
func TestNATSRestart(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(100, time.Hour)
	opts.PublishTimeout = 2 * time.Second
	opts.ReadyCache = time.Nanosecond
	b := newBroker(t, srv.URL(), opts)
	ctx := context.Background()
	_, err := b.Publish(ctx, note("r"))
	require.NoError(t, err)
	require.NoError(t, b.Ready())

	srv.Shutdown()
	// Far longer than the publish's own bound: the publish must give up
	// by itself, not by the caller's deadline.
	callerCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i := 0; i < 3; i++ {
		_, err = b.Publish(callerCtx, note("r"))
		require.ErrorIs(t, err, broker.ErrUnavailable)
		require.NoError(t, callerCtx.Err(), "the publish waited for the caller's deadline")
	}
	require.ErrorIs(t, b.Ready(), broker.ErrUnavailable)

	srv.Restart()
	pubs := publishEventually(t, b, note("r"))
	require.Equal(t, uint64(2), pubs[0].Seq, "nothing was placed while NATS was down")
	require.NoError(t, b.Ready())
}

// A node whose NATS server restarts catches up, without a gap, what
// another node published to a channel it watches meanwhile.
func TestNATSClusterCatchUpAfterReconnect(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	opts := uniqueOptions(100, time.Hour)
	opts.Replicas = 3
	a := newBroker(t, c.Server(0).URL(), opts)
	b := newBroker(t, c.Server(2).URL(), opts) // knows only the server that restarts
	rec := &collector{}
	b.SetHandler(rec)
	watch(t, b, "w")
	publishEventually(t, a, note("w"))
	rec.waitFor(t, 1)

	c.Server(2).Shutdown()
	var placed []*broker.Publication
	for i := 0; i < 5; i++ {
		placed = append(placed, publishEventually(t, a, note("w"))...)
	}
	c.Server(2).Restart()
	got := rec.waitFor(t, 6)
	require.Len(t, got, 6)
	for i, p := range got {
		require.Equal(t, uint64(i+1), p.Seq)
	}
	for i, p := range placed {
		require.Equal(t, p.ID, got[i+1].ID)
	}
}

// On a three-server cluster with three replicas, a publication that was
// acknowledged is read back after a server died, and publishing goes on.
func TestNATSClusterReplicas(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	opts := uniqueOptions(100, time.Hour)
	opts.Replicas = 3
	a := newBroker(t, c.URLs(), opts)
	b := newBroker(t, c.URLs(), opts)
	ctx := context.Background()
	before := positionEventually(t, a, "r3")
	placed := publishEventually(t, a, note("r3"))

	c.Server(0).Shutdown()
	var got []*broker.Publication
	require.Eventually(t, func() bool {
		var err error
		got, _, err = b.History(ctx, "r3", before)
		return err == nil && len(got) == 1
	}, 60*time.Second, 10*time.Millisecond)
	require.Equal(t, placed[0].ID, got[0].ID)
	more := publishEventually(t, b, note("r3"))
	require.Equal(t, uint64(2), more[0].Seq)
}

// On a three-server cluster with three replicas, when two servers stop
// the node connected to the third can publish nothing (JetStream has no
// quorum), and Ready says so, though the stream's info still answers (from
// the leader, then from the server left); once they are back Ready is nil
// again and publishing goes on. The node knows only the server left, as a
// node cut off with a minority would.
func TestNATSClusterReadyFollowsQuorum(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	opts := uniqueOptions(100, time.Hour)
	opts.Replicas = 3
	opts.ReadyCache = time.Millisecond
	opts.PublishTimeout = 2 * time.Second
	b := newBroker(t, c.Server(0).URL(), opts)
	publishEventually(t, b, note("q"))
	// The stream's leader is the server left: it goes on answering as the
	// leader after it has lost its quorum, which is what Ready must see
	// through (a leader elsewhere leaves the stream's info unanswered).
	c.LeadStream(opts.Stream, 0)
	require.NoError(t, b.Ready())

	c.Server(1).Shutdown()
	c.Server(2).Shutdown()
	// Until NATS notices, the leader may still lead; Ready must turn
	// within the time NATS takes to notice (seconds), far less than this.
	var err error
	require.Eventually(t, func() bool { err = b.Ready(); return err != nil }, 90*time.Second, 10*time.Millisecond,
		"Ready stays nil without a JetStream quorum")
	require.ErrorIs(t, err, broker.ErrUnavailable)
	require.ErrorContains(t, err, "NATS stream "+opts.Stream)
	t.Logf("without quorum: %v", err)
	_, perr := b.Publish(context.Background(), note("q"))
	require.ErrorIs(t, perr, broker.ErrUnavailable, "Ready said no quorum, and a publish fails")
	// NATS notices (in about twenty seconds): the leader steps down, and
	// the server left answers the stream's info from its own copy, with
	// no leader. Ready stays non-nil throughout.
	require.Eventually(t, func() bool {
		err = b.Ready()
		require.Error(t, err, "Ready turned nil while two servers of three are down")
		return strings.Contains(err.Error(), "has no leader")
	}, 90*time.Second, 10*time.Millisecond, "the leader never stepped down")
	t.Logf("without a leader: %v", err)

	c.Server(1).Restart()
	c.Server(2).Restart()
	require.Eventually(t, func() bool { return b.Ready() == nil }, 90*time.Second, 10*time.Millisecond,
		"Ready stays non-nil once the quorum is back")
	// The publish above may have reached a leader that had lost its
	// quorum without knowing it yet: it times out, but the leader kept it
	// in its log, and when the servers come back it may be elected again
	// and place it (as after any timeout; a retry with the same MsgID is
	// not placed twice).
	pubs := publishEventually(t, b, note("q"))
	require.Contains(t, []uint64{2, 3}, pubs[0].Seq)
}

// A batch that the server refuses part of (a message over the stream's
// max_msg_size, which the client cannot know) places nothing.
func TestNATSBatchRefusedInTheMiddlePlacesNothing(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(100, time.Hour)
	nc := connect(t, srv.URL())
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	// An operator's setting the broker keeps when it updates the stream.
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{Name: opts.Stream,
		Subjects: []string{opts.SubjectPrefix + ".ch.>"}, MaxMsgSize: 2048})
	require.NoError(t, err)
	b := newBroker(t, srv.URL(), opts)
	ctx := context.Background()
	big := note("m2")[0]
	big.Object = json.RawMessage(`"` + strings.Repeat("x", 4096) + `"`)
	_, err = b.Publish(ctx, []broker.Notification{note("m1")[0], big, note("m1")[0]})
	require.Error(t, err)
	for _, ch := range []string{"m1", "m2"} {
		pos, err := b.Position(ctx, ch)
		require.NoError(t, err)
		require.Zero(t, pos.Seq, ch)
	}
	pubs, err := b.Publish(ctx, note("m1"))
	require.NoError(t, err)
	require.Equal(t, uint64(1), pubs[0].Seq)
}

var _ = nats.ErrTimeout

// A stream at its max bytes refuses new publications with ErrFull (an
// ErrUnavailable): the history already kept stays.
func TestNATSFullStreamRefuses(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(1000, time.Hour)
	opts.MaxBytes = 16 << 10
	b := newBroker(t, srv.URL(), opts)
	ctx := context.Background()
	before, err := b.Position(ctx, "full")
	require.NoError(t, err)
	var placed []*broker.Publication
	for i := 0; ; i++ {
		require.Less(t, i, 1000, "the stream never filled")
		pubs, err := b.Publish(ctx, note("full"))
		if err != nil {
			require.ErrorIs(t, err, natsbroker.ErrFull)
			require.ErrorIs(t, err, broker.ErrUnavailable)
			break
		}
		placed = append(placed, pubs...)
	}
	got, _, err := b.History(ctx, "full", before)
	require.NoError(t, err)
	require.Len(t, got, len(placed), "what was kept stays")
}

type blockingHandler struct {
	collector
	release chan struct{}
	once    sync.Once
}

func (h *blockingHandler) HandlePublication(p *broker.Publication) {
	h.once.Do(func() { <-h.release })
	h.collector.HandlePublication(p)
}

// When live messages are dropped (the node is slower than the channel),
// what it misses is read from the stream: the Handler still gets every
// publication, once, in seq order.
func TestNATSDroppedLiveMessagesAreFilled(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(1000, time.Hour)
	a := newBroker(t, srv.URL(), opts)
	opts.LiveBuffer = 1
	b := newBroker(t, srv.URL(), opts)
	h := &blockingHandler{release: make(chan struct{})}
	b.SetHandler(h)
	watch(t, b, "g")
	const total = 200
	for i := 0; i < total; i++ {
		_, err := a.Publish(context.Background(), note("g"))
		require.NoError(t, err)
	}
	close(h.release)
	got := h.waitFor(t, total)
	require.Len(t, got, total)
	for i, p := range got {
		require.Equal(t, uint64(i+1), p.Seq)
	}
	require.Positive(t, b.Stats().GapFills, "some were read from the stream")
}

// Channels watched in a burst on a node of another NATS server get what is
// published right after, although their interest reaches the stream's
// server a moment later.
func TestNATSClusterWatchBurst(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	opts := uniqueOptions(100, time.Hour)
	opts.Replicas = 3
	a := newBroker(t, c.Server(0).URL(), opts)
	b := newBroker(t, c.Server(2).URL(), opts)
	rec := &collector{}
	b.SetHandler(rec)
	publishEventually(t, a, note("warm"))
	const channels = 300
	var ns []broker.Notification
	for i := 0; i < channels; i++ {
		ch := "burst" + strconv.Itoa(i)
		watch(t, b, ch)
		ns = append(ns, note(ch)...)
	}
	for _, n := range ns {
		publishEventually(t, a, []broker.Notification{n})
	}
	got := rec.waitFor(t, channels)
	seen := map[string]bool{}
	for _, p := range got {
		require.False(t, seen[p.Channel], "handed over twice: %s", p.Channel)
		seen[p.Channel] = true
		require.Equal(t, uint64(1), p.Seq)
	}
	require.Positive(t, b.Stats().TailChecks)
}

// A node started while NATS is down comes up: the broker answers
// ErrUnavailable (and Ready says so) until NATS is there, then sets its
// streams up and works, also for a channel watched meanwhile.
func TestNATSStartWhileDown(t *testing.T) {
	srv := natstest.Start(t)
	url := srv.URL()
	srv.Shutdown()
	nc, err := nats.Connect(url, nats.RetryOnFailedConnect(true), nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	opts := uniqueOptions(100, time.Hour)
	opts.ReadyCache = 10 * time.Millisecond
	b, err := natsbroker.New(context.Background(), nc, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	ctx := context.Background()
	_, err = b.Publish(ctx, note("late"))
	require.ErrorIs(t, err, broker.ErrUnavailable)
	_, err = b.Position(ctx, "late")
	require.ErrorIs(t, err, broker.ErrUnavailable)
	require.ErrorIs(t, b.Ready(), broker.ErrUnavailable)
	rec := &collector{}
	b.SetHandler(rec)
	b.Watch("late")

	srv.Restart()
	require.Eventually(t, func() bool { return b.Ready() == nil }, 30*time.Second, 10*time.Millisecond)
	pos, err := b.Position(ctx, "late")
	require.NoError(t, err)
	require.Zero(t, pos.Seq)
	other := newBroker(t, url, opts)
	placed, err := other.Publish(ctx, note("late"))
	require.NoError(t, err)
	got := rec.waitFor(t, 1)
	require.Equal(t, placed[0].ID, got[0].ID)
}

// More replicas than the NATS servers: the error names broker.replicas and
// what it may be, not only NATS's own words.
func TestNATSTooManyReplicasNamesTheKey(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(100, time.Hour)
	opts.Replicas = 3
	_, err := natsbroker.New(context.Background(), connect(t, srv.URL()), opts)
	require.Error(t, err)
	require.Contains(t, err.Error(), "broker.replicas = 3 (at most the number of NATS servers in the cluster; 1 for a single server)")
}

// history.ttl = 0: the stream keeps messages with no age limit, and its
// de-duplication window is JetStream's default of two minutes, not
// unlimited (docs/configuration.md says so).
func TestNATSZeroTTLStream(t *testing.T) {
	srv := natstest.Start(t)
	opts := uniqueOptions(10, 0)
	newBroker(t, srv.URL(), opts)
	js, err := jetstream.New(connect(t, srv.URL()))
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), opts.Stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.Zero(t, info.Config.MaxAge, "no age limit")
	require.Equal(t, 2*time.Minute, info.Config.Duplicates)
}
