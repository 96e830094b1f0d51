package jsstate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/jsstate"
)

// A watch that is behind (its f busy, so the server holds back its
// consumer) while the keys it has not been handed yet are written again or
// deleted: the bucket keeps one message per key, so the messages it had
// still to deliver are gone. It must then say so with a Reset; it must not
// skip them silently. (A loaded R3 cluster's consumer can lag the same way,
// which is how TestConformanceReplicated/Watch once missed a change.)
func TestWatchBehindOverwrittenKeysResets(t *testing.T) {
	n := runNATS(t)
	s := open(t, n.connect(t), jsstate.Options{Bucket: fmt.Sprintf("herald_state_b%d", buckets.Add(1))})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	changes := make(chan state.Change, 1<<12)
	release := make(chan struct{})
	held := false
	done := make(chan error, 1)
	wctx, stop := context.WithCancel(ctx)
	go func() {
		done <- s.Watch(wctx, "k/", func(c state.Change) {
			changes <- c
			if !c.Reset && !held {
				held = true
				<-release // busy until the writes below are made
			}
		})
	}()
	t.Cleanup(func() { stop(); <-done })
	require.True(t, (<-changes).Reset)

	// Enough bytes that the server stops pushing to the busy watch: more
	// than nats.go buffers for it (256 entries) and the consumer's flow
	// control window (2 MiB).
	value := []byte(strings.Repeat("v", 8<<10))
	const keys = 1000
	first := make(map[uint64]string)
	for i := range keys {
		key := fmt.Sprintf("k/%d", i)
		rev, err := s.Put(ctx, key, value, 0)
		require.NoError(t, err)
		first[rev] = key
	}
	for i := range keys {
		key := fmt.Sprintf("k/%d", i)
		if i%2 == 0 {
			require.NoError(t, s.Delete(ctx, key, 0))
		} else {
			_, err := s.Put(ctx, key, []byte("again"), 0)
			require.NoError(t, err)
		}
	}
	last, err := s.Put(ctx, "k/last", []byte("x"), 0)
	require.NoError(t, err)
	close(release)

	seen := map[uint64]bool{}
	reset := false
	for {
		select {
		case c := <-changes:
			if c.Reset {
				reset = true
			}
			seen[c.Revision] = true
			if c.Revision == last {
				if reset {
					return // said, as allowed
				}
				for rev, key := range first {
					require.True(t, seen[rev], "the write of %s at %d was skipped without a Reset", key, rev)
				}
				return
			}
		case err := <-done:
			require.FailNow(t, "watch ended", "%v", err)
		case <-ctx.Done():
			require.FailNow(t, "the last write was never seen")
		}
	}
}
