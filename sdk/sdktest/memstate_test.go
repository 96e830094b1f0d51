package sdktest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

// watch starts st.Watch(prefix) and returns what it reports; the watch ends
// with the test.
func watch(t *testing.T, st *sdktest.MemState, prefix string) <-chan sdk.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan sdk.Change, 64)
	done := make(chan error, 1)
	go func() { done <- st.Watch(ctx, prefix, func(c sdk.Change) { ch <- c }) }()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

func next(t *testing.T, ch <-chan sdk.Change) sdk.Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(sdktest.Timeout):
		require.FailNow(t, "no change")
		return sdk.Change{}
	}
}

// A key written with a TTL lives until the clock passes it; a write without
// one keeps it; its watchers see it go as a delete.
func TestMemStateTTLRunsOnTheClock(t *testing.T) {
	st := sdktest.NewMemState()
	now := time.Unix(1_700_000_000, 0)
	st.SetClock(func() time.Time { return now })
	ctx := t.Context()
	w := watch(t, st, "lease/")
	require.True(t, next(t, w).Reset)

	r1, err := st.Put(ctx, "lease/a", []byte("a"), sdk.WithTTL(10*time.Second))
	require.NoError(t, err)
	_, err = st.Create(ctx, "lease/b", []byte("b"), sdk.WithTTL(time.Minute))
	require.NoError(t, err)
	_, err = st.Put(ctx, "lease/c", []byte("c"), sdk.WithTTL(time.Second))
	require.NoError(t, err)
	_, err = st.Put(ctx, "lease/c", []byte("c2")) // no TTL any more
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, st.TTL("lease/a"))
	require.Zero(t, st.TTL("lease/c"))
	for range 4 {
		next(t, w)
	}

	now = now.Add(10*time.Second - time.Nanosecond)
	e, err := st.Get(ctx, "lease/a")
	require.NoError(t, err, "not yet expired")
	require.Equal(t, r1, e.Revision)

	now = now.Add(time.Nanosecond)
	_, err = st.Get(ctx, "lease/a")
	require.ErrorIs(t, err, sdk.ErrNotFound, "expired at its TTL")
	c := next(t, w)
	require.Equal(t, "lease/a", c.Key)
	require.True(t, c.Deleted)
	require.Greater(t, c.Revision, r1)
	_, err = st.Create(ctx, "lease/a", []byte("again"))
	require.NoError(t, err, "create over an expired key")
	next(t, w)

	now = now.Add(time.Hour)
	st.ExpireDue()
	c = next(t, w)
	require.Equal(t, sdk.Change{Entry: sdk.Entry{Key: "lease/b", Revision: c.Revision}, Deleted: true}, c)
	require.Equal(t, []string{"lease/a", "lease/c"}, st.Keys(""))

	_, err = st.Put(ctx, "x", nil, sdk.WithTTL(time.Millisecond))
	require.ErrorIs(t, err, sdk.ErrStateInvalid, "a TTL under a second")
}

// Expire ends one key at once, as a node's death ends its lease, and only
// a key that has a TTL.
func TestMemStateExpire(t *testing.T) {
	st := sdktest.NewMemState()
	ctx := t.Context()
	_, err := st.Put(ctx, "lease", []byte("l"), sdk.WithTTL(time.Hour))
	require.NoError(t, err)
	_, err = st.Put(ctx, "plain", []byte("p"))
	require.NoError(t, err)
	require.Error(t, st.Expire("plain"))
	require.Error(t, st.Expire("missing"))
	require.NoError(t, st.Expire("lease"))
	_, err = st.Get(ctx, "lease")
	require.ErrorIs(t, err, sdk.ErrNotFound)
}

// Keys are checked as the host checks them, then by the test's own rule;
// failures, counts and Settle.
func TestMemStateChecksFailsAndCounts(t *testing.T) {
	st := sdktest.NewMemState()
	ctx := t.Context()
	_, err := st.Put(ctx, "a//b", nil)
	require.ErrorIs(t, err, sdk.ErrStateInvalid)
	_, err = st.Put(ctx, "big", make([]byte, sdk.MaxStateValue+1))
	require.ErrorIs(t, err, sdk.ErrStateTooLarge)
	_, err = st.List(ctx, "a")
	require.Error(t, err, "a prefix ends with /")
	st.SetKeyCheck(func(key string) error {
		if key == "forbidden" {
			return errors.New("no")
		}
		return nil
	})
	_, err = st.Get(ctx, "forbidden")
	require.Error(t, err)
	_, err = st.List(ctx, "forbidden/")
	require.Error(t, err)

	boom := errors.New("boom")
	st.SetFailing(boom)
	_, err = st.Get(ctx, "doc/1")
	require.ErrorIs(t, err, boom)
	st.SetFailing(nil)
	st.SetDown(true)
	err = st.Delete(ctx, "doc/1", 0)
	require.ErrorIs(t, err, sdk.ErrStateUnavailable)
	st.SetDown(false)
	_, err = st.List(ctx, "doc/")
	require.NoError(t, err)
	require.Equal(t, 3, st.Calls("doc"))

	w := watch(t, st, "")
	require.True(t, next(t, w).Reset)
	_, err = st.Put(ctx, "doc/1", []byte("v"))
	require.NoError(t, err)
	_, err = st.Settle(sdktest.Timeout)
	require.NoError(t, err)
	require.Equal(t, "doc/1", next(t, w).Key, "handed over by the time Settle returns")
	had, err := st.Settle(sdktest.Timeout)
	require.NoError(t, err)
	require.False(t, had)
}
