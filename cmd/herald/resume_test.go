package main_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// A client that drops and resumes while a publisher keeps going sees every
// seq exactly once, in order.
func TestResumeDuringPublishStormHasNoGapNoDuplicate(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `history {
  size = 5000
  ttl  = "10m"
}`})
	const total = 3000
	token := h.Token(t, "alice")

	first := h.Dial(t, token)
	sub := first.Subscribe(t, "storm")[0]
	epoch := sub.Epoch

	var published atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i += 10 {
			var ns []map[string]any
			for j := i; j < i+10; j++ {
				ns = append(ns, heraldtest.N("storm", "new", "message", fmt.Sprintf(`{"i":%d}`, j)))
			}
			h.Publish(t, ns...)
			published.Add(10)
		}
	}()

	// Take some, then vanish mid-stream.
	var seen []uint64
	for _, n := range first.Notifications(t, 300) {
		seen = append(seen, n.Seq)
	}
	first.Close()
	last := seen[len(seen)-1]

	// Come back while the storm goes on, from the last seq we saw.
	for published.Load() < 900 {
		time.Sleep(time.Millisecond)
	}
	second := h.Dial(t, token)
	subs := second.SubscribeParams(t, map[string]any{
		"channel": "storm",
		"since":   map[string]any{"storm": map[string]any{"seq": last, "epoch": epoch}},
	})
	require.Len(t, subs, 1)
	require.NotNil(t, subs[0].Recovered)
	require.True(t, *subs[0].Recovered)
	require.Equal(t, epoch, subs[0].Epoch)

	wg.Wait()
	for _, n := range second.Notifications(t, total-int(last)) {
		seen = append(seen, n.Seq)
	}
	for i, s := range seen {
		require.Equal(t, uint64(i+1), s, "seq %d at position %d", s, i)
	}
	second.NoNotification(t, 100*time.Millisecond)
}

func TestResumeThatCannotRecover(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `history {
  size = 5
}`})
	c := h.Dial(t, h.Token(t, "alice"))
	epoch := c.Subscribe(t, "short")[0].Epoch
	c.MustCall(t, "unsubscribe", map[string]any{"channel": "short"})
	for i := 0; i < 20; i++ {
		h.Publish(t, heraldtest.N("short", "e", "t", fmt.Sprintf(`%d`, i)))
	}

	// Too old: 20 missed, 5 kept.
	subs := c.SubscribeParams(t, map[string]any{"channel": "short", "since": map[string]any{"short": map[string]any{"seq": 2, "epoch": epoch}}})
	require.False(t, *subs[0].Recovered)
	require.Equal(t, uint64(20), subs[0].Seq)
	require.Equal(t, epoch, subs[0].Epoch)
	c.NoNotification(t, 100*time.Millisecond)
	c.MustCall(t, "unsubscribe", map[string]any{"channel": "short"})

	// Within the window: exactly the missed ones.
	subs = c.SubscribeParams(t, map[string]any{"channel": "short", "since": map[string]any{"short": map[string]any{"seq": 17, "epoch": epoch}}})
	require.True(t, *subs[0].Recovered)
	ns := c.Notifications(t, 3)
	require.Equal(t, []uint64{18, 19, 20}, []uint64{ns[0].Seq, ns[1].Seq, ns[2].Seq})
	var v int
	require.NoError(t, json.Unmarshal(ns[0].Object, &v))
	require.Equal(t, 17, v)
	c.MustCall(t, "unsubscribe", map[string]any{"channel": "short"})

	// Another epoch (history lost): not recovered, current position given.
	subs = c.SubscribeParams(t, map[string]any{"channel": "short", "since": map[string]any{"short": map[string]any{"seq": 19, "epoch": "old-epoch"}}})
	require.False(t, *subs[0].Recovered)
	require.Equal(t, epoch, subs[0].Epoch)
	require.Equal(t, uint64(20), subs[0].Seq)
	c.NoNotification(t, 100*time.Millisecond)

	// Held already (the subscribe above): nothing is replayed, and it says
	// whether the client has everything: only when since is the position.
	subs = c.SubscribeParams(t, map[string]any{"channel": "short", "since": map[string]any{"short": map[string]any{"seq": 20, "epoch": epoch}}})
	require.NotNil(t, subs[0].Recovered)
	require.True(t, *subs[0].Recovered)
	subs = c.SubscribeParams(t, map[string]any{"channel": "short", "since": map[string]any{"short": map[string]any{"seq": 18, "epoch": epoch}}})
	require.NotNil(t, subs[0].Recovered)
	require.False(t, *subs[0].Recovered)
	c.NoNotification(t, 100*time.Millisecond)

	// since must name a channel being subscribed.
	require.Equal(t, -32602, c.CallErr(t, "subscribe", map[string]any{"channel": "x", "since": map[string]any{"y": map[string]any{"seq": 1, "epoch": "e"}}}).Code)
}

func TestHistoryTTL(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{HCL: `history {
  size = 100
  ttl  = "300ms"
}`})
	c := h.Dial(t, h.Token(t, "alice"))
	epoch := c.Subscribe(t, "ttl")[0].Epoch
	c.MustCall(t, "unsubscribe", map[string]any{"channel": "ttl"})
	h.Publish(t, heraldtest.N("ttl", "e", "t", `1`))
	time.Sleep(600 * time.Millisecond)
	subs := c.SubscribeParams(t, map[string]any{"channel": "ttl", "since": map[string]any{"ttl": map[string]any{"seq": 0, "epoch": epoch}}})
	require.False(t, *subs[0].Recovered, "a publication older than history.ttl is gone")
}
