package boltstate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldhq/herald/core/state"
)

// sweepRetry is the pause after a sweep that failed (a disk error).
const sweepRetry = time.Second

// sweeper removes expired entries when the earliest expiry is due, or when
// a write with a TTL may have made an earlier one. It is owned by the
// store and ends with Close.
func (s *Store) sweeper() {
	defer close(s.sweepDone)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-s.poke:
		case <-timer.C:
		}
		wait, err := s.sweep()
		if err != nil {
			wait = sweepRetry
		}
		if wait < 0 {
			timer.Stop()
			continue
		}
		timer.Reset(wait)
	}
}

// sweep removes what is due and says how long until the next expiry (-1:
// none).
func (s *Store) sweep() (time.Duration, error) {
	var next time.Time
	var any bool
	err := s.db.View(func(tx *bolt.Tx) error {
		next, any = nextExpiry(tx)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if !any {
		return -1, nil
	}
	if wait := next.Sub(s.opts.Now()); wait > 0 {
		return wait, nil
	}
	err = s.update(context.Background(), func(x *txn) error {
		if err := x.sweep(); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return s.sweep()
}

// watcher is one Watch's queue. mu orders a write's offer against the
// reader noticing a loss.
type watcher struct {
	prefix string
	ch     chan state.Change
	mu     sync.Mutex
	lost   bool // the queue was full: changes were dropped
}

// offer queues c unless the watcher has fallen behind.
func (w *watcher) offer(c state.Change) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost {
		return
	}
	select {
	case w.ch <- c:
	default:
		w.lost = true
	}
}

// takeLoss reports a loss and empties the queue: what follows it comes
// after the reader's reload.
func (w *watcher) takeLoss() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.lost {
		return false
	}
	for {
		select {
		case <-w.ch:
		default:
			w.lost = false
			return true
		}
	}
}

// fanOut hands committed changes to the watchers; called with s.mu held,
// so every watcher sees them in commit order.
func (s *Store) fanOut(changes []state.Change) {
	for w := range s.watchers {
		for _, c := range changes {
			if strings.HasPrefix(c.Key, w.prefix) {
				w.offer(c)
			}
		}
	}
}

// Watch calls f for every change under prefix committed from now on, in
// commit order, until ctx ends or the store is closed. A watch that falls
// WatchBuffer changes behind gets one Reset instead of them: writers never
// wait for it.
func (s *Store) Watch(ctx context.Context, prefix string, f func(state.Change)) error {
	if err := state.ValidPrefix(prefix); err != nil {
		return err
	}
	w := &watcher{prefix: prefix, ch: make(chan state.Change, s.opts.WatchBuffer)}
	s.mu.Lock()
	if s.isClosed() {
		s.mu.Unlock()
		return fmt.Errorf("state watch %q: %w", prefix, state.ErrClosed)
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	// In place: every commit from now on reaches w.
	f(state.Change{Reset: true})

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return fmt.Errorf("state watch %q: %w", prefix, state.ErrClosed)
		case c := <-w.ch:
			if w.takeLoss() {
				f(state.Change{Reset: true})
				continue
			}
			f(c)
		}
	}
}
