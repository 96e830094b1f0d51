package statetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/core/state"
)

func runBasics(t *testing.T, f Factory) {
	s := f.New(t, 0)(t)
	ctx := ctxT(t)
	v := []byte("v")

	_, err := s.Get(ctx, "missing")
	require.ErrorIs(t, err, state.ErrNotFound)

	r1 := put(t, s, "a", "1")
	e := get(t, s, "a")
	require.Equal(t, state.Entry{Key: "a", Value: []byte("1"), Revision: r1}, e)
	r2 := put(t, s, "a", "2")
	require.Greater(t, r2, r1, "a key's revision grows with every write")
	rb := put(t, s, "b", "x")
	require.Greater(t, rb, r2, "revisions grow across keys")

	_, err = s.Create(ctx, "a", []byte("c"), 0)
	require.ErrorIs(t, err, state.ErrConflict, "create of an existing key")
	require.Equal(t, "2", string(get(t, s, "a").Value))
	rc, err := s.Create(ctx, "c", []byte("c"), 0)
	require.NoError(t, err)
	require.Greater(t, rc, rb)

	_, err = s.Update(ctx, "a", v, r1, 0)
	require.ErrorIs(t, err, state.ErrConflict, "update at a stale revision")
	_, err = s.Update(ctx, "a", v, 0, 0)
	require.ErrorIs(t, err, state.ErrConflict, "update at revision 0 of an existing key")
	_, err = s.Update(ctx, "missing", v, r1, 0)
	require.ErrorIs(t, err, state.ErrNotFound, "update of a missing key")
	ru, err := s.Update(ctx, "a", []byte("3"), r2, 0)
	require.NoError(t, err)
	require.Greater(t, ru, rc)
	require.Equal(t, state.Entry{Key: "a", Value: []byte("3"), Revision: ru}, get(t, s, "a"))

	require.NoError(t, s.Delete(ctx, "missing", 0), "deleting a missing key is not an error")
	require.NoError(t, s.Delete(ctx, "missing", 5), "deleting a missing key at a revision is not an error")
	require.ErrorIs(t, s.Delete(ctx, "a", r2), state.ErrConflict, "delete at a stale revision")
	require.Equal(t, ru, get(t, s, "a").Revision, "a refused delete leaves the key")
	require.NoError(t, s.Delete(ctx, "a", ru))
	_, err = s.Get(ctx, "a")
	require.ErrorIs(t, err, state.ErrNotFound, "get after delete")
	_, err = s.Update(ctx, "a", v, ru, 0)
	require.ErrorIs(t, err, state.ErrNotFound, "update of a deleted key at its last revision")
	require.NoError(t, s.Delete(ctx, "b", 0))
	_, err = s.Get(ctx, "b")
	require.ErrorIs(t, err, state.ErrNotFound)

	rn, err := s.Create(ctx, "a", []byte("again"), 0)
	require.NoError(t, err, "create after delete")
	require.Greater(t, rn, ru)

	_, err = s.Put(ctx, "short", v, state.MinTTL/2)
	require.Error(t, err, "a TTL under state.MinTTL")
	_, err = s.Get(ctx, "short")
	require.ErrorIs(t, err, state.ErrNotFound, "a refused write writes nothing")

	re := put(t, s, "empty", "")
	e = get(t, s, "empty")
	require.Empty(t, e.Value)
	require.Equal(t, re, e.Revision)
}

// escapeKeys holds characters a JetStream key cannot carry as they are.
var escapeKeys = []string{
	"a", "a/b", "a/b/c", "a/c", "a:b", "a.b", "a%b", "a~b", "a@b", "ab", "b",
	"a/~", "a/=", "a/-", "a/_", "a/.", "a/..", "a/%2F", "a/*", "a/>", "a/!#$&'()+,;<?[\\]^`{|}\"",
	"a/b.c/d:e", "A", "Z/z", "0/9",
}

func runList(t *testing.T, f Factory) {
	s := f.New(t, 0)(t)
	ctx := ctxT(t)

	all := append([]string(nil), escapeKeys...)
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	revs := map[string]uint64{}
	for _, k := range all {
		revs[k] = put(t, s, k, "v:"+k)
	}
	put(t, s, "a/gone", "x")
	require.NoError(t, s.Delete(ctx, "a/gone", 0))

	for _, k := range all {
		e := get(t, s, k)
		require.Equal(t, "v:"+k, string(e.Value), "key %q", k)
		require.Equal(t, revs[k], e.Revision, "key %q", k)
	}

	for _, prefix := range []string{"", "a/", "a/b/", "a/b.c/", "Z/", "zz/", "a:b/", "a/b/c/"} {
		var want []string
		for _, k := range escapeKeys {
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		sort.Strings(want)
		got, err := s.List(ctx, prefix)
		require.NoError(t, err, "list %q", prefix)
		require.Equal(t, want, nilIfEmpty(keys(got)), "list %q: keys in key order", prefix)
		for _, e := range got {
			require.Equal(t, "v:"+e.Key, string(e.Value))
			require.Equal(t, revs[e.Key], e.Revision)
		}
	}

	// The longest key, every byte escaped where escaping is needed.
	seg := strings.Repeat(":", state.MaxSegmentBytes)
	long := strings.Join([]string{seg, seg, seg, seg[1:], "."}, "/")
	require.Len(t, long, state.MaxKeyBytes)
	require.NoError(t, state.ValidKey(long))
	put(t, s, long, "long")
	require.Equal(t, "long", string(get(t, s, long).Value))
	got, err := s.List(ctx, long[:state.MaxSegmentBytes+1])
	require.NoError(t, err)
	require.Equal(t, []string{long}, keys(got))
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// runCAS increments one counter from many goroutines (on two stores when the
// storage is shared) with Get+Update retry loops: no increment is lost.
func runCAS(t *testing.T, f Factory) {
	open := f.New(t, 0)
	stores := []state.Store{open(t)}
	if f.Shared {
		stores = append(stores, open(t))
	}
	const workers, each = 8, 5
	put(t, stores[0], "counter", "0")

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		s := stores[w%len(stores)]
		wg.Go(func() {
			ctx := context.Background()
			for i := 0; i < each; i++ {
				for {
					e, err := s.Get(ctx, "counter")
					if err != nil {
						errs <- fmt.Errorf("get: %w", err)
						return
					}
					n, err := strconv.Atoi(string(e.Value))
					if err != nil {
						errs <- err
						return
					}
					_, err = s.Update(ctx, "counter", []byte(strconv.Itoa(n+1)), e.Revision, 0)
					if errors.Is(err, state.ErrConflict) {
						continue
					}
					if err != nil {
						errs <- fmt.Errorf("update: %w", err)
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, strconv.Itoa(workers*each), string(get(t, stores[len(stores)-1], "counter").Value))
}

func runTTL(t *testing.T, f Factory) {
	s := f.New(t, 0)(t)
	ctx := ctxT(t)
	w := Watch(t, s, "ttl/")
	const short = time.Second

	// Written in this order, so that once the last one expired every
	// earlier expiry has passed too.
	// A key is rewritten only once the watch reported its last write: a
	// watch behind a rewrite may report a Reset instead (see
	// state.Store.Watch), which is not what this case is about.
	k1, err := s.Put(ctx, "ttl/kept", []byte("k1"), short)
	require.NoError(t, err)
	w.await(t, "ttl/kept", k1)
	kept, err := s.Put(ctx, "ttl/kept", []byte("k2"), 0)
	require.NoError(t, err, "a write without a TTL makes the key lasting")
	lease, err := s.Create(ctx, "ttl/lease", []byte("l"), short)
	require.NoError(t, err)
	upd := put(t, s, "ttl/upd", "u")
	w.await(t, "ttl/upd", upd)
	upd, err = s.Update(ctx, "ttl/upd", []byte("u2"), upd, short)
	require.NoError(t, err)
	long, err := s.Put(ctx, "ttl/long", []byte("l"), time.Hour)
	require.NoError(t, err)
	last, err := s.Put(ctx, "ttl/short", []byte("s"), short)
	require.NoError(t, err)

	expired := map[string]uint64{"ttl/lease": lease, "ttl/upd": upd, "ttl/short": last}
	for len(expired) > 0 {
		c := w.Next(t)
		require.False(t, c.Reset)
		if !c.Deleted {
			continue // the writes above
		}
		rev, ok := expired[c.Key]
		require.True(t, ok, "unexpected deletion %+v", c)
		require.Greater(t, c.Revision, rev, "an expiry is a change after the write")
		require.Empty(t, c.Value)
		delete(expired, c.Key)
	}

	for _, k := range []string{"ttl/lease", "ttl/upd", "ttl/short"} {
		_, err := s.Get(ctx, k)
		require.ErrorIs(t, err, state.ErrNotFound, "get of expired %q", k)
	}
	_, err = s.Update(ctx, "ttl/short", []byte("x"), last, 0)
	require.ErrorIs(t, err, state.ErrNotFound, "update of an expired key")
	require.Equal(t, kept, get(t, s, "ttl/kept").Revision)
	require.Equal(t, long, get(t, s, "ttl/long").Revision)
	got, err := s.List(ctx, "ttl/")
	require.NoError(t, err)
	require.Equal(t, []string{"ttl/kept", "ttl/long"}, withoutSentinels(keys(got)))
	require.Contains(t, keys(got), w.prefix+sentinel, "a watch's sentinel is a key like any other")

	again, err := s.Create(ctx, "ttl/lease", []byte("l2"), short)
	require.NoError(t, err, "create over an expired key")
	require.Greater(t, again, last)
}

func runWatch(t *testing.T, f Factory) {
	s := f.New(t, 0)(t)
	ctx := ctxT(t)

	// The first change is a Reset, made once the watch is in place: a
	// write after it is seen, so a List then misses nothing.
	wctx, cancel := context.WithCancel(ctx)
	first := make(chan state.Change, 16)
	done := make(chan error, 1)
	go func() { done <- s.Watch(wctx, "first/", func(c state.Change) { first <- c }) }()
	select {
	case c := <-first:
		require.True(t, c.Reset, "the first change of a watch is a Reset, got %+v", c)
	case err := <-done:
		require.FailNow(t, "watch ended", "%v", err)
	case <-time.After(patience):
		require.FailNow(t, "no Reset at the start of a watch")
	}
	rf := put(t, s, "first/k", "v")
	select {
	case c := <-first:
		require.Equal(t, "first/k", c.Key)
		require.Equal(t, rf, c.Revision)
	case <-time.After(patience):
		require.FailNow(t, "a write right after the Reset was not seen")
	}
	cancel()
	<-done
	// A watch that may have missed a change says so with a Reset (a
	// replicated store's watch that fell behind does); the exact changes
	// are checked on an attempt without one, each attempt on keys of its own.
	var del state.Change
	for attempt := 0; ; attempt++ {
		require.Less(t, attempt, 5, "every attempt's watches were Reset")
		var clean bool
		if del, clean = watchAttempt(t, s, fmt.Sprintf("a%d/", attempt)); clean {
			break
		}
	}

	// A Deleted change's revision is no revision of a live key.
	_, err := s.Update(ctx, del.Key, []byte("revived"), del.Revision, 0)
	require.ErrorIs(t, err, state.ErrNotFound, "update at a deletion's revision")
	require.NoError(t, s.Delete(ctx, del.Key, del.Revision))
	_, err = s.Get(ctx, del.Key)
	require.ErrorIs(t, err, state.ErrNotFound)

	wctx, cancel = context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- s.Watch(wctx, "w/", func(state.Change) {}) }()
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled, "a watch ends with its context")
	case <-time.After(patience):
		require.FailNow(t, "watch did not end with its context")
	}
}

// watchAttempt checks what watches on "", root+"w/" and root+"w/n/" report
// of a few writes under root. It returns the deletion of root+"w/a" as the
// watch of root+"w/" reported it, and clean false when a watch reported a
// Reset (the changes are then not checked: they may be incomplete).
func watchAttempt(t *testing.T, s state.Store, root string) (state.Change, bool) {
	ctx := ctxT(t)
	all := Watch(t, s, "")
	w := Watch(t, s, root+"w/")
	nested := Watch(t, s, root+"w/n/")

	ra := put(t, s, root+"w/a", "1")
	rb := put(t, s, root+"w/b.c:d", "2")
	require.NoError(t, s.Delete(ctx, root+"w/a", 0))
	put(t, s, root+"x/a", "no")
	put(t, s, root+"wx", "no")
	rn := put(t, s, root+"w/n/x", "n")
	rc := put(t, s, root+"w/c", "3")
	last := func(c state.Change) bool { return c.Key == root+"w/c" }

	isReset := func(c state.Change) bool { return c.Reset }
	got := w.until(t, last)
	seen := all.until(t, last)
	c := nested.Next(t)
	if slices.ContainsFunc(got, isReset) || slices.ContainsFunc(seen, isReset) || c.Reset {
		return state.Change{}, false
	}
	var order []string
	for _, c := range seen {
		if strings.HasPrefix(c.Key, root) && !strings.HasSuffix(c.Key, sentinel) {
			order = append(order, fmt.Sprintf("%s %v", strings.TrimPrefix(c.Key, root), c.Deleted))
		}
	}

	require.Len(t, got, 5, "%+v", got)
	require.Equal(t, state.Change{Entry: state.Entry{Key: root + "w/a", Value: []byte("1"), Revision: ra}}, got[0])
	require.Equal(t, state.Change{Entry: state.Entry{Key: root + "w/b.c:d", Value: []byte("2"), Revision: rb}}, got[1])
	require.Equal(t, root+"w/a", got[2].Key)
	require.True(t, got[2].Deleted)
	require.Empty(t, got[2].Value)
	require.Greater(t, got[2].Revision, rb)
	require.Equal(t, state.Change{Entry: state.Entry{Key: root + "w/n/x", Value: []byte("n"), Revision: rn}}, got[3])
	require.Equal(t, state.Change{Entry: state.Entry{Key: root + "w/c", Value: []byte("3"), Revision: rc}}, got[4])
	require.Equal(t, []string{"w/a false", "w/b.c:d false", "w/a true", "x/a false", "wx false", "w/n/x false", "w/c false"}, order)

	require.Equal(t, root+"w/n/x", c.Key)
	require.NoError(t, s.Delete(ctx, root+"w/n/none", 0))
	// Deleting a missing key changes nothing: the next change is a marker's.
	rev, err := s.Put(ctx, root+"w/n/marker", []byte("m"), 0)
	require.NoError(t, err)
	if c = nested.Next(t); c.Reset {
		return state.Change{}, false
	}
	require.Equal(t, state.Change{Entry: state.Entry{Key: root + "w/n/marker", Value: []byte("m"), Revision: rev}}, c,
		"unexpected change before the marker")
	return got[2], true
}

func runBounds(t *testing.T, f Factory) {
	s := f.New(t, 0)(t)
	ctx := ctxT(t)
	over := make([]byte, state.MaxValueBytes+1)
	_, err := s.Put(ctx, "big", over, 0)
	require.ErrorIs(t, err, state.ErrTooLarge)
	_, err = s.Create(ctx, "big", over, 0)
	require.ErrorIs(t, err, state.ErrTooLarge)
	rev := put(t, s, "big", "small")
	_, err = s.Update(ctx, "big", over, rev, 0)
	require.ErrorIs(t, err, state.ErrTooLarge)
	_, err = s.Put(ctx, "big", over[:state.MaxValueBytes], 0)
	require.NoError(t, err, "a value of exactly MaxValueBytes")
	require.Len(t, get(t, s, "big").Value, state.MaxValueBytes)

	const limit, size = 64 << 10, 8 << 10
	b := f.New(t, limit)(t)
	value := make([]byte, size)
	stored := 0
	for ; stored < limit/size+4; stored++ {
		_, err := b.Put(ctx, "k/"+strconv.Itoa(stored), value, 0)
		if errors.Is(err, state.ErrTooLarge) {
			var full *state.FullError
			require.ErrorAs(t, err, &full, "a full store says so, with its bound")
			require.EqualValues(t, limit, full.Max)
			break
		}
		require.NoError(t, err)
	}
	require.Less(t, stored, limit/size+4, "a store over max bytes refuses writes")
	require.GreaterOrEqual(t, stored, limit/size-2, "the bound counts keys and values")
	require.NoError(t, b.Delete(ctx, "k/0", 0))
	_, err = b.Put(ctx, "k/again", value, 0)
	require.NoError(t, err, "a delete makes room")
}

func runReopen(t *testing.T, f Factory) {
	open := f.New(t, 0)
	s := open(t)
	r := put(t, s, "k", "v")
	rt, err := s.Put(ctxT(t), "t", []byte("ttl"), time.Hour)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	s = open(t)
	require.Equal(t, state.Entry{Key: "k", Value: []byte("v"), Revision: r}, get(t, s, "k"))
	require.Equal(t, rt, get(t, s, "t").Revision)
	require.Greater(t, put(t, s, "k2", "v"), rt, "revisions go on growing after a reopen")
}

// runShared: two Stores on one storage (two nodes on one bucket) see each
// other's writes, and a Create race between them has one winner.
func runShared(t *testing.T, f Factory) {
	open := f.New(t, 0)
	a, b := open(t), open(t)
	wb := Watch(t, b, "s/")

	ra := put(t, a, "s/x", "1")
	require.Equal(t, state.Entry{Key: "s/x", Value: []byte("1"), Revision: ra}, get(t, b, "s/x"))
	c := wb.Next(t)
	require.Equal(t, state.Change{Entry: state.Entry{Key: "s/x", Value: []byte("1"), Revision: ra}}, c)

	for i := 0; i < 20; i++ {
		key := "s/lease/" + strconv.Itoa(i)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for j, s := range []state.Store{a, b} {
			wg.Go(func() {
				_, errs[j] = s.Create(context.Background(), key, []byte(strconv.Itoa(j)), 0)
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
				continue
			}
			require.ErrorIs(t, err, state.ErrConflict)
		}
		require.Equal(t, 1, wins, "create race on %q", key)
	}
}
