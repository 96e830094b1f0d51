package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/heraldhq/herald/sdk"
)

// fakeState is an in-memory sdk.State with the contract's semantics
// (revisions, compare-and-set, List in key order, Watch starting with a
// Reset), shared by several plugin instances in a test as the processes of
// several nodes share one JetStream bucket. It has no TTL: a write with one
// fails, so a plugin that starts to rely on expiry is noticed here.
type fakeState struct {
	mu       sync.Mutex
	rev      uint64
	entries  map[string]sdk.Entry
	watchers map[*fakeWatcher]struct{}
	// beforeWrite, when set, runs (without the lock) before every write
	// with the key: a test makes another "node" write there first.
	beforeWrite func(key string)
	writes      int
	// down makes every call fail as a store that cannot be reached.
	down bool
	// ready counts the watches whose first Reset was handled.
	ready int
}

type fakeWatcher struct {
	prefix string
	mu     sync.Mutex
	queue  []sdk.Change
	signal chan struct{}
}

func newFakeState() *fakeState {
	return &fakeState{entries: map[string]sdk.Entry{}, watchers: map[*fakeWatcher]struct{}{}}
}

var _ sdk.State = (*fakeState)(nil)

// handle is what a plugin instance gets as its Host's State.
func (f *fakeState) handle(sdk.Host) (sdk.State, error) { return f, nil }

// setDown makes the store unreachable (true) or back.
func (f *fakeState) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *fakeState) reachable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return fmt.Errorf("fakeState: %w", sdk.ErrStateUnavailable)
	}
	return nil
}

func (f *fakeState) hook(key string, opts []sdk.WriteOption) error {
	if err := f.reachable(); err != nil {
		return err
	}
	var o sdk.WriteOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.TTL > 0 {
		return errors.New("fakeState: TTL is not faked")
	}
	f.mu.Lock()
	h := f.beforeWrite
	f.mu.Unlock()
	if h != nil {
		h(key)
	}
	return nil
}

// setHook sets beforeWrite.
func (f *fakeState) setHook(h func(key string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeWrite = h
}

// setLocked writes (or deletes) key and tells the watchers; f.mu is held.
func (f *fakeState) setLocked(key string, value []byte, deleted bool) uint64 {
	f.rev++
	f.writes++
	c := sdk.Change{Entry: sdk.Entry{Key: key, Revision: f.rev}, Deleted: deleted}
	if deleted {
		delete(f.entries, key)
	} else {
		c.Value = append([]byte(nil), value...)
		f.entries[key] = sdk.Entry{Key: key, Value: c.Value, Revision: f.rev}
	}
	for w := range f.watchers {
		if strings.HasPrefix(key, w.prefix) {
			w.push(c)
		}
	}
	return f.rev
}

func (w *fakeWatcher) push(c sdk.Change) {
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (f *fakeState) Get(_ context.Context, key string) (sdk.Entry, error) {
	if err := f.reachable(); err != nil {
		return sdk.Entry{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	e.Value = append([]byte(nil), e.Value...)
	return e, nil
}

func (f *fakeState) Put(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	if err := f.hook(key, opts); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setLocked(key, value, false), nil
}

func (f *fakeState) Create(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	if err := f.hook(key, opts); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.entries[key]; ok {
		return 0, sdk.ErrConflict
	}
	return f.setLocked(key, value, false), nil
}

func (f *fakeState) Update(_ context.Context, key string, value []byte, rev uint64, opts ...sdk.WriteOption) (uint64, error) {
	if err := f.hook(key, opts); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	switch {
	case !ok:
		return 0, sdk.ErrNotFound
	case e.Revision != rev:
		return 0, sdk.ErrConflict
	}
	return f.setLocked(key, value, false), nil
}

func (f *fakeState) Delete(_ context.Context, key string, rev uint64) error {
	if err := f.hook(key, nil); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	switch {
	case !ok:
		return nil
	case rev > 0 && e.Revision != rev:
		return sdk.ErrConflict
	}
	f.setLocked(key, nil, true)
	return nil
}

func (f *fakeState) List(_ context.Context, prefix string) ([]sdk.Entry, error) {
	if err := f.reachable(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []sdk.Entry
	for k, e := range f.entries {
		if strings.HasPrefix(k, prefix) {
			e.Value = append([]byte(nil), e.Value...)
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (f *fakeState) Watch(ctx context.Context, prefix string, fn func(sdk.Change)) error {
	w := &fakeWatcher{prefix: prefix, signal: make(chan struct{}, 1)}
	f.mu.Lock()
	f.watchers[w] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, w)
		f.mu.Unlock()
	}()
	fn(sdk.Change{Reset: true})
	f.mu.Lock()
	f.ready++
	f.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.signal:
		}
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, c := range q {
			fn(c)
		}
	}
}

// watching says how many watches are in place and handled their first
// Reset.
func (f *fakeState) watching() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

// reset sends every watcher a Reset, as a store that lost changes does.
func (f *fakeState) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		w.push(sdk.Change{Reset: true})
	}
}

// keys lists the keys under prefix.
func (f *fakeState) keys(prefix string) []string {
	es, _ := f.List(context.Background(), prefix)
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}
