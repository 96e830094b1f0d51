package statetest

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
)

// patience bounds every wait for an event: generous, since a case only
// waits this long when it fails.
const patience = 30 * time.Second

// Recorder keeps what one Watch reports.
type Recorder struct {
	changes chan state.Change
	done    chan error
	cancel  context.CancelFunc
	prefix  string
}

// Watch starts s.Watch(prefix) and waits until it is live: it writes a
// sentinel key (prefix+"~ready", then prefix+"1~ready" and so on) until the
// watch reports that very write. Each attempt writes a key of its own: a
// rewrite of one the watch had not reported yet would make a store that
// keeps one value a key report a Reset (see state.Store.Watch). The watch
// ends with the test.
func Watch(t *testing.T, s state.Store, prefix string) *Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		changes: make(chan state.Change, 1<<14),
		done:    make(chan error, 1),
		cancel:  cancel,
		prefix:  prefix,
	}
	go func() { r.done <- s.Watch(ctx, prefix, func(c state.Change) { r.changes <- c }) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	deadline := time.Now().Add(patience)
	for attempt := 0; ; attempt++ {
		key := prefix + sentinel
		if attempt > 0 {
			key = prefix + strconv.Itoa(attempt) + sentinel
		}
		rev, err := s.Put(context.Background(), key, []byte("x"), 0)
		require.NoError(t, err)
		if r.seen(t, key, rev) {
			return r
		}
		require.True(t, time.Now().Before(deadline), "watch of %q never reported a write", prefix)
	}
}

// seen waits a moment for the sentinel's write rev of key; earlier
// sentinel writes are passed over.
func (r *Recorder) seen(t *testing.T, key string, rev uint64) bool {
	timer := time.NewTimer(200 * time.Millisecond)
	defer timer.Stop()
	for {
		select {
		case c := <-r.changes:
			if c.Key == key && c.Revision == rev {
				return true
			}
		case err := <-r.done:
			require.FailNow(t, "watch ended early", "%v", err)
		case <-timer.C:
			return false
		}
	}
}

// sentinel ends the keys watch writes to learn that a watch is live.
const sentinel = "~ready"

// withoutSentinels is keys without the sentinel keys Watch wrote.
func withoutSentinels(keys []string) []string {
	return slices.DeleteFunc(keys, func(k string) bool { return strings.HasSuffix(k, sentinel) })
}

// Next returns the next change other than a sentinel's.
func (r *Recorder) Next(t *testing.T) state.Change {
	t.Helper()
	timer := time.NewTimer(patience)
	defer timer.Stop()
	for {
		select {
		case c := <-r.changes:
			if strings.HasSuffix(c.Key, sentinel) && !c.Reset {
				continue // this watch's or another's
			}
			return c
		case err := <-r.done:
			require.FailNow(t, "watch ended early", "%v", err)
		case <-timer.C:
			require.FailNow(t, "no change reported", "waited %v", patience)
		}
	}
}

// await reads changes up to the one that reports key's write rev; none
// on the way may be a Reset.
func (r *Recorder) await(t *testing.T, key string, rev uint64) {
	t.Helper()
	for {
		c := r.Next(t)
		require.False(t, c.Reset, "a Reset before the write of %q at %d was reported", key, rev)
		if c.Key == key && c.Revision == rev {
			return
		}
	}
}

// until returns the changes up to and including the first one for which
// stop is true.
func (r *Recorder) until(t *testing.T, stop func(state.Change) bool) []state.Change {
	t.Helper()
	var out []state.Change
	for {
		require.Less(t, len(out), 10000, "the awaited change never came")
		c := r.Next(t)
		out = append(out, c)
		if stop(c) {
			return out
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	t.Cleanup(cancel)
	return ctx
}

func get(t *testing.T, s state.Store, key string) state.Entry {
	t.Helper()
	e, err := s.Get(ctxT(t), key)
	require.NoError(t, err, "get %q", key)
	return e
}

func put(t *testing.T, s state.Store, key, value string) uint64 {
	t.Helper()
	rev, err := s.Put(ctxT(t), key, []byte(value), 0)
	require.NoError(t, err, "put %q", key)
	require.NotZero(t, rev, "put %q", key)
	return rev
}

func keys(entries []state.Entry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Key)
	}
	return out
}
