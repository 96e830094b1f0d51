package sdktest

import (
	"context"
	"sync"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// eventQueue delivers lifecycle events to the plugin in order, as Herald's
// per-plugin event queue does: the test's own (Harness.Events) and those
// the host side makes, such as the subscribed event of a Host.Subscribe.
// Everything pending goes in one batch. Its goroutine is the harness's,
// and ends when the harness closes.
type eventQueue struct {
	mu        sync.Mutex
	pending   []*pluginpb.Event
	queued    uint64        // events ever queued
	delivered uint64        // events ever handed to the plugin (or failed)
	err       error         // the first delivery that failed
	wake      chan struct{} // 1-buffered: pending grew
	changed   chan struct{} // closed and replaced on every delivery
}

func newEventQueue() *eventQueue {
	return &eventQueue{wake: make(chan struct{}, 1), changed: make(chan struct{})}
}

// add queues evs and returns the count to wait for to see them delivered.
func (q *eventQueue) add(evs ...*pluginpb.Event) uint64 {
	q.mu.Lock()
	q.pending = append(q.pending, evs...)
	q.queued += uint64(len(evs))
	n := q.queued
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return n
}

// mark is the count that covers every event queued so far.
func (q *eventQueue) mark() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued
}

// wait waits until the first n events were delivered, or ctx ends, and
// returns the first delivery error.
func (q *eventQueue) wait(ctx context.Context, n uint64) error {
	for {
		q.mu.Lock()
		if q.delivered >= n {
			err := q.err
			q.mu.Unlock()
			return err
		}
		ch := q.changed
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run delivers batches with send until ctx ends.
func (q *eventQueue) run(ctx context.Context, send func(*pluginpb.EventBatch) error) {
	for {
		q.mu.Lock()
		batch, upto := q.pending, q.queued
		q.pending = nil
		q.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-q.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		err := send(&pluginpb.EventBatch{Events: batch})
		q.mu.Lock()
		q.delivered = upto
		if err != nil && q.err == nil {
			q.err = err
		}
		close(q.changed)
		q.changed = make(chan struct{})
		q.mu.Unlock()
	}
}
