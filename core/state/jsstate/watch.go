package jsstate

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldhq/herald/core/state"
)

// restartPause is the pause between attempts to watch again after a
// reconnect, while JetStream is not back yet.
const restartPause = 250 * time.Millisecond

// Watch calls f for every change under prefix from now on, in stream
// order: writes, deletes and purges, and the markers of expired keys (as
// Deleted). When the connection comes back after a loss, changes may have
// been missed: Watch starts a new consumer at the stream's end and then
// calls f with Reset, so a reload by List sees everything the new consumer
// does not.
//
// The consumer is not filtered by prefix: it gets every message of the
// bucket from an explicit sequence (the stream's last before it was made,
// plus one), so that Watch can tell when it missed one. The bucket keeps one
// message per key, so a consumer that is behind (a busy f, a loaded
// server) never gets the messages of keys written again or deleted in the
// meantime; the server skips them without a word. A hole in the sequence is
// such a loss, and f gets a Reset before the change after it.
func (s *Store) Watch(ctx context.Context, prefix string, f func(state.Change)) error {
	if err := state.ValidPrefix(prefix); err != nil {
		return err
	}
	if s.isClosed() {
		return fmt.Errorf("state watch %q: %w", prefix, state.ErrClosed)
	}
	// Listen before the consumer starts, so that no reconnect slips by.
	status := s.nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer s.nc.RemoveStatusListener(status)
	w, err := s.startWatch(ctx)
	if err != nil {
		return fmt.Errorf("state watch %q: %w", prefix, err)
	}
	defer func() {
		if w != nil {
			w.stop()
		}
	}()
	// In place: the consumer delivers every message after the stream's last
	// as read before it was made, or f hears of a hole.
	f(state.Change{Reset: true})

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closed:
			return fmt.Errorf("state watch %q: %w", prefix, state.ErrClosed)
		case st := <-status:
			if st == nats.CLOSED {
				return fmt.Errorf("state watch %q: nats connection closed: %w", prefix, state.ErrUnavailable)
			}
			if w, err = s.restart(ctx, w); err != nil {
				return fmt.Errorf("state watch %q: %w", prefix, err)
			}
			f(state.Change{Reset: true})
		case e, ok := <-w.w.Updates():
			if !ok { // the subscription ended under us
				if w, err = s.restart(ctx, w); err != nil {
					return fmt.Errorf("state watch %q: %w", prefix, err)
				}
				f(state.Change{Reset: true})
				continue
			}
			if e == nil {
				continue
			}
			rev := e.Revision()
			if rev < w.next {
				continue // again: nats.go made its consumer anew before anything was delivered
			}
			missed := rev > w.next
			w.next = rev + 1
			if missed {
				f(state.Change{Reset: true})
			}
			key, err := decodeKey(e.Key())
			if err != nil || !strings.HasPrefix(key, prefix) {
				continue // another prefix's, or not written through a Store
			}
			c := state.Change{Entry: state.Entry{Key: key, Revision: rev}}
			if e.Operation() == jetstream.KeyValuePut {
				c.Value = e.Value()
			} else {
				c.Deleted = true
			}
			f(c)
		}
	}
}

// watching is one KV watcher, the cancel of the context its subscription
// lives by, and the stream sequence its next message must have.
type watching struct {
	w      jetstream.KeyWatcher
	cancel context.CancelFunc
	next   uint64
}

func (w *watching) stop() {
	w.cancel()
	stopWatcher(w.w)
}

// startWatch starts an ordered consumer of every change to the bucket made
// from now on. It starts at the sequence after the stream's last, read
// first: DeliverNew would leave the start to the server hosting the
// consumer, and Watch could not tell a message it missed at the start. The
// subscription lives as long as the context handed to the KV watch, so its
// start is bounded by a timer instead of a deadline.
func (s *Store) startWatch(ctx context.Context) (*watching, error) {
	if err := s.connected(); err != nil {
		return nil, err
	}
	last, err := s.lastSeq(ctx)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(s.opts.Timeout, cancel)
	w, err := s.kv.Watch(wctx, jetstream.AllKeys, jetstream.ResumeFromRevision(last+1))
	if !timer.Stop() {
		if err == nil {
			stopWatcher(w)
		}
		cancel()
		return nil, fmt.Errorf("start watching: no answer in %v: %w", s.opts.Timeout, state.ErrUnavailable)
	}
	if err != nil {
		cancel()
		return nil, s.classify(ctx, err)
	}
	return &watching{w: w, cancel: cancel, next: last + 1}, nil
}

// lastSeq is the sequence of the bucket stream's last message (0: none
// yet).
func (s *Store) lastSeq(ctx context.Context) (uint64, error) {
	octx, cancel := s.opContext(ctx)
	defer cancel()
	st, err := s.js.Stream(octx, "KV_"+s.opts.Bucket)
	if err != nil {
		return 0, fmt.Errorf("read the bucket's last sequence: %w", s.classify(octx, err))
	}
	return st.CachedInfo().State.LastSeq, nil
}

// restart replaces a watcher after a reconnect, trying until JetStream
// answers, ctx ends, the store closes or the connection is closed for good.
func (s *Store) restart(ctx context.Context, old *watching) (*watching, error) {
	if old != nil {
		old.stop()
	}
	for {
		if s.nc.IsClosed() {
			return nil, fmt.Errorf("nats connection closed: %w", state.ErrUnavailable)
		}
		w, err := s.startWatch(ctx)
		if err == nil {
			return w, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closed:
			return nil, state.ErrClosed
		case <-time.After(restartPause):
		}
	}
}
