package jsstate_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
	"github.com/heraldhq/herald/core/state/jsstate"
)

// clientGoroutines counts the goroutines in this package's code or in the
// NATS client (the in-process server's own come and go on its schedule).
func clientGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "nats-server") {
			continue
		}
		if strings.Contains(g, "herald/core/state/jsstate.") || strings.Contains(g, "nats-io/nats.go") {
			n++
		}
	}
	return n
}

// Lists and watches that end leave no goroutine behind.
func TestNoGoroutineOutlivesListOrWatch(t *testing.T) {
	n := runNATS(t)
	s := open(t, n.connect(t), jsstate.Options{Bucket: "herald_state_leak"})
	ctx := context.Background()
	_, err := s.Put(ctx, "a/b", []byte("x"), 0)
	require.NoError(t, err)
	before := clientGoroutines()

	for i := 0; i < 20; i++ {
		_, err := s.List(ctx, "a/")
		require.NoError(t, err)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Watch(wctx, "a/", func(state.Change) {}) }()
		_, err = s.Put(ctx, "a/c", []byte("y"), 0)
		require.NoError(t, err)
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
	}
	require.Eventually(t, func() bool { return clientGoroutines() <= before },
		30*time.Second, 50*time.Millisecond, "goroutines: %d before", before)
}
