package sdktest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald/sdk"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// MemState is an in-process sdk.State with the contract's semantics
// (revisions, compare-and-set, List in key order, Watch starting with a
// Reset, keys and prefixes checked as the host checks them), for unit tests
// that call a plugin's logic directly rather than through a Harness (State
// is the one a Harness's plugin gets over the protocol). Several plugin
// instances sharing one behave as the processes of several nodes sharing
// one JetStream bucket.
//
// TTLs run on a clock the test may replace (SetClock; time.Now by
// default). A key whose TTL ran out is removed, and its watchers get a
// Deleted change, at the next call to the store or to ExpireDue; Expire
// ends one key at once, as a node's death ends its lease.
//
// It injects what a real store does to a plugin: unreachable (SetDown,
// SetFailing), another node writing first (SetBeforeWrite), reads that
// overlap with other processes' writes (SetAfterRead), watches that lag
// (SetWatchLag), changes the watches miss (WriteUnseen, then
// ResetWatchers); and a Watch without its first Reset (SetSkipFirstReset),
// which the contract forbids but a plugin may want to survive.
type MemState struct {
	mu       sync.Mutex
	rev      uint64
	entries  map[string]memEntry
	watchers map[*memWatcher]struct{}
	// beforeWrite, when set, runs (without the lock) before every write
	// with the key: a test makes another "node" write there first.
	beforeWrite func(key string)
	// afterRead, when set, runs (without the lock) after Get has read.
	afterRead func(key string)
	// keyCheck, when set, is a test's own rule for keys and prefixes.
	keyCheck func(key string) error
	writes   int
	// failing makes every call fail with it while set.
	failing error
	// ready counts the watches whose first Reset was handled.
	ready int
	now   func() time.Time
	// calls counts calls by the first segment of their key or prefix.
	calls          map[string]int
	watchLag       time.Duration
	skipFirstReset bool
}

type memEntry struct {
	sdk.Entry
	ttl     time.Duration
	expires time.Time // zero: no TTL
}

type memWatcher struct {
	prefix string
	mu     sync.Mutex
	queue  []sdk.Change
	busy   bool          // f is running or a change waits
	signal chan struct{} // a change was queued
	idle   chan struct{} // closed and replaced when busy turns false
}

// NewMemState returns an empty store.
func NewMemState() *MemState {
	return &MemState{
		entries:  map[string]memEntry{},
		watchers: map[*memWatcher]struct{}{},
		now:      time.Now,
		calls:    map[string]int{},
	}
}

var _ sdk.State = (*MemState)(nil)

// Handle is what a plugin instance gets as its Host's State: f, for a
// plugin that takes its State through a replaceable func(sdk.Host).
func (f *MemState) Handle(sdk.Host) (sdk.State, error) { return f, nil }

// SetDown makes the store unreachable (true) or back: every call fails
// with sdk.ErrStateUnavailable.
func (f *MemState) SetDown(down bool) {
	var err error
	if down {
		err = fmt.Errorf("sdktest.MemState: %w", sdk.ErrStateUnavailable)
	}
	f.SetFailing(err)
}

// SetFailing makes every call fail with err while it is not nil.
func (f *MemState) SetFailing(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = err
}

// SetClock makes the store read the time for TTLs from now.
func (f *MemState) SetClock(now func() time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// SetBeforeWrite sets a func that runs, without the lock, before every
// write with its key: a test makes another "node" write there first.
func (f *MemState) SetBeforeWrite(h func(key string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeWrite = h
}

// SetAfterRead sets a func that runs, without the lock, after Get has read
// key and before it returns: a short sleep there makes the read-modify-write
// cycles of several processes overlap as on a busy cluster.
func (f *MemState) SetAfterRead(h func(key string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.afterRead = h
}

// SetKeyCheck adds a test's own rule to the host's for every key and
// prefix a call names (a prefix is checked without its trailing "/").
func (f *MemState) SetKeyCheck(check func(key string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keyCheck = check
}

// SetWatchLag delays every change (not a Reset) a watch hands over by d, as
// a loaded cluster's watches lag behind its writes.
func (f *MemState) SetWatchLag(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchLag = d
}

// SetSkipFirstReset makes the watches started from now on begin without
// their first Reset.
func (f *MemState) SetSkipFirstReset(skip bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skipFirstReset = skip
}

// begin checks a call's key (or prefix) and counts it; it returns with
// f.mu held unless it fails. Expired keys go first.
func (f *MemState) begin(key string, prefix bool) error {
	var err error
	if prefix {
		err = pluginpb.ValidStatePrefix(key)
	} else {
		err = pluginpb.ValidStateKey(key)
	}
	f.mu.Lock()
	if err == nil && f.keyCheck != nil && key != "" {
		err = f.keyCheck(strings.TrimSuffix(key, "/"))
	}
	if err != nil {
		f.mu.Unlock()
		return fmt.Errorf("sdktest.MemState: %w: %v", sdk.ErrStateInvalid, err)
	}
	first, _, _ := strings.Cut(key, "/")
	f.calls[first]++
	if f.failing != nil {
		err := f.failing
		f.mu.Unlock()
		return err
	}
	f.expireLocked()
	return nil
}

// beginWrite is begin for a write: it checks the value and TTL and runs
// the before-write hook first.
func (f *MemState) beginWrite(key string, value []byte, opts []sdk.WriteOption) (time.Duration, error) {
	var o sdk.WriteOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(value) > sdk.MaxStateValue {
		return 0, fmt.Errorf("sdktest.MemState: value of %d bytes, over %d: %w", len(value), sdk.MaxStateValue, sdk.ErrStateTooLarge)
	}
	if o.TTL < 0 || (o.TTL > 0 && o.TTL < time.Second) {
		return 0, fmt.Errorf("sdktest.MemState: TTL %v: under a second: %w", o.TTL, sdk.ErrStateInvalid)
	}
	f.mu.Lock()
	h := f.beforeWrite
	f.mu.Unlock()
	if h != nil {
		h(key)
	}
	return o.TTL, f.begin(key, false)
}

// expireLocked removes the keys whose TTL ran out; f.mu is held.
func (f *MemState) expireLocked() {
	now := f.now()
	var due []string
	for k, e := range f.entries {
		if !e.expires.IsZero() && !now.Before(e.expires) {
			due = append(due, k)
		}
	}
	sort.Strings(due)
	for _, k := range due {
		f.setLocked(k, nil, true, 0)
	}
}

// ExpireDue removes the keys whose TTL ran out by the clock and tells their
// watchers, as the store does on its own; every call does it first too.
func (f *MemState) ExpireDue() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.expireLocked()
}

// Expire ends key now, as its TTL would: it fails if the key does not
// exist or was not written with a TTL.
func (f *MemState) Expire(key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	switch {
	case !ok:
		return fmt.Errorf("sdktest.MemState: expire %q: no such key", key)
	case e.expires.IsZero():
		return fmt.Errorf("sdktest.MemState: expire %q: it has no TTL", key)
	}
	f.setLocked(key, nil, true, 0)
	return nil
}

// TTL returns the TTL key was last written with (0: none, or no key).
func (f *MemState) TTL(key string) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entries[key].ttl
}

// Calls says how many calls named a key or prefix whose first segment is
// first ("" for the prefix ""), including refused ones.
func (f *MemState) Calls(first string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[first]
}

// setLocked writes (or deletes) key and tells the watchers; f.mu is held.
func (f *MemState) setLocked(key string, value []byte, deleted bool, ttl time.Duration) uint64 {
	f.rev++
	f.writes++
	c := sdk.Change{Entry: sdk.Entry{Key: key, Revision: f.rev}, Deleted: deleted}
	if deleted {
		delete(f.entries, key)
	} else {
		c.Value = append([]byte(nil), value...)
		e := memEntry{Entry: sdk.Entry{Key: key, Value: c.Value, Revision: f.rev}, ttl: ttl}
		if ttl > 0 {
			e.expires = f.now().Add(ttl)
		}
		f.entries[key] = e
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
	w.busy = true
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (f *MemState) Get(_ context.Context, key string) (sdk.Entry, error) {
	if err := f.begin(key, false); err != nil {
		return sdk.Entry{}, err
	}
	e, ok := f.entries[key]
	h := f.afterRead
	f.mu.Unlock()
	if h != nil {
		h(key)
	}
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	out := e.Entry
	out.Value = append([]byte(nil), e.Value...)
	return out, nil
}

func (f *MemState) Put(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	ttl, err := f.beginWrite(key, value, opts)
	if err != nil {
		return 0, err
	}
	defer f.mu.Unlock()
	return f.setLocked(key, value, false, ttl), nil
}

func (f *MemState) Create(_ context.Context, key string, value []byte, opts ...sdk.WriteOption) (uint64, error) {
	ttl, err := f.beginWrite(key, value, opts)
	if err != nil {
		return 0, err
	}
	defer f.mu.Unlock()
	if _, ok := f.entries[key]; ok {
		return 0, sdk.ErrConflict
	}
	return f.setLocked(key, value, false, ttl), nil
}

func (f *MemState) Update(_ context.Context, key string, value []byte, rev uint64, opts ...sdk.WriteOption) (uint64, error) {
	ttl, err := f.beginWrite(key, value, opts)
	if err != nil {
		return 0, err
	}
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	switch {
	case !ok:
		return 0, sdk.ErrNotFound
	case e.Revision != rev:
		return 0, sdk.ErrConflict
	}
	return f.setLocked(key, value, false, ttl), nil
}

func (f *MemState) Delete(_ context.Context, key string, rev uint64) error {
	if _, err := f.beginWrite(key, nil, nil); err != nil {
		return err
	}
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	switch {
	case !ok:
		return nil
	case rev > 0 && e.Revision != rev:
		return sdk.ErrConflict
	}
	f.setLocked(key, nil, true, 0)
	return nil
}

func (f *MemState) List(_ context.Context, prefix string) ([]sdk.Entry, error) {
	if err := f.begin(prefix, true); err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	return f.listLocked(prefix), nil
}

func (f *MemState) listLocked(prefix string) []sdk.Entry {
	var out []sdk.Entry
	for k, e := range f.entries {
		if strings.HasPrefix(k, prefix) {
			x := e.Entry
			x.Value = append([]byte(nil), e.Value...)
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func (f *MemState) Watch(ctx context.Context, prefix string, fn func(sdk.Change)) error {
	if err := f.begin(prefix, true); err != nil {
		return err
	}
	w := &memWatcher{prefix: prefix, signal: make(chan struct{}, 1), idle: make(chan struct{})}
	f.watchers[w] = struct{}{}
	first := !f.skipFirstReset
	if first {
		w.queue = append(w.queue, sdk.Change{Reset: true}) // in place: every later change follows it
		w.busy = true
	} else {
		f.ready++
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, w)
		f.mu.Unlock()
		w.mu.Lock()
		w.setIdle()
		w.mu.Unlock()
	}()
	for {
		w.mu.Lock()
		if len(w.queue) == 0 {
			w.setIdle()
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-w.signal:
			}
			continue
		}
		c := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.mu.Lock()
		lag := f.watchLag
		f.mu.Unlock()
		if lag > 0 && !c.Reset {
			time.Sleep(lag)
		}
		fn(c)
		if first {
			first = false
			f.mu.Lock()
			f.ready++
			f.mu.Unlock()
		}
	}
}

// setIdle marks the watcher idle and wakes Settle; w.mu is held.
func (w *memWatcher) setIdle() {
	if w.busy {
		w.busy = false
		close(w.idle)
		w.idle = make(chan struct{})
	}
}

// Watching says how many watches are in place and handled their first
// change (their Reset, unless SetSkipFirstReset).
func (f *MemState) Watching() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

// Settle waits, up to timeout, until every watch has handed every change
// made so far to its f and f returned. It reports whether any watch had
// work to do, or an error when one did not catch up in time.
func (f *MemState) Settle(timeout time.Duration) (bool, error) {
	f.mu.Lock()
	ws := make([]*memWatcher, 0, len(f.watchers))
	for w := range f.watchers {
		ws = append(ws, w)
	}
	f.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	had := false
	for _, w := range ws {
		for {
			w.mu.Lock()
			busy, idle := w.busy, w.idle
			w.mu.Unlock()
			if !busy {
				break
			}
			had = true
			select {
			case <-idle:
			case <-timer.C:
				return had, fmt.Errorf("sdktest.MemState: a watch of %q did not catch up in %v", w.prefix, timeout)
			}
		}
	}
	return had, nil
}

// ResetWatchers sends every watcher a Reset, as a store that lost changes does.
func (f *MemState) ResetWatchers() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		w.push(sdk.Change{Reset: true})
	}
}

// Keys lists the keys under prefix, without a store call.
func (f *MemState) Keys(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	es := f.listLocked(prefix)
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
	f.entries[key] = memEntry{Entry: sdk.Entry{Key: key, Value: append([]byte(nil), value...), Revision: f.rev}}
}

// Entry returns key's entry as stored (found false when there is none),
// without a store call: for a test to build a WriteUnseen from it.
func (f *MemState) Entry(key string) (sdk.Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entries[key]
	out := e.Entry
	out.Value = append([]byte(nil), e.Value...)
	return out, ok
}
