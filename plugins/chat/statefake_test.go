package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/sdk"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memState is an in-memory sdk.State with the documented semantics
// (revisions, compare-and-set, prefix List in key order, Watch that starts
// with a Reset), shared by every plugin instance a test starts on it, as
// the processes of one cluster share a bucket. TTLs do not run on a clock:
// a test ends a liveness record with expire, as a node's death would.
type memState struct {
	t        testing.TB
	mu       sync.Mutex
	rev      uint64
	kv       map[string]memEntry
	watchers map[*memWatcher]struct{}
	failing  error // every call fails with it while set
	// raceReads makes every Get wait a little after reading, so that two
	// processes' read-modify-write cycles overlap as on a busy cluster
	// (without it the in-memory store answers too fast for races to happen).
	raceReads bool
	// noInitialReset makes Watch start without the documented Reset, as
	// some stores do: the plugin must load its mirrors all the same.
	noInitialReset bool
	// watchLag delays every change a Watch hands over, as a loaded
	// cluster's watches lag behind its writes.
	watchLag time.Duration
}

type memEntry struct {
	value []byte
	rev   uint64
	ttl   time.Duration
}

type memWatcher struct {
	prefix string
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []sdk.Change
	busy   bool
}

func newMemState(t testing.TB) *memState {
	return &memState{t: t, kv: map[string]memEntry{}, watchers: map[*memWatcher]struct{}{}}
}

var _ sdk.State = (*memState)(nil)

// checkKey fails the test on a key the real State would refuse.
func (s *memState) checkKey(key string) {
	s.t.Helper()
	assert.LessOrEqual(s.t, len(key), 1024, "key %q", key)
	for _, sg := range strings.Split(key, "/") {
		assert.NotEmpty(s.t, sg, "empty segment in key %q", key)
		assert.LessOrEqual(s.t, len(sg), 255, "segment of key %q", key)
		for i := 0; i < len(sg); i++ {
			assert.True(s.t, sg[i] > ' ' && sg[i] <= '~', "byte %q in key %q", sg[i], key)
		}
	}
}

func (s *memState) checkPrefix(prefix string) {
	if prefix != "" {
		assert.True(s.t, strings.HasSuffix(prefix, "/"), "prefix %q", prefix)
		s.checkKey(strings.TrimSuffix(prefix, "/"))
	}
}

func (s *memState) setFailing(err error) {
	s.mu.Lock()
	s.failing = err
	s.mu.Unlock()
}

func (s *memState) Get(_ context.Context, key string) (sdk.Entry, error) {
	s.checkKey(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return sdk.Entry{}, s.failing
	}
	e, ok := s.kv[key]
	if s.raceReads {
		s.mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		s.mu.Lock()
	}
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return sdk.Entry{Key: key, Value: append([]byte(nil), e.value...), Revision: e.rev}, nil
}

func (s *memState) write(key string, value []byte, opts []sdk.WriteOption, check func(e memEntry, ok bool) error) (uint64, error) {
	s.checkKey(key)
	assert.LessOrEqual(s.t, len(value), sdk.MaxStateValue)
	var o sdk.WriteOptions
	for _, f := range opts {
		f(&o)
	}
	if o.TTL > 0 {
		assert.GreaterOrEqual(s.t, o.TTL, time.Second, "a TTL is at least a second")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return 0, s.failing
	}
	e, ok := s.kv[key]
	if err := check(e, ok); err != nil {
		return 0, err
	}
	s.rev++
	s.kv[key] = memEntry{value: append([]byte(nil), value...), rev: s.rev, ttl: o.TTL}
	s.notify(sdk.Change{Entry: sdk.Entry{Key: key, Value: append([]byte(nil), value...), Revision: s.rev}})
	return s.rev, nil
}

func (s *memState) Put(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	return s.write(key, value, opts, func(memEntry, bool) error { return nil })
}

func (s *memState) Create(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	return s.write(key, value, opts, func(_ memEntry, ok bool) error {
		if ok {
			return sdk.ErrConflict
		}
		return nil
	})
}

func (s *memState) Update(_ context.Context, key string, value []byte, rev uint64, opts ...sdk.WriteOption) (uint64, error) {
	return s.write(key, value, opts, func(e memEntry, ok bool) error {
		if !ok {
			return sdk.ErrNotFound
		}
		if e.rev != rev {
			return sdk.ErrConflict
		}
		return nil
	})
}

func (s *memState) Delete(_ context.Context, key string, rev uint64) error {
	s.checkKey(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return s.failing
	}
	e, ok := s.kv[key]
	if rev > 0 && (!ok || e.rev != rev) {
		return sdk.ErrConflict
	}
	if ok {
		s.deleteLocked(key)
	}
	return nil
}

func (s *memState) deleteLocked(key string) {
	delete(s.kv, key)
	s.rev++
	s.notify(sdk.Change{Entry: sdk.Entry{Key: key, Revision: s.rev}, Deleted: true})
}

// expire ends key as its TTL would.
func (s *memState) expire(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kv[key]
	assert.True(s.t, ok, "expire %s: no such key", key)
	require.NotZero(s.t, e.ttl, "expire %s: it has no TTL", key)
	s.deleteLocked(key)
}

// ttlOf is the TTL key was last written with.
func (s *memState) ttlOf(key string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.kv[key].ttl
}

func (s *memState) keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (s *memState) List(_ context.Context, prefix string) ([]sdk.Entry, error) {
	s.checkPrefix(prefix)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing != nil {
		return nil, s.failing
	}
	var out []sdk.Entry
	for k, e := range s.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, sdk.Entry{Key: k, Value: append([]byte(nil), e.value...), Revision: e.rev})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// notify queues ch for every watcher of its prefix; s.mu is held, so the
// queues hold changes in the order they were made.
func (s *memState) notify(ch sdk.Change) {
	for w := range s.watchers {
		if strings.HasPrefix(ch.Key, w.prefix) {
			w.mu.Lock()
			w.queue = append(w.queue, ch)
			w.cond.Broadcast()
			w.mu.Unlock()
		}
	}
}

func (s *memState) Watch(ctx context.Context, prefix string, f func(sdk.Change)) error {
	s.checkPrefix(prefix)
	w := &memWatcher{prefix: prefix}
	w.cond = sync.NewCond(&w.mu)
	s.mu.Lock()
	if s.failing != nil {
		s.mu.Unlock()
		return s.failing
	}
	s.watchers[w] = struct{}{}
	if !s.noInitialReset {
		w.queue = append(w.queue, sdk.Change{Reset: true}) // once in place, as documented
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && ctx.Err() == nil {
			w.busy = false
			w.cond.Broadcast()
			w.cond.Wait()
		}
		if ctx.Err() != nil {
			w.busy = false
			w.cond.Broadcast()
			w.mu.Unlock()
			return ctx.Err()
		}
		ch := w.queue[0]
		w.queue = w.queue[1:]
		w.busy = true
		w.mu.Unlock()
		s.mu.Lock()
		lag := s.watchLag
		s.mu.Unlock()
		if lag > 0 && !ch.Reset {
			time.Sleep(lag)
		}
		f(ch)
	}
}

// quiesce waits until every watcher has handed every change to its f and
// f returned; it reports whether any had work.
func (s *memState) quiesce() bool {
	s.mu.Lock()
	ws := make([]*memWatcher, 0, len(s.watchers))
	for w := range s.watchers {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	had := false
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range ws {
		w.mu.Lock()
		for len(w.queue) > 0 || w.busy {
			had = true
			if time.Now().After(deadline) {
				w.mu.Unlock()
				s.t.Fatalf("memState: a watcher of %q never caught up", w.prefix)
			}
			w.cond.Wait()
		}
		w.mu.Unlock()
	}
	return had
}

func (s *memState) String() string { return fmt.Sprintf("memState(%d keys)", len(s.keys(""))) }
