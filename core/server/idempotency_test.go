package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestIdempotencyScopedByAPIKey(t *testing.T) {
	c := newIdempotency(time.Hour, 1<<20)
	var runs atomic.Int64
	run := func() (int, any) { return http.StatusOK, map[string]int64{"run": runs.Add(1)} }

	_, a1 := c.do("key-a", "k", run)
	_, a2 := c.do("key-a", "k", run)
	_, b1 := c.do("key-b", "k", run)
	require.Equal(t, a1, a2, "a retry with the same API key gets the first answer")
	require.NotEqual(t, a1, b1, "another API key never sees it")
	require.Equal(t, int64(2), runs.Load())
}

func TestIdempotencyFailedRunIsNotKept(t *testing.T) {
	c := newIdempotency(time.Hour, 1<<20)
	status, _ := c.do("a", "k", func() (int, any) { return http.StatusInternalServerError, "failed" })
	require.Equal(t, http.StatusInternalServerError, status)
	status, reply := c.do("a", "k", func() (int, any) { return http.StatusOK, "ok" })
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "\"ok\"\n", string(reply))
	n, _ := c.size()
	require.Equal(t, 1, n)
}

func TestIdempotencyBoundedInBytes(t *testing.T) {
	const max = 64 << 10
	c := newIdempotency(time.Hour, max)
	big := strings.Repeat("x", 1000)
	for i := 0; i < 1000; i++ {
		c.do("a", fmt.Sprint("k", i), func() (int, any) { return http.StatusOK, big })
		_, bytes := c.size()
		require.LessOrEqual(t, bytes, int64(max), "after %d answers", i+1)
	}
	n, _ := c.size()
	require.Less(t, n, 1000)
	require.Positive(t, n)

	// The newest are kept, the oldest forgotten.
	var ran bool
	c.do("a", "k999", func() (int, any) { ran = true; return http.StatusOK, big })
	require.False(t, ran, "the newest answer is remembered")
	c.do("a", "k0", func() (int, any) { ran = true; return http.StatusOK, big })
	require.True(t, ran, "the oldest answer was forgotten")
}

// history.ttl = 0 keeps history with no time limit, and so the keys: a
// retry, however late, gets the first answer; only the byte bound forgets,
// oldest first.
func TestIdempotencyZeroTTLHasNoTimeLimit(t *testing.T) {
	const max = 64 << 10
	c := newIdempotency(0, max)
	var runs atomic.Int64
	run := func() (int, any) { return http.StatusOK, map[string]int64{"run": runs.Add(1)} }
	_, first := c.do("a", "k", run)
	_, again := c.do("a", "k", run)
	require.Equal(t, first, again, "a retry gets the first answer")
	require.Equal(t, int64(1), runs.Load(), "the retry ran nothing")

	big := strings.Repeat("x", 1000)
	for i := 0; i < 1000; i++ {
		c.do("a", fmt.Sprint("b", i), func() (int, any) { return http.StatusOK, big })
		_, bytes := c.size()
		require.LessOrEqual(t, bytes, int64(max), "after %d answers", i+1)
	}
	var ran bool
	c.do("a", "b999", func() (int, any) { ran = true; return http.StatusOK, big })
	require.False(t, ran, "the newest answer is remembered")
	c.do("a", "k", run)
	require.Equal(t, int64(2), runs.Load(), "the oldest answer was forgotten for the byte bound")
}
