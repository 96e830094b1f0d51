package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/sdktest"
	"github.com/stretchr/testify/require"
)

// In-process tests of what the plugin shares through its State: several
// instances of the plugin on one State behave as the kb processes of
// several Herald nodes on one JetStream bucket.

// node is one kb process.
type node struct {
	t *testing.T
	h *sdktest.Harness
	k *KB
}

func startNode(t *testing.T, fs *sdktest.MemState, cfg map[string]any) *node {
	t.Helper()
	k := New()
	k.stateOf = fs.Handle
	c := map[string]any{"data_dir": t.TempDir()}
	for key, v := range cfg {
		c[key] = v
	}
	before := fs.Watching()
	n := &node{t: t, h: sdktest.Start(t, k, c), k: k}
	n.eventually("the watch is in place", func() bool { return fs.Watching() > before })
	return n
}

func (n *node) call(method string, params map[string]any) (json.RawMessage, error) {
	return n.h.Call(method, sdktest.Backend(), params)
}

func (n *node) seqid(method string, params map[string]any) uint64 {
	n.t.Helper()
	res, err := n.call(method, params)
	require.NoError(n.t, err)
	var r struct{ Seqid uint64 }
	require.NoError(n.t, json.Unmarshal(res, &r))
	return r.Seqid
}

func (n *node) written(kbid, uuid string) uint64 {
	return n.seqid(typeWritten, map[string]any{"kbid": kbid, "resource_uuid": uuid, "operation": "created"})
}

func (n *node) waiting() int {
	n.t.Helper()
	res, err := n.call("stats", map[string]any{})
	require.NoError(n.t, err)
	var st kbStats
	require.NoError(n.t, json.Unmarshal(res, &st))
	return st.Waiters
}

// eventually waits for cond, up to sdktest.Timeout.
func (n *node) eventually(what string, cond func() bool) {
	n.t.Helper()
	require.Eventually(n.t, cond, sdktest.Timeout, 5e6, what)
}

// startSDKNode runs a kb process on st, the SDK's test store, reached
// through the plugin protocol as from Herald.
func startSDKNode(t *testing.T, st *sdktest.State, cfg map[string]any) *node {
	t.Helper()
	k := New()
	c := map[string]any{"data_dir": t.TempDir()}
	for key, v := range cfg {
		c[key] = v
	}
	return &node{t: t, h: st.Start(t, k, c), k: k}
}

// onBothStores runs test with nodes on one sdktest.MemState, then on one
// sdktest.State (the SDK's State client over the plugin protocol).
func onBothStores(t *testing.T, test func(t *testing.T, start func(cfg map[string]any) *node)) {
	t.Run("fake", func(t *testing.T) {
		fs := sdktest.NewMemState()
		test(t, func(cfg map[string]any) *node { return startNode(t, fs, cfg) })
	})
	t.Run("sdktest", func(t *testing.T) {
		st := sdktest.NewState()
		test(t, func(cfg map[string]any) *node { return startSDKNode(t, st, cfg) })
	})
}

// result is a call's answer made on another goroutine (a write hook).
type result struct {
	mu  sync.Mutex
	res json.RawMessage
	err error
}

func (r *result) set(res json.RawMessage, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res, r.err = res, err
}

func (r *result) get(t *testing.T) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NoError(t, r.err)
	return string(r.res)
}

// Seqids are one counter per KB across nodes: interleaved and concurrent
// reports through two nodes get every seqid once, without a gap.
func TestSeqidsUniqueAndGaplessAcrossNodes(t *testing.T) {
	onBothStores(t, testSeqidsUniqueAndGapless)
}

func testSeqidsUniqueAndGapless(t *testing.T, start func(map[string]any) *node) {
	a, b := start(nil), start(nil)
	require.Equal(t, uint64(1), a.written("kb1", "r1"))
	require.Equal(t, uint64(2), b.written("kb1", "r2"))
	require.Equal(t, uint64(1), b.written("kb2", "r1"), "one counter per KB")
	require.Equal(t, uint64(3), a.written("kb1", "r3"))

	const each = 20
	var mu sync.Mutex
	var got []uint64
	var wg sync.WaitGroup
	errs := make(chan error, 4*each)
	for _, n := range []*node{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				res, err := n.call(typeWritten, map[string]any{"kbid": "kb1", "resource_uuid": "x", "operation": "created"})
				if err != nil {
					errs <- err
					return
				}
				var r struct{ Seqid uint64 }
				_ = json.Unmarshal(res, &r)
				mu.Lock()
				got = append(got, r.Seqid)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	want := make([]uint64, 4*each)
	for i := range want {
		want[i] = uint64(4 + i)
	}
	require.Equal(t, want, got, "every seqid from 4 on, once")
	// Every seqid announced once, by the node that took it.
	seen := map[uint64]int{}
	for _, n := range []*node{a, b} {
		for _, e := range n.h.Emitted() {
			if e.Channel == "kb:kb1" {
				var obj struct{ Data struct{ Seqid uint64 } }
				require.NoError(t, json.Unmarshal(e.Object, &obj))
				seen[obj.Data.Seqid]++
			}
		}
	}
	require.Len(t, seen, 3+4*each)
	for s, c := range seen {
		require.Equal(t, 1, c, "seqid %d", s)
	}
}

// The counter is a compare-and-set: a node that read it before another
// node took a seqid reads again, and takes the next one.
func TestSeqidConflictIsRetried(t *testing.T) {
	fs := sdktest.NewMemState()
	a, b := startNode(t, fs, nil), startNode(t, fs, nil)
	for i, kbid := range []string{"kb1", "kb2"} {
		// kb1: the counter is created by both; kb2: it exists and is
		// updated by both.
		if i == 1 {
			require.Equal(t, uint64(1), a.written(kbid, "first"))
		}
		var fired atomic.Bool
		var fromB result
		fs.SetBeforeWrite(func(key string) {
			if key == "kb/"+kbid+"/last" && fired.CompareAndSwap(false, true) {
				fromB.set(b.call(typeWritten, map[string]any{"kbid": kbid, "resource_uuid": "from-b", "operation": "created"}))
			}
		})
		require.Equal(t, uint64(i+2), a.written(kbid, "from-a"), kbid)
		fs.SetBeforeWrite(nil)
		require.JSONEq(t, fmt.Sprintf(`{"seqid":%d}`, i+1), fromB.get(t), kbid)
		require.Equal(t, uint64(i+3), b.written(kbid, "next"), kbid)
	}
}

// Two reports of one write's processing through two nodes at once: one
// wins, the other is refused naming the winner's seqid.
func TestProcessedOnceAcrossNodes(t *testing.T) {
	fs := sdktest.NewMemState()
	a, b := startNode(t, fs, nil), startNode(t, fs, nil)
	w := a.written("kb1", "r")
	wKey := a.k.store.RecordKey("kb1", w)
	var fired atomic.Bool
	var fromB result
	fs.SetBeforeWrite(func(key string) {
		if key == wKey && fired.CompareAndSwap(false, true) { // a is about to mark the write: b gets there first
			fromB.set(b.call(typeProcessed, map[string]any{"kbid": "kb1", "resource_uuid": "r", "written_seqid": w}))
		}
	})
	_, err := a.call(typeProcessed, map[string]any{"kbid": "kb1", "resource_uuid": "r", "written_seqid": w})
	fs.SetBeforeWrite(nil)
	require.JSONEq(t, `{"seqid":3}`, fromB.get(t), "a took 2 before b got there")
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodeInvalidParams, e.Code)
	require.Contains(t, e.Message, "already processed, as seqid 3")
	// a's seqid (2) was taken and is never handed out again.
	require.Equal(t, uint64(4), b.written("kb1", "r2"))
	var processed int
	for _, n := range []*node{a, b} {
		for _, e := range n.h.Emitted() {
			if e.Event == typeProcessed {
				processed++
			}
		}
	}
	require.Equal(t, 1, processed, "one resource_processed announced")
}

// Index replicas reporting through different nodes are all counted, and
// one beyond index_replicas is refused, whichever node it comes through.
func TestIndexedCountedAcrossNodes(t *testing.T) {
	fs := sdktest.NewMemState()
	a, b := startNode(t, fs, nil), startNode(t, fs, nil)
	w := a.written("kb1", "r")
	idx := map[string]any{"kbid": "kb1", "resource_uuid": "r", "seqid": w}
	// b's report lands between a's read and a's write.
	var fired atomic.Bool
	var fromB result
	fs.SetBeforeWrite(func(string) {
		if fired.CompareAndSwap(false, true) {
			fromB.set(b.call(typeIndexed, idx))
		}
	})
	res, err := a.call(typeIndexed, idx)
	fs.SetBeforeWrite(nil)
	require.JSONEq(t, `{"seqid":1,"replicas":1,"indexed":false}`, fromB.get(t))
	require.NoError(t, err)
	require.JSONEq(t, `{"seqid":1,"replicas":2,"indexed":true}`, string(res))
	_, err = b.call(typeIndexed, idx)
	require.ErrorContains(t, err, "already indexed by all 2 replicas")
}

// kb.waitFor on one node answers when the report arrives through another:
// written for a seqid not taken yet, processed, indexed.
func TestWaitForWakesOnAnotherNode(t *testing.T) {
	onBothStores(t, testWaitForWakesOnAnotherNode)
}

func testWaitForWakesOnAnotherNode(t *testing.T, start func(map[string]any) *node) {
	a, b := start(nil), start(nil)
	type answer struct {
		res json.RawMessage
		err error
	}
	wait := func(seqid uint64, until string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			res, err := b.call("waitFor", map[string]any{"kbid": "kb1", "seqid": seqid, "until": until, "timeout": 300})
			ch <- answer{res, err}
		}()
		b.eventually("b's waiter waits", func() bool { return b.waiting() == 1 })
		return ch
	}

	written := wait(1, untilWritten)
	w := a.written("kb1", "r")
	got := <-written
	require.NoError(t, got.err)
	require.Contains(t, string(got.res), `"type":"resource_written"`)

	processed := wait(w, untilProcessed)
	p := a.seqid(typeProcessed, map[string]any{"kbid": "kb1", "resource_uuid": "r", "written_seqid": w})
	got = <-processed
	require.NoError(t, got.err)
	require.Contains(t, string(got.res), `"processed_seqid":2`)

	indexed := wait(p, untilIndexed)
	_, err := a.call(typeIndexed, map[string]any{"kbid": "kb1", "resource_uuid": "r", "seqid": p})
	require.NoError(t, err)
	select {
	case got := <-indexed:
		t.Fatalf("answered after one of two replicas: %s %v", got.res, got.err)
	default:
	}
	_, err = a.call(typeIndexed, map[string]any{"kbid": "kb1", "resource_uuid": "r", "seqid": p})
	require.NoError(t, err)
	got = <-indexed
	require.NoError(t, got.err)
	require.Contains(t, string(got.res), `"indexed_replicas":2`)
	require.Equal(t, 0, b.waiting())
}

// When the watch says changes may have been missed (Reset), waiters read
// their record again: a change the watch never reported still wakes them.
func TestWatchResetMakesWaitersReadAgain(t *testing.T) {
	fs := sdktest.NewMemState()
	a := startNode(t, fs, nil)
	w := a.written("kb1", "r")
	ch := make(chan error, 1)
	go func() {
		_, err := a.call("waitFor", map[string]any{"kbid": "kb1", "seqid": w, "until": "processed", "timeout": 300})
		ch <- err
	}()
	a.eventually("the waiter waits", func() bool { return a.waiting() == 1 })
	// The record changes behind the watch's back.
	key := a.k.store.RecordKey("kb1", w)
	e, ok := fs.Entry(key)
	require.True(t, ok)
	var rec record
	require.NoError(t, json.Unmarshal(e.Value, &rec))
	rec.Processed = 7
	v, _ := json.Marshal(rec)
	fs.WriteUnseen(key, v, false)
	require.Equal(t, 1, a.waiting(), "no change reported: still waiting")
	fs.ResetWatchers()
	require.NoError(t, <-ch)
}

// Pruning keeps the last keep_operations records of a KB whichever nodes
// take the seqids, and a node with a lower keep_operations catches up.
func TestPruneAcrossNodes(t *testing.T) {
	fs := sdktest.NewMemState()
	start := func(cfg map[string]any) *node { return startNode(t, fs, cfg) }
	a := start(map[string]any{"keep_operations": 3})
	b := start(map[string]any{"keep_operations": 3})
	for i := 1; i <= 10; i++ {
		n := a
		if i%2 == 0 {
			n = b
		}
		require.Equal(t, uint64(i), n.written("kb1", "r"))
	}
	ops := func() []string {
		var out []string
		for _, k := range fs.Keys("kb/kb1/ops/") {
			out = append(out, strings.TrimLeft(strings.TrimPrefix(k, "kb/kb1/ops/"), "0"))
		}
		return out
	}
	require.Equal(t, []string{"8", "9", "10"}, ops())
	_, err := b.call("waitFor", map[string]any{"kbid": "kb1", "seqid": 7, "until": "written"})
	require.ErrorContains(t, err, "older than the operations kept")

	c := start(map[string]any{"keep_operations": 1})
	require.Equal(t, uint64(11), c.written("kb1", "r"))
	require.Equal(t, []string{"11"}, ops())
}

// A crash between the pruning and the counter's write leaves records that
// the next seqid deletes again.
func TestPruneRedoneAfterACrash(t *testing.T) {
	fs := sdktest.NewMemState()
	a := startNode(t, fs, map[string]any{"keep_operations": 2})
	for i := 1; i <= 3; i++ {
		a.written("kb1", "r")
	}
	// Put back record 1 as if the prune of seqid 3 had not happened, and
	// the mark with it.
	ctx := context.Background()
	require.NoError(t, a.k.store.Create(ctx, "kb1", 1, record{Type: typeWritten, UUID: "r", Op: "created"}))
	e, err := fs.Get(ctx, "kb/kb1/last")
	require.NoError(t, err)
	_, err = fs.Update(ctx, "kb/kb1/last", []byte(`{"last":3,"pruned":0}`), e.Revision)
	require.NoError(t, err)
	a.written("kb1", "r")
	require.Equal(t, []string{"kb/kb1/last", "kb/kb1/ops/00000000000000000003", "kb/kb1/ops/00000000000000000004"}, fs.Keys("kb/"))
}

// A dry run checks the config and touches no state.
func TestDryRunTouchesNoState(t *testing.T) {
	k := New()
	k.stateOf = func(sdk.Host) (sdk.State, error) {
		t.Fatal("a dry run took the state")
		return nil, nil
	}
	require.NoError(t, k.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{"data_dir": t.TempDir()})))
	require.ErrorContains(t, k.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{"keep_operations": 0})), "config.keep_operations: must be from 1")
}

// Without a State the plugin does not start, and says why; next to an
// earlier version's kb.db neither. data_dir is needed for nothing else.
func TestConfigureNeedsStateAndRefusesAnOldKBDB(t *testing.T) {
	k := New()
	k.stateOf = func(sdk.Host) (sdk.State, error) { return nil, sdk.ErrNoState }
	_, err := sdktest.StartErr(t, k, map[string]any{"data_dir": t.TempDir()})
	require.ErrorContains(t, err, sdk.ErrNoState.Error())

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kb.db"), []byte("old"), 0o600))
	k = New()
	k.stateOf = sdktest.NewMemState().Handle
	_, err = sdktest.StartErr(t, k, map[string]any{"data_dir": dir})
	require.ErrorContains(t, err, "earlier kb plugin")
	h := sdktest.Start(t, New(), map[string]any{})
	_, err = h.Call(typeWritten, sdktest.Backend(), map[string]any{"kbid": "kb1", "resource_uuid": "r", "operation": "created"})
	require.NoError(t, err)
}

// While the state cannot be reached (NATS down, in a cluster) a report
// fails with -32050, retry later, and takes nothing: once it is back the
// counter goes on where it was.
func TestStateUnavailableIsRetryLater(t *testing.T) {
	fs := sdktest.NewMemState()
	a := startNode(t, fs, nil)
	require.Equal(t, uint64(1), a.written("kb1", "r"))
	fs.SetDown(true)
	_, err := a.call(typeWritten, map[string]any{"kbid": "kb1", "resource_uuid": "r", "operation": "created"})
	var e *sdk.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, sdk.CodePluginUnavailable, e.Code)
	require.Contains(t, e.Message, "retry later")
	fs.SetDown(false)
	require.Equal(t, uint64(2), a.written("kb1", "r"))
}

// Every bad key of the block is reported, each as its own line naming the
// key (the host shows each at its key's position), in a dry run as at a
// start: the range errors and an earlier version's kb.db in data_dir.
func TestConfigReportsEveryBadKeyAtItsKey(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kb.db"), []byte("old"), 0o600))
	k := New()
	k.stateOf = func(sdk.Host) (sdk.State, error) {
		t.Fatal("a dry run took the state")
		return nil, nil
	}
	err := k.Configure(context.Background(), nil, sdk.NewDryRunConfig(map[string]any{
		"index_replicas": 65, "max_streams": 0, "data_dir": dir}))
	var se *sdk.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, []string{
		"config.index_replicas: must be from 1 to 64, got 65",
		"config.max_streams: must be from 1 to 1000000, got 0",
		"config.data_dir: " + filepath.Join(dir, "kb.db") + " is the seqid store of an earlier kb plugin, which this version does not read (it keeps seqids in Herald's plugin state): starting would hand out its seqids again; remove the file to start every KB from seqid 1",
	}, strings.Split(se.Message, "\n"))
}
