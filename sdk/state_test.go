package sdk_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
)

func stateOf(t *testing.T, p *testPlugin) sdk.State {
	t.Helper()
	st, err := sdk.StateOf(p.host)
	require.NoError(t, err)
	return st
}

func TestStateOverTheHost(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	sdktest.Start(t, p, nil)
	st := stateOf(t, p)
	ctx := context.Background()

	_, err := st.Get(ctx, "a/b")
	require.ErrorIs(t, err, sdk.ErrNotFound)
	r1, err := st.Create(ctx, "a/b", []byte("one"))
	require.NoError(t, err)
	_, err = st.Create(ctx, "a/b", []byte("two"))
	require.ErrorIs(t, err, sdk.ErrConflict)
	r2, err := st.Update(ctx, "a/b", []byte("two"), r1)
	require.NoError(t, err)
	require.Greater(t, r2, r1)
	_, err = st.Update(ctx, "a/b", []byte("three"), r1)
	require.ErrorIs(t, err, sdk.ErrConflict, "a stale revision loses")
	e, err := st.Get(ctx, "a/b")
	require.NoError(t, err)
	require.Equal(t, sdk.Entry{Key: "a/b", Value: []byte("two"), Revision: r2}, e)

	_, err = st.Put(ctx, "a/c", []byte("x"))
	require.NoError(t, err)
	_, err = st.Put(ctx, "z", []byte("y"))
	require.NoError(t, err)
	list, err := st.List(ctx, "a/")
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, []string{"a/b", "a/c"}, []string{list[0].Key, list[1].Key})

	require.ErrorIs(t, st.Delete(ctx, "a/b", r1), sdk.ErrConflict)
	require.NoError(t, st.Delete(ctx, "a/b", r2))
	require.NoError(t, st.Delete(ctx, "a/b", 0), "deleting a missing key is no error")

	_, err = st.Put(ctx, "bad key", nil)
	require.ErrorIs(t, err, sdk.ErrStateInvalid)
	_, err = st.List(ctx, "a")
	require.ErrorIs(t, err, sdk.ErrStateInvalid, "a prefix ends with /")
	_, err = st.Put(ctx, "big", make([]byte, sdk.MaxStateValue+1))
	require.ErrorIs(t, err, sdk.ErrStateTooLarge)
}

func TestStateWatchStartsWithAResetThenSeesChanges(t *testing.T) {
	sdktest.CheckGoroutines(t)
	p := &testPlugin{}
	sdktest.Start(t, p, nil)
	st := stateOf(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan sdk.Change, 16)
	done := make(chan error, 1)
	go func() { done <- st.Watch(ctx, "w/", func(c sdk.Change) { changes <- c }) }()
	require.True(t, (<-changes).Reset, "the first change says the watch is in place")
	_, err := st.Put(ctx, "other", []byte("-"))
	require.NoError(t, err)
	rev, err := st.Put(ctx, "w/1", []byte("v"))
	require.NoError(t, err)
	require.NoError(t, st.Delete(ctx, "w/1", 0))
	c := <-changes
	require.Equal(t, sdk.Change{Entry: sdk.Entry{Key: "w/1", Value: []byte("v"), Revision: rev}}, c)
	c = <-changes
	require.True(t, c.Deleted)
	require.Equal(t, "w/1", c.Key)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestLeaseHasOneHolderAcrossProcesses(t *testing.T) {
	shared := sdktest.NewState()
	p1, p2 := &testPlugin{}, &testPlugin{}
	shared.Start(t, p1, nil)
	shared.Start(t, p2, nil)
	ctx := context.Background()
	l, err := sdk.AcquireLease(ctx, stateOf(t, p1), "lease/writer", "node-1", time.Second)
	require.NoError(t, err)
	_, err = sdk.AcquireLease(ctx, stateOf(t, p2), "lease/writer", "node-2", time.Second)
	require.ErrorIs(t, err, sdk.ErrLeaseHeld)
	require.ErrorContains(t, err, "node-1")
	require.NoError(t, l.Renew(ctx))
	require.NoError(t, l.Release(ctx))
	l2, err := sdk.AcquireLease(ctx, stateOf(t, p2), "lease/writer", "node-2", time.Second)
	require.NoError(t, err)
	// Unrenewed, it expires and the other takes it.
	require.Eventually(t, func() bool {
		_, err := sdk.AcquireLease(ctx, stateOf(t, p1), "lease/writer", "node-1", time.Second)
		return err == nil
	}, 10*time.Second, 50*time.Millisecond)
	require.Error(t, l2.Renew(ctx), "a lease that expired and was taken cannot be renewed")
}

func TestStateCompareAndSetCountsEveryIncrement(t *testing.T) {
	shared := sdktest.NewState()
	p1, p2 := &testPlugin{}, &testPlugin{}
	shared.Start(t, p1, nil)
	shared.Start(t, p2, nil)
	ctx := context.Background()
	states := []sdk.State{stateOf(t, p1), stateOf(t, p2)}
	_, err := states[0].Put(ctx, "n", []byte{0})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := states[i%2]
			for j := 0; j < 10; j++ {
				for {
					e, err := st.Get(ctx, "n")
					require.NoError(t, err)
					if _, err := st.Update(ctx, "n", []byte{e.Value[0] + 1}, e.Revision); err == nil {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, []byte{80}, shared.Entries()["n"])
}
