package main_test

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/sdk/client"
)

// The persistent publishing forms against the real binary: the SDK's
// StreamPublisher over GET /v1/publish/ws, and Publisher over h2c.
func TestPublishPersistentForms(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	c := h.Dial(t, h.Token(t, "alice"))
	c.Subscribe(t, "news", "sports")
	ctx, cancel := context.WithTimeout(context.Background(), heraldtest.Timeout)
	defer cancel()

	t.Run("api key", func(t *testing.T) {
		_, err := client.DialPublisher(ctx, h.URL, "wrong")
		var ae *client.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, http.StatusUnauthorized, ae.Status)
	})

	t.Run("stream publisher, concurrent callers", func(t *testing.T) {
		p, err := client.DialPublisher(ctx, "ws://"+h.Addr+client.PublishPath, heraldtest.APIKey)
		require.NoError(t, err)
		defer p.Close()
		const callers, each = 8, 25
		var wg sync.WaitGroup
		var mu sync.Mutex
		ids := map[string]bool{}
		for g := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					res, err := p.Publish(ctx, client.Publication{Channel: "news", Event: "e", ObjectType: "t", Object: map[string]int{"g": g, "i": i}})
					if !publishOK(t, err == nil, "publish: %v", err) {
						return
					}
					mu.Lock()
					ids[res[0].ID] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Len(t, ids, callers*each)
		got := c.Notifications(t, callers*each)
		seqs := make([]int, len(got))
		for i, n := range got {
			require.True(t, ids[n.ID], "delivered %s was answered to a caller", n.ID)
			seqs[i] = int(n.Seq)
		}
		require.True(t, sort.IntsAreSorted(seqs), "delivered in seq order")
		require.Equal(t, 1, seqs[0])
		require.Equal(t, callers*each, seqs[len(seqs)-1])

		var e *client.Error
		_, err = p.Publish(ctx, client.Publication{Channel: "nobody:owns", Event: "e", ObjectType: "t"})
		require.ErrorAs(t, err, &e)
		require.Equal(t, -32602, e.Code)
		require.Contains(t, e.Message, `no plugin owns the namespace "nobody"`)
	})

	t.Run("idempotency across the forms", func(t *testing.T) {
		p, err := client.DialPublisher(ctx, h.URL, heraldtest.APIKey)
		require.NoError(t, err)
		defer p.Close()
		n := client.Publication{Channel: "sports", Event: "goal", ObjectType: "t", Object: 1}
		viaHTTP, err := (&client.Publisher{URL: h.URL, APIKey: heraldtest.APIKey}).PublishOnce(ctx, "goal-1", n)
		require.NoError(t, err)
		viaWS, err := p.PublishOnce(ctx, "goal-1", n)
		require.NoError(t, err)
		require.Equal(t, viaHTTP, viaWS)
		require.Len(t, c.Notifications(t, 1), 1)
		c.NoNotification(t, 200*time.Millisecond)
	})

	t.Run("h2c", func(t *testing.T) {
		p := &client.Publisher{URL: h.URL, APIKey: heraldtest.APIKey, H2C: true}
		res, err := p.Publish(ctx, client.Publication{Channel: "sports", Event: "e", ObjectType: "t", Object: 2})
		require.NoError(t, err)
		require.Equal(t, uint64(2), res[0].Seq)
		require.Equal(t, res[0].ID, c.Notifications(t, 1)[0].ID)
	})
}

// SIGTERM closes a publishing connection with 1001; the caller learns of
// it through Done and its calls fail with ErrConnectionLost.
func TestStreamPublisherOnShutdown(t *testing.T) {
	h := heraldtest.Start(t, heraldtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), heraldtest.Timeout)
	defer cancel()
	p, err := client.DialPublisher(ctx, h.URL, heraldtest.APIKey)
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Publish(ctx, client.Publication{Channel: "news", Event: "e", ObjectType: "t"})
	require.NoError(t, err)
	h.Signal(t, syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("the publishing connection outlived herald's shutdown")
	}
	require.ErrorContains(t, p.Err(), "1001")
	_, err = p.Publish(ctx, client.Publication{Channel: "news", Event: "e", ObjectType: "t"})
	require.ErrorIs(t, err, client.ErrConnectionLost)
	require.NoError(t, h.Wait(t, heraldtest.Timeout))
}

// publishOK reports a failure from a goroutine other than the test's.
func publishOK(t *testing.T, ok bool, format string, args ...any) bool {
	if !ok {
		t.Errorf(format, args...)
	}
	return ok
}
