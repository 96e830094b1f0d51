package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// memState is an in-memory sdk.State with the semantics sdk/state.go gives
// (revisions, compare-and-set, Watch starting with a Reset, deletes seen by
// watchers), shared by the plugin instances of one test as the nodes of a
// cluster share a JetStream bucket. Keys and prefixes are checked against
// sdk.State's rules, so a key the plugin makes that a real store would
// refuse fails the test. TTLs are recorded, and expire only when the test
// says so (expire).
type memState struct {
	mu       sync.Mutex
	rev      uint64
	data     map[string]memEntry
	watchers map[*memWatcher]struct{}
	writes   int
	ops      map[string]int // calls by key prefix's first segment
}

type memEntry struct {
	value []byte
	rev   uint64
	ttl   bool
}

type memWatcher struct {
	prefix string
	mu     sync.Mutex
	q      []sdk.Change
	signal chan struct{}
}

func newMemState() *memState {
	return &memState{data: map[string]memEntry{}, watchers: map[*memWatcher]struct{}{}, ops: map[string]int{}}
}

var _ sdk.State = (*memState)(nil)

func checkKey(key string) error {
	// Stricter than sdk.State, on purpose: the plugin's keys keep to the
	// bytes every key-value store takes (keys.go).
	for i := 0; i < len(key); i++ {
		if c := key[i]; !plainByte(c) && c != '=' && c != '/' {
			return fmt.Errorf("key %q: byte %q outside [A-Za-z0-9_=/-]", key, c)
		}
	}
	if key == "" || len(key) > 1024 {
		return fmt.Errorf("bad key length %d", len(key))
	}
	for _, s := range strings.Split(key, "/") {
		if s == "" || len(s) > 255 {
			return fmt.Errorf("key %q: bad segment %q", key, s)
		}
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] > '~' {
				return fmt.Errorf("key %q: byte %#x", key, s[i])
			}
		}
	}
	return nil
}

func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	if !strings.HasSuffix(p, "/") {
		return fmt.Errorf("prefix %q must end with /", p)
	}
	return checkKey(strings.TrimSuffix(p, "/"))
}

// notify queues a change for the watchers; s.mu held.
func (s *memState) notify(c sdk.Change) {
	for w := range s.watchers {
		if strings.HasPrefix(c.Key, w.prefix) {
			w.mu.Lock()
			w.q = append(w.q, c)
			w.mu.Unlock()
			select {
			case w.signal <- struct{}{}:
			default:
			}
		}
	}
}

func (s *memState) Get(_ context.Context, key string) (sdk.Entry, error) {
	if err := checkKey(key); err != nil {
		return sdk.Entry{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count(key)
	e, ok := s.data[key]
	if !ok {
		return sdk.Entry{}, sdk.ErrNotFound
	}
	return sdk.Entry{Key: key, Value: slices.Clone(e.value), Revision: e.rev}, nil
}

func (s *memState) write(key string, value []byte, opts []sdk.WriteOption, cond func(memEntry, bool) error) (uint64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if len(value) > sdk.MaxStateValue {
		return 0, fmt.Errorf("value of %d bytes", len(value))
	}
	var o sdk.WriteOptions
	for _, f := range opts {
		f(&o)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count(key)
	cur, ok := s.data[key]
	if err := cond(cur, ok); err != nil {
		return 0, err
	}
	s.rev++
	s.writes++
	s.data[key] = memEntry{value: slices.Clone(value), rev: s.rev, ttl: o.TTL > 0}
	s.notify(sdk.Change{Entry: sdk.Entry{Key: key, Value: slices.Clone(value), Revision: s.rev}})
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
	return s.write(key, value, opts, func(cur memEntry, ok bool) error {
		if !ok {
			return sdk.ErrNotFound
		}
		if cur.rev != rev {
			return sdk.ErrConflict
		}
		return nil
	})
}

func (s *memState) Delete(_ context.Context, key string, rev uint64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count(key)
	cur, ok := s.data[key]
	if !ok {
		return nil
	}
	if rev > 0 && cur.rev != rev {
		return sdk.ErrConflict
	}
	s.del(key)
	return nil
}

// count counts a call on key (or prefix) by its first segment; s.mu held.
func (s *memState) count(key string) {
	first, _, _ := strings.Cut(key, "/")
	s.ops[first]++
}

// opsOn returns the calls made so far on keys under first/.
func (s *memState) opsOn(first string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ops[first]
}

// del deletes a key and tells the watchers; s.mu held.
func (s *memState) del(key string) {
	delete(s.data, key)
	s.rev++
	s.writes++
	s.notify(sdk.Change{Entry: sdk.Entry{Key: key, Revision: s.rev}, Deleted: true})
}

// expire makes a key written with a TTL expire now.
func (s *memState) expire(t testing.TB, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.data[key]
	require.True(t, ok, "no key %s", key)
	require.True(t, e.ttl, "key %s has no TTL", key)
	s.del(key)
}

func (s *memState) List(_ context.Context, prefix string) ([]sdk.Entry, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count(prefix)
	var out []sdk.Entry
	for k, e := range s.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, sdk.Entry{Key: k, Value: slices.Clone(e.value), Revision: e.rev})
		}
	}
	slices.SortFunc(out, func(a, b sdk.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *memState) Watch(ctx context.Context, prefix string, f func(sdk.Change)) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	w := &memWatcher{prefix: prefix, signal: make(chan struct{}, 1)}
	s.mu.Lock()
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()
	f(sdk.Change{Reset: true})
	for {
		w.mu.Lock()
		q := w.q
		w.q = nil
		w.mu.Unlock()
		for _, c := range q {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			f(c)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.signal:
		}
	}
}

// keys lists the keys under prefix.
func (s *memState) keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.data {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// startNode runs one plugin process on st, as a node of a cluster whose
// plugins share st.
func startNode(t *testing.T, st *memState, cfg map[string]any) (*Documents, *sdktest.Harness) {
	t.Helper()
	d := New()
	d.stateOf = func(sdk.Host) (sdk.State, error) { return st, nil }
	return d, sdktest.Start(t, d, cfg)
}

// lose writes or deletes a key without telling the watchers, as changes a
// watch that fell behind missed (value nil: delete).
func (s *memState) lose(key string, value []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev++
	if value == nil {
		delete(s.data, key)
		return
	}
	s.data[key] = memEntry{value: slices.Clone(value), rev: s.rev}
}

// reset tells every watcher that it may have missed changes.
func (s *memState) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.mu.Lock()
		w.q = append(w.q, sdk.Change{Reset: true})
		w.mu.Unlock()
		select {
		case w.signal <- struct{}{}:
		default:
		}
	}
}
