package statetest

import (
	"context"
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
	skip    string // the sentinel key, never reported by next
}

// Watch starts s.Watch(prefix) and waits until it is live: it writes the
// key prefix+"~ready" until the watch reports that very write. The watch
// ends with the test.
func Watch(t *testing.T, s state.Store, prefix string) *Recorder {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{
		changes: make(chan state.Change, 1<<14),
		done:    make(chan error, 1),
		cancel:  cancel,
		skip:    prefix + sentinel,
	}
	go func() { r.done <- s.Watch(ctx, prefix, func(c state.Change) { r.changes <- c }) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	deadline := time.Now().Add(patience)
	for {
		rev, err := s.Put(context.Background(), r.skip, []byte("x"), 0)
		require.NoError(t, err)
		if r.seen(t, rev) {
			return r
		}
		require.True(t, time.Now().Before(deadline), "watch of %q never reported a write", prefix)
	}
}

// seen waits a moment for the sentinel's write rev; earlier sentinel writes
// are passed over.
func (r *Recorder) seen(t *testing.T, rev uint64) bool {
	timer := time.NewTimer(200 * time.Millisecond)
	defer timer.Stop()
	for {
		select {
		case c := <-r.changes:
			if c.Key == r.skip && c.Revision == rev {
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
