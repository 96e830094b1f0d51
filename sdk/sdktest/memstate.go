package sdktest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/heraldhq/herald/sdk"
)

// MemState is an in-process sdk.State with the contract's semantics
// (revisions, compare-and-set, List in key order, Watch starting with a
// Reset), for unit tests that call a plugin's logic directly rather than
// through a Harness (State is the one a Harness's plugin gets over the
// protocol). Several plugin instances sharing one behave as the processes
// of several nodes sharing one JetStream bucket. It injects what a real
// store does to a plugin: unreachable (SetDown), another node writing
// first (SetBeforeWrite), changes the watches miss (WriteUnseen, then
// ResetWatchers). It has no TTL: a write with one fails, so a plugin that
// starts to rely on expiry is noticed (use State for that).
type MemState struct {
	mu       sync.Mutex
	rev      uint64
	entries  map[string]sdk.Entry
	watchers map[*memWatcher]struct{}
	// beforeWrite, when set, runs (without the lock) before every write
	// with the key: a test makes another "node" write there first.
	beforeWrite func(key string)
	writes      int
	// down makes every call fail as a store that cannot be reached.
	down bool
	// ready counts the watches whose first Reset was handled.
	ready int
}

type memWatcher struct {
	prefix string
	mu     sync.Mutex
	queue  []sdk.Change
	signal chan struct{}
}

// NewMemState returns an empty store.
func NewMemState() *MemState {
	return &MemState{entries: map[string]sdk.Entry{}, watchers: map[*memWatcher]struct{}{}}
}

var _ sdk.State = (*MemState)(nil)

// Handle is what a plugin instance gets as its Host's State: f, for a
// plugin that takes its State through a replaceable func(sdk.Host).
func (f *MemState) Handle(sdk.Host) (sdk.State, error) { return f, nil }

// SetDown makes the store unreachable (true) or back.
func (f *MemState) SetDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

func (f *MemState) reachable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return fmt.Errorf("sdktest.MemState: %w", sdk.ErrStateUnavailable)
	}
	return nil
}

func (f *MemState) hook(key string, opts []sdk.WriteOption) error {
	if err := f.reachable(); err != nil {
		return err
	}
	var o sdk.WriteOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.TTL > 0 {
		return errors.New("sdktest.MemState: TTL is not faked")
	}
	f.mu.Lock()
	h := f.beforeWrite
	f.mu.Unlock()
	if h != nil {
		h(key)
	}
	return nil
}

// SetBeforeWrite sets a func that runs, without the lock, before every
// write with its key: a test makes another "node" write there first.
func (f *MemState) SetBeforeWrite(h func(key string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeWrite = h
}

// setLocked writes (or deletes) key and tells the watchers; f.mu is held.
func (f *MemState) setLocked(key string, value []byte, deleted bool) uint64 {
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

func (w *memWatcher) push(c sdk.Change) {
	w.mu.Lock()
	w.queue = append(w.queue, c)
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (f *MemState) Get(_ context.Context, key string) (sdk.Entry, error) {
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

func (f *MemState) Put(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	if err := f.hook(key, opts); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.setLocked(key, value, false), nil
}

func (f *MemState) Create(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
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

func (f *MemState) Update(_ context.Context, key string, value []byte, rev uint64, opts ...sdk.WriteOption) (uint64, error) {
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

func (f *MemState) Delete(_ context.Context, key string, rev uint64) error {
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

func (f *MemState) List(_ context.Context, prefix string) ([]sdk.Entry, error) {
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

func (f *MemState) Watch(ctx context.Context, prefix string, fn func(sdk.Change)) error {
	w := &memWatcher{prefix: prefix, signal: make(chan struct{}, 1)}
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

// Watching says how many watches are in place and handled their first
// Reset.
func (f *MemState) Watching() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

// ResetWatchers sends every watcher a Reset, as a store that lost changes does.
func (f *MemState) ResetWatchers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		w.push(sdk.Change{Reset: true})
	}
}

// Keys lists the keys under prefix.
func (f *MemState) Keys(prefix string) []string {
	es, _ := f.List(context.Background(), prefix)
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

// WriteUnseen writes key (remove: deletes it) without telling the
// watches, as changes a real store's watch missed; ResetWatchers then tells
// them to reload.
func (f *MemState) WriteUnseen(key string, value []byte, remove bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	if remove {
		delete(f.entries, key)
		return
	}
	f.entries[key] = sdk.Entry{Key: key, Value: append([]byte(nil), value...), Revision: f.rev}
}

// Entry returns key's entry as stored (found false when there is none),
// without a store call: for a test to build a WriteUnseen from it.
func (f *MemState) Entry(key string) (sdk.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	e.Value = append([]byte(nil), e.Value...)
	return e, ok
}
