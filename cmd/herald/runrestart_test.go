package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/natstest"
	"github.com/heraldhq/herald/sdk/client"
)

// sdkApp is a Go SDK client's local interface and callbacks, written
// down in the order they come.
type sdkApp struct {
	mu     sync.Mutex
	events []string
	errs   []error
}

func (a *sdkApp) OnNotificationReceived(_ context.Context, b client.Batch) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, n := range b.Notifications {
		if n.Channel != client.ServerChannel {
			a.events = append(a.events, fmt.Sprintf("%s %d", n.Channel, n.Seq))
		}
	}
	return nil
}

func (a *sdkApp) got() ([]string, []error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.events...), append([]error(nil), a.errs...)
}

// With broker nats, a channel whose history aged out entirely while it had
// subscribers starts a new run: seq 1 in a new epoch. Its subscribers on
// every node are first told with a $server resync naming the new run's
// position {0, new epoch}, then get seq 1, 2 of it; a subscriber that
// joined once the old run was over (answered {0, new epoch}) is not told.
// The Go SDK takes the resync's position: it reports the channel
// unrecovered, delivers the new run, and sees no gap.
func TestClusterNewRunAfterTheHistoryAgedOutResyncs(t *testing.T) {
	ns := natstest.Start(t)
	const ttl = 2 * time.Second
	hcl := fmt.Sprintf("broker \"nats\" {\n  url = %q\n}\nhistory {\n  size = 10\n  ttl = %q\n}\n", ns.URL(), ttl)
	nodes := make([]*heraldtest.Herald, 2)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i] = heraldtest.Start(t, heraldtest.Options{HCL: hcl})
		}()
	}
	wg.Wait()
	for _, h := range nodes {
		waitReady(t, h)
	}
	a, b := nodes[0], nodes[1]
	onA, onB := a.Dial(t, a.Token(t, "alice")), b.Dial(t, b.Token(t, "bob"))
	old := onA.Subscribe(t, "fade")[0]
	require.Equal(t, old.Epoch, onB.Subscribe(t, "fade")[0].Epoch)

	app := &sdkApp{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sdk, err := client.Dial(ctx, b.WSURL, client.Options{
		Token: b.Token(t, "carol"),
		Local: app,
		OnUnrecovered: func(channels []string) {
			app.mu.Lock()
			defer app.mu.Unlock()
			app.events = append(app.events, fmt.Sprintf("unrecovered %v", channels))
		},
		OnError: func(err error) {
			app.mu.Lock()
			defer app.mu.Unlock()
			app.errs = append(app.errs, err)
		},
	})
	require.NoError(t, err)
	defer sdk.Close()
	_, err = sdk.Subscribe(ctx, "fade")
	require.NoError(t, err)

	publishOne(t, a, "fade", 1)
	publishOne(t, a, "fade", 2)
	for _, c := range []*heraldtest.Client{onA, onB} {
		got := c.Notifications(t, 2)
		require.Equal(t, []uint64{1, 2}, []uint64{got[0].Seq, got[1].Seq})
	}

	// The quiet spell: both age out. A client subscribing meanwhile is
	// answered the next run's position once the stream says so.
	time.Sleep(2 * ttl)
	late := b.Dial(t, b.Token(t, "dave"))
	var next heraldtest.Subscription
	require.Eventually(t, func() bool {
		next = late.Subscribe(t, "fade")[0]
		if next.Epoch != old.Epoch {
			return true
		}
		late.MustCall(t, "unsubscribe", map[string]any{"channel": "fade"})
		return false
	}, 30*time.Second, 50*time.Millisecond, "the channel's history never aged out")
	require.Equal(t, uint64(0), next.Seq)

	publishOne(t, b, "fade", 3)
	publishOne(t, a, "fade", 4)
	resync := fmt.Sprintf(`{"channels":[{"channel":"fade","seq":0,"epoch":%q}]}`, next.Epoch)
	for i, c := range []*heraldtest.Client{onA, onB} {
		got := c.Notifications(t, 3)
		require.Equal(t, "$server resync", got[0].Channel+" "+got[0].Event, "node %d: told first", i)
		require.JSONEq(t, resync, string(got[0].Object), "node %d", i)
		require.Equal(t, []string{"fade 1", "fade 2"}, []string{fmt.Sprintf("%s %d", got[1].Channel, got[1].Seq), fmt.Sprintf("%s %d", got[2].Channel, got[2].Seq)}, "node %d: then the new run", i)
		require.JSONEq(t, `{"i":3}`, string(got[1].Object), "node %d", i)
	}
	got := late.Notifications(t, 2)
	require.Equal(t, []string{"fade 1", "fade 2"}, []string{fmt.Sprintf("%s %d", got[0].Channel, got[0].Seq), fmt.Sprintf("%s %d", got[1].Channel, got[1].Seq)}, "joined the new run: not told")

	require.Eventually(t, func() bool {
		events, _ := app.got()
		return len(events) >= 5
	}, heraldtest.Timeout, 10*time.Millisecond, "the SDK client never got the new run")
	events, errs := app.got()
	require.Equal(t, []string{"fade 1", "fade 2", "unrecovered [fade]", "fade 1", "fade 2"}, events)
	require.Empty(t, errs, "the SDK sees no gap")
	pos, ok := sdk.Position("fade")
	require.True(t, ok)
	require.Equal(t, client.Position{Seq: 2, Epoch: next.Epoch}, pos)

	// A subscriber's resume from the old run is told it is over (its
	// position is not compared: the new run may have aged out too by now
	// on a loaded machine).
	back := a.Dial(t, a.Token(t, "alice"))
	var subs struct{ Subscriptions []heraldtest.Subscription }
	res := back.MustCall(t, "subscribe", map[string]any{"channel": "fade", "since": map[string]any{"fade": map[string]any{"seq": 2, "epoch": old.Epoch}}})
	require.NoError(t, json.Unmarshal(res, &subs))
	require.False(t, *subs.Subscriptions[0].Recovered)
	require.NotEqual(t, old.Epoch, subs.Subscriptions[0].Epoch)
}
