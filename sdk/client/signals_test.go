package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
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

func refusal(channel string, code int) map[string]any {
	return map[string]any{"channel": channel, "code": code, "reason": "scripted"}
}

// asked is what a scripted fake herald was asked to resume: the
// connection, the channels (sorted) and their since.
type asked struct {
	conn     int
	channels string
	since    map[string]any
}

func record(log chan asked, conn int, channels []any, since map[string]any) {
	names := make([]string, len(channels))
	for i, ch := range channels {
		names[i] = ch.(string)
	}
	slices.Sort(names)
	log <- asked{conn: conn, channels: strings.Join(names, " "), since: since}
}

// A re-subscribe after a reconnect refused for x with -32050 (its plugin
// is restarting) and for y with -32003: y is dropped and reported, z goes
// live at once, and x is kept and asked again on the same connection from
// its position (each unavailable answer reported through OnError, never
// through OnUnsubscribed) until herald takes it; its notifications then
// reach the app.
func TestResubscribeKeepsChannelsWhosePluginIsUnavailable(t *testing.T) {
	f := startFake(t)
	log := make(chan asked, 100)
	var mu sync.Mutex
	xRefusals := 0
	f.script = func(conn int, channels []any, since map[string]any) []map[string]any {
		record(log, conn, channels, since)
		var out []map[string]any
		for _, ch := range channels {
			switch ch {
			case "x":
				mu.Lock()
				xRefusals++
				n := xRefusals
				mu.Unlock()
				if n <= 2 { // the re-subscribe, then the first retry
					out = append(out, refusal("x", CodePluginUnavailable))
				}
			case "y":
				out = append(out, refusal("y", CodeForbidden))
			}
		}
		return out
	}
	l := &logLocal{log: make(chan string, 20)}
	problems := make(chan error, 20)
	c, err := Dial(context.Background(), f.url(), l.options(problems))
	require.NoError(t, err)
	defer c.Close()
	ws := next(t, f.conns)
	_, err = c.Subscribe(context.Background(), "x", "y", "z")
	require.NoError(t, err)
	next(t, f.subs)
	f.write(t, ws, map[string]any{"jsonrpc": "2.0", "method": "onNotificationReceived", "params": map[string]any{"notifications": []any{note("x", "new", 6, map[string]any{})}}})
	require.Equal(t, "x new 6", next(t, l.log))

	require.NoError(t, ws.Close()) // the connection is lost
	ws = next(t, f.conns)
	pos := func(seq int) map[string]any { return map[string]any{"seq": float64(seq), "epoch": "e1"} }
	require.Equal(t, asked{2, "x y z", map[string]any{"x": pos(6), "y": pos(5), "z": pos(5)}}, next(t, log))
	require.Equal(t, asked{2, "z", map[string]any{"z": pos(5)}}, next(t, log), "z is re-subscribed at once")
	require.Equal(t, asked{2, "x", map[string]any{"x": pos(6)}}, next(t, log), "x is asked again, on the same connection")
	require.Equal(t, asked{2, "x", map[string]any{"x": pos(6)}}, next(t, log), "and again, until herald takes it")
	require.Equal(t, "unsubscribed y: re-subscribe after a reconnect refused (-32003): scripted", next(t, l.log))

	f.write(t, ws, map[string]any{"jsonrpc": "2.0", "method": "onNotificationReceived", "params": map[string]any{"notifications": []any{note("x", "new", 7, map[string]any{})}}})
	require.Equal(t, "x new 7", next(t, l.log), "x resumed: its notifications are delivered")
	got, ok := c.Position("x")
	require.True(t, ok)
	require.Equal(t, Position{Seq: 7, Epoch: "e1"}, got)
	chs := c.Channels()
	slices.Sort(chs)
	require.Equal(t, []string{"x", "z"}, chs)
	require.Equal(t, Connected, c.State())

	var unavailable, dropped int
	for len(problems) > 0 {
		err := <-problems
		var rerr *Error
		require.True(t, errors.As(err, &rerr), "%v", err)
		switch {
		case strings.Contains(err.Error(), `plugin unavailable for ["x"]`):
			unavailable++
		case strings.Contains(err.Error(), "channels dropped"):
			dropped++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 2, unavailable, "one error per attempt herald answered -32050")
	require.Equal(t, 1, dropped)
}

// The attempts to get a channel whose plugin is unavailable belong to the
// connection: when it ends, the next connection's re-subscribe asks for the
// channel again (with the others), and the attempts go on there; Close
// ends them.
func TestUnavailableChannelRetriesEndWithTheirConnection(t *testing.T) {
	f := startFake(t)
	log := make(chan asked, 1000)
	f.script = func(conn int, channels []any, since map[string]any) []map[string]any {
		record(log, conn, channels, since)
		if slices.Contains(channels, any("x")) {
			return []map[string]any{refusal("x", CodePluginUnavailable)}
		}
		return nil
	}
	l := &logLocal{log: make(chan string, 20)}
	problems := make(chan error, 1000)
	c, err := Dial(context.Background(), f.url(), l.options(problems))
	require.NoError(t, err)
	ws := next(t, f.conns)
	_, err = c.Subscribe(context.Background(), "x", "z")
	require.NoError(t, err)
	next(t, f.subs)

	require.NoError(t, ws.Close())
	ws = next(t, f.conns)
	require.Equal(t, asked{conn: 2, channels: "x z"}, without(next(t, log)))
	require.Equal(t, asked{conn: 2, channels: "z"}, without(next(t, log)))
	require.Equal(t, asked{conn: 2, channels: "x"}, without(next(t, log)))

	require.NoError(t, ws.Close()) // the connection ends while x waits
	next(t, f.conns)
	on3 := func() asked { // skipping the attempts made on the old connection
		for {
			a := without(next(t, log))
			if a.conn != 2 {
				return a
			}
			require.Equal(t, "x", a.channels)
		}
	}
	require.Equal(t, asked{conn: 3, channels: "x z"}, on3(), "the reconnect asks for x again, with the others")
	require.Equal(t, asked{conn: 3, channels: "z"}, on3())
	require.Equal(t, asked{conn: 3, channels: "x"}, on3(), "and the attempts go on on the new connection")

	require.NoError(t, c.Close())
	// Close waits for them; a goroutine still leaves a moment after the
	// Done that released Close, so its end is waited for.
	require.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "(*Client).hold") && !strings.Contains(stacks, "(*Client).retryWaiting")
	}, 10*time.Second, time.Millisecond, "a retry of the waiting channels outlived Close")
	require.Empty(t, drain(l.log), "x is never reported unsubscribed")
}

func without(a asked) asked {
	a.since = nil
	return a
}

func drain(ch chan string) []string {
	var out []string
	for len(ch) > 0 {
		out = append(out, <-ch)
	}
	return out
}
