package boltstate_test

import (
	"context"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/boltstate"
)

// clock is a settable clock for TTLs.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func open(t *testing.T, path string, opts boltstate.Options) *boltstate.Store {
	t.Helper()
	s, err := boltstate.Open(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// watchAll runs Watch("") until the test ends and returns once the watch is
// live; f never sees the sync key written to learn that.
func watchAll(t *testing.T, s *boltstate.Store, f func(state.Change)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	live := make(chan struct{}, 1)
	var isLive atomic.Bool
	go func() {
		done <- s.Watch(ctx, "", func(c state.Change) {
			if c.Key == "~sync" {
				isLive.Store(true)
				select {
				case live <- struct{}{}:
				default:
				}
				return
			}
			if !isLive.Load() {
				return // the Reset that starts every watch, and nothing else before the sync
			}
			f(c)
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.After(30 * time.Second)
	for {
		_, err := s.Put(context.Background(), "~sync", nil, 0)
		require.NoError(t, err)
		select {
		case <-live:
			return
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			require.FailNow(t, "the watch never went live")
		}
	}
}

// next waits for the next change.
func next(t *testing.T, changes chan state.Change) state.Change {
	t.Helper()
	select {
	case c := <-changes:
		return c
	case <-time.After(30 * time.Second):
		require.FailNow(t, "no change reported")
		return state.Change{}
	}
}

// An expired entry is absent for every read and write at once, before the
// sweeper removed it; the sweep then reports it as Deleted.
func TestExpiredIsAbsentBeforeTheSweep(t *testing.T) {
	c := &clock{now: time.Unix(1_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "state.db"), boltstate.Options{Now: c.Now, MaxBytes: 100})
	changes := make(chan state.Change, 16)
	watchAll(t, s, func(ch state.Change) { changes <- ch })
	ctx := context.Background()

	rev, err := s.Put(ctx, "k/lease", []byte("0123456789"), time.Hour)
	require.NoError(t, err)
	c.add(2 * time.Hour) // the sweeper still sleeps on the real clock

	_, err = s.Get(ctx, "k/lease")
	require.ErrorIs(t, err, state.ErrNotFound)
	got, err := s.List(ctx, "k/")
	require.NoError(t, err)
	require.Empty(t, got)
	_, err = s.Update(ctx, "k/lease", []byte("x"), rev, 0)
	require.ErrorIs(t, err, state.ErrNotFound)
	// The expired entry's bytes do not stand in the way of a write
	// ("~sync" holds 5, "k/big" 5+80, "k/lease" 7).
	_, err = s.Put(ctx, "k/big", make([]byte, 80), 0)
	require.NoError(t, err)
	created, err := s.Create(ctx, "k/lease", nil, time.Hour)
	require.NoError(t, err, "create over an expired entry")

	// The write that made room swept the expired entry first: its
	// deletion comes before the writes that followed.
	var seen []string
	for len(seen) < 4 {
		select {
		case ch := <-changes:
			seen = append(seen, ch.Key+" "+strconv.FormatBool(ch.Deleted))
			if ch.Key == "k/lease" && !ch.Deleted && len(seen) == 4 {
				require.Equal(t, created, ch.Revision)
			}
		case <-time.After(30 * time.Second):
			require.FailNow(t, "missing changes", "%v", seen)
		}
	}
	require.Equal(t, []string{"k/lease false", "k/lease true", "k/big false", "k/lease false"}, seen)
}

// The sweeper removes what expires without any read or write touching it.
func TestSweeperReportsExpiry(t *testing.T) {
	c := &clock{now: time.Unix(1_000_000, 0)}
	s := open(t, filepath.Join(t.TempDir(), "state.db"), boltstate.Options{Now: c.Now})
	changes := make(chan state.Change, 16)
	watchAll(t, s, func(ch state.Change) { changes <- ch })
	ctx := context.Background()

	_, err := s.Put(ctx, "a", []byte("x"), time.Hour)
	require.NoError(t, err)
	require.Equal(t, "a", next(t, changes).Key)
	c.add(2 * time.Hour)
	// A write with a TTL wakes the sweeper, which finds "a" due by now.
	_, err = s.Put(ctx, "b", []byte("x"), 3*time.Hour)
	require.NoError(t, err)
	require.Equal(t, "b", next(t, changes).Key)
	select {
	case ch := <-changes:
		require.Equal(t, "a", ch.Key)
		require.True(t, ch.Deleted)
	case <-time.After(30 * time.Second):
		require.FailNow(t, "the sweeper never removed the expired entry")
	}
	_, err = s.Get(ctx, "b")
	require.NoError(t, err)
}

// A watcher that does not keep up gets a Reset and never holds up writers.
func TestSlowWatcherGetsReset(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), boltstate.Options{WatchBuffer: 4})
	release := make(chan struct{})
	got := make(chan state.Change, 64)
	first := true
	watchAll(t, s, func(ch state.Change) {
		if first {
			first = false
			<-release // stuck while the writes below go on
		}
		got <- ch
	})
	ctx := context.Background()
	// Wait until the watcher is stuck in f.
	_, err := s.Put(ctx, "k", []byte("0"), 0)
	require.NoError(t, err)
	for i := 1; i <= 20; i++ {
		_, err = s.Put(ctx, "k", []byte(strconv.Itoa(i)), 0)
		require.NoError(t, err, "a stuck watcher never blocks a write")
	}
	close(release)
	rev, err := s.Put(ctx, "k", []byte("after"), 0)
	require.NoError(t, err)
	var changes []state.Change
	for {
		c := next(t, got)
		changes = append(changes, c)
		if c.Revision == rev {
			break
		}
		require.Less(t, len(changes), 30, "%+v", changes)
	}
	resets := 0
	for _, c := range changes {
		if c.Reset {
			resets++
		}
	}
	require.Equal(t, 1, resets, "%+v", changes)
	require.Less(t, len(changes), 21, "missed changes are not delivered after the reset")
}

func TestOpenTimesOutWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	open(t, path, boltstate.Options{})
	_, err := boltstate.Open(path, boltstate.Options{OpenTimeout: 100 * time.Millisecond})
	require.ErrorContains(t, err, "still locked")
}

func TestCloseEndsWatchAndRefusesWork(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "state.db"), boltstate.Options{})
	done := make(chan error, 1)
	go func() { done <- s.Watch(context.Background(), "", func(state.Change) {}) }()
	require.NoError(t, s.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, state.ErrClosed)
	case <-time.After(30 * time.Second):
		require.FailNow(t, "watch outlived Close")
	}
	_, err := s.Put(context.Background(), "k", nil, 0)
	require.ErrorIs(t, err, state.ErrClosed)
	_, err = s.Get(context.Background(), "k")
	require.ErrorIs(t, err, state.ErrClosed)
	require.NoError(t, s.Close(), "a second Close")
}

// storeGoroutines counts the goroutines running this package's code.
func storeGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "herald/core/state/boltstate.(*Store)") {
			n++
		}
	}
	return n
}

// Close ends the sweeper, and ended watches leave nothing behind.
func TestNoGoroutineOutlivesTheStore(t *testing.T) {
	s, err := boltstate.Open(filepath.Join(t.TempDir(), "state.db"), boltstate.Options{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return storeGoroutines() == 1 }, 30*time.Second, 10*time.Millisecond, "the sweeper")
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Watch(ctx, "", func(state.Change) {}) }()
		_, err := s.Put(context.Background(), "k", nil, time.Hour)
		require.NoError(t, err)
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	}
	require.NoError(t, s.Close())
	// Close returns once the sweeper has closed sweepDone; the goroutine
	// itself leaves a moment later, so its end is waited for, not assumed.
	require.Eventually(t, func() bool { return storeGoroutines() == 0 }, 30*time.Second, time.Millisecond,
		"the sweeper or a watch outlived Close")
}
