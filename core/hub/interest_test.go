package hub_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
)

// interested is a memory broker that records the hub's Watch and Unwatch
// calls and the history reads, in order.
type interested struct {
	*broker.Memory
	mu  sync.Mutex
	log []string
}

func (b *interested) note(s string) {
	b.mu.Lock()
	b.log = append(b.log, s)
	b.mu.Unlock()
}
func (b *interested) Watch(ch string)   { b.note("watch " + ch) }
func (b *interested) Unwatch(ch string) { b.note("unwatch " + ch) }
func (b *interested) Position(ctx context.Context, ch string) (broker.Position, error) {
	b.note("position " + ch)
	return b.Memory.Position(ctx, ch)
}

func TestTheHubWatchesAChannelBeforeReadingItsHistoryAndWhileItHasSubscribers(t *testing.T) {
	b := &interested{Memory: broker.NewMemory(broker.MemoryOptions{HistorySize: 10})}
	h := hub.New(b)
	b.SetHandler(h)
	ctx := context.Background()
	s1, s2 := &sink{uid: "a"}, &sink{uid: "b"}
	j1, err := h.Subscribe(ctx, s1, "c", nil)
	require.NoError(t, err)
	j1.Activate()
	j2, err := h.Subscribe(ctx, s2, "c", nil)
	require.NoError(t, err)
	j2.Activate()
	require.True(t, h.Unsubscribe(s1, "c"))
	require.True(t, h.Unsubscribe(s2, "c"))
	j3, err := h.Subscribe(ctx, s1, "c", nil)
	require.NoError(t, err)
	j3.Cancel()
	require.Equal(t, []string{
		"watch c", "position c", // watched before the position is read
		"position c", // a second subscriber: already watched
		"unwatch c",  // the last one left
		"watch c", "position c", "unwatch c",
	}, b.log)
}
