package client

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// logLocal writes each call of the local interface and each signal to one
// channel, so that a test sees their order.
type logLocal struct{ log chan string }

func (l *logLocal) OnNotificationReceived(_ context.Context, b Batch) error {
	parts := make([]string, len(b.Notifications))
	for i, n := range b.Notifications {
		parts[i] = fmt.Sprintf("%s %s %d", n.Channel, n.Event, n.Seq)
	}
	l.log <- strings.Join(parts, ", ")
	return nil
}

func (l *logLocal) options(problems chan error) Options {
	return Options{
		Local:         l,
		MinBackoff:    10 * time.Millisecond,
		MaxBackoff:    50 * time.Millisecond,
		OnUnrecovered: func(chs []string) { l.log <- "unrecovered " + strings.Join(chs, " ") },
		OnUnsubscribed: func(us []Unsubscribed) {
			parts := make([]string, len(us))
			for i, u := range us {
				parts[i] = u.Channel + ": " + u.Reason
			}
			l.log <- "unsubscribed " + strings.Join(parts, "; ")
		},
		OnError: func(err error) { problems <- err },
	}
}

func note(channel, event string, seq int, object any) map[string]any {
	return map[string]any{"channel": channel, "seq": seq, "event": event, "object_type": "m", "object": object}
}

// A $server resync moves its channels to the position it gives (the next
// notification, seq+1, is no gap) and reaches the app as unrecovered does,
// between what came before it and what comes after; a $server
// unsubscribed forgets its channels and reaches the app after their last
// notifications. A reconnect resumes from the resync's position and leaves
// the ended channel out.
func TestResyncAndUnsubscribedInStreamOrder(t *testing.T) {
	f := startFake(t)
	l := &logLocal{log: make(chan string, 20)}
	problems := make(chan error, 10)
	c, err := Dial(context.Background(), f.url(), l.options(problems))
	require.NoError(t, err)
	defer c.Close()
	ws := next(t, f.conns)
	_, err = c.Subscribe(context.Background(), "news", "other")
	require.NoError(t, err)
	next(t, f.subs)

	f.write(t, ws, map[string]any{"jsonrpc": "2.0", "method": "onNotificationReceived", "params": map[string]any{"notifications": []any{
		note("news", "new", 6, map[string]any{}),
		note(ServerChannel, "resync", 1, map[string]any{"channels": []any{map[string]any{"channel": "news", "seq": 10, "epoch": "e2"}}}),
		note("news", "new", 11, map[string]any{}),
		note("other", "new", 6, map[string]any{}),
		note(ServerChannel, "unsubscribed", 2, map[string]any{"channels": []any{map[string]any{"channel": "other", "reason": "ended by plugin x"}}}),
	}}})
	require.Equal(t, "news new 6, $server resync 1", next(t, l.log))
	require.Equal(t, "unrecovered news", next(t, l.log))
	require.Equal(t, "news new 11, other new 6, $server unsubscribed 2", next(t, l.log))
	require.Equal(t, "unsubscribed other: ended by plugin x", next(t, l.log))
	pos, ok := c.Position("news")
	require.True(t, ok)
	require.Equal(t, Position{Seq: 11, Epoch: "e2"}, pos)
	require.Equal(t, []string{"news"}, c.Channels())

	require.NoError(t, ws.Close()) // the connection is lost
	params := next(t, f.subs)
	require.Equal(t, []any{"news"}, params["channels"])
	require.Equal(t, map[string]any{"news": map[string]any{"seq": float64(11), "epoch": "e2"}}, params["since"])
	select {
	case err := <-problems:
		t.Fatalf("unexpected error: %v", err)
	default:
	}
}

// A re-subscribe after a reconnect that herald refuses for some channels
// drops those (told to the app as unsubscribed) and asks again for the
// others, as often as it takes: here twice refused, then taken.
func TestResubscribeDropsRefusedChannelsUntilTheRestIsTaken(t *testing.T) {
	f := startFake(t)
	f.refuse = []string{"a", "b"}
	l := &logLocal{log: make(chan string, 20)}
	problems := make(chan error, 10)
	states := make(chan State, 20)
	opts := l.options(problems)
	opts.OnState = func(s State, _ error) { states <- s }
	c, err := Dial(context.Background(), f.url(), opts)
	require.NoError(t, err)
	defer c.Close()
	ws := next(t, f.conns)
	_, err = c.Subscribe(context.Background(), "a", "b", "c")
	require.NoError(t, err)
	next(t, f.subs)

	require.NoError(t, ws.Close())
	require.ElementsMatch(t, []any{"a", "b", "c"}, next(t, f.subs)["channels"])
	require.ElementsMatch(t, []any{"b", "c"}, next(t, f.subs)["channels"])
	require.Equal(t, []any{"c"}, next(t, f.subs)["channels"])
	require.Equal(t, "unsubscribed a: re-subscribe after a reconnect refused (-32003): not any more", next(t, l.log))
	require.Equal(t, "unsubscribed b: re-subscribe after a reconnect refused (-32003): not any more", next(t, l.log))
	for s := next(t, states); s != Reconnecting; s = next(t, states) {
	}
	require.Equal(t, Connected, next(t, states), "connected with what herald took")
	require.Equal(t, []string{"c"}, c.Channels())
	require.Len(t, problems, 2, "each refusal is reported as an error too")
}
