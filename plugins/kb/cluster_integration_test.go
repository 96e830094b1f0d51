package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/heraldhq/herald/internal/heraldtest"
	"github.com/heraldhq/herald/internal/natstest"
	"github.com/stretchr/testify/require"
)

// Two herald nodes on one NATS server (JetStream in process), each running
// its own kb process: the plugin's state is the JetStream bucket they share.

// startClusterNodes starts n herald nodes with the kb plugin on the NATS
// server at url.
func startClusterNodes(t *testing.T, url string, n int) []*stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: starts NATS, herald nodes and the kb plugin")
	}
	nodes := make([]*stack, n)
	for i := range nodes {
		nodes[i] = &stack{Stack: heraldtest.StartPlugin(t, heraldtest.PluginOptions{Name: "kb", NATS: url}), t: t}
	}
	return nodes
}

// Seqids are one counter per KB across nodes: reports through both nodes,
// one after the other and at once, get every seqid once and without gap;
// every node's clients see every notification, with the same seq.
func TestIntegrationClusterSeqidsAcrossNodes(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startClusterNodes(t, ns.URL(), 2)
	a, b := nodes[0], nodes[1]
	wsA, wsB := a.dial("alice", "kb1"), b.dial("bob", "kb1")
	wsA.Subscribe(t, "kb:kb1")
	wsB.Subscribe(t, "kb:kb1")

	require.Equal(t, uint64(1), a.written("kb1", "r1", "created"))
	require.Equal(t, uint64(2), b.written("kb1", "r2", "created"))
	require.Equal(t, uint64(3), b.processed("kb1", "r1", 1), "a write recorded through a, processed through b")
	st, body := a.backend("resource_processed", map[string]any{"kbid": "kb1", "resource_uuid": "r1", "written_seqid": 1})
	require.Equal(t, http.StatusBadRequest, st, "processed once, whichever node: %s", body)
	require.Contains(t, string(body), "already processed, as seqid 3")

	// Both nodes at once: plain net/http, the helpers fail the test, which
	// only the test's own goroutine may do.
	const each = 15
	var mu sync.Mutex
	var got []uint64
	errs := make(chan error, 2)
	for _, n := range nodes {
		go func() {
			for i := 0; i < each; i++ {
				req, _ := http.NewRequest(http.MethodPost, n.URL+"/v1/plugins/kb/resource_written",
					strings.NewReader(fmt.Sprintf(`{"kbid":"kb1","resource_uuid":"c%d","operation":"created"}`, i)))
				req.Header.Set("Authorization", "Bearer "+heraldtest.APIKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				var r struct{ Seqid uint64 }
				err = json.NewDecoder(resp.Body).Decode(&r)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("resource_written: %s %v", resp.Status, err)
					return
				}
				mu.Lock()
				got = append(got, r.Seqid)
				mu.Unlock()
			}
			errs <- nil
		}()
	}
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	for i, s := range got {
		require.Equal(t, uint64(4+i), s, "every seqid from 4 on, once")
	}

	// Every notification on both nodes, with the same seq and object.
	total := 3 + 2*each
	na, nb := wsA.Notifications(t, total), wsB.Notifications(t, total)
	seqids := map[uint64]bool{}
	for i := range na {
		require.Equal(t, uint64(i+1), na[i].Seq)
		require.Equal(t, na[i].Seq, nb[i].Seq)
		require.Equal(t, string(na[i].Object), string(nb[i].Object))
		var n struct{ Data struct{ Seqid uint64 } }
		require.NoError(t, json.Unmarshal(na[i].Object, &n))
		require.False(t, seqids[n.Data.Seqid], "seqid %d announced twice", n.Data.Seqid)
		seqids[n.Data.Seqid] = true
	}
	require.Len(t, seqids, total)
}

// kb.waitFor on node B answers when the report arrives through node A.
func TestIntegrationClusterWaitForWakesAcrossNodes(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startClusterNodes(t, ns.URL(), 2)
	a, b := nodes[0], nodes[1]
	onB := b.dial("alice", "kb1")
	type answer struct {
		res json.RawMessage
		e   *heraldtest.RPCError
	}
	wait := func(seqid uint64, until string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			res, e, _ := onB.Call("kb.waitFor", map[string]any{"kbid": "kb1", "seqid": seqid, "until": until, "timeout": 60})
			ch <- answer{res, e}
		}()
		b.eventually("the waiter waits on b", func() bool { return b.stats().Waiters == 1 })
		return ch
	}

	written := wait(1, "written")
	w := a.written("kb1", "r", "created")
	got := <-written
	require.Nil(t, got.e)
	require.Contains(t, string(got.res), `"type":"resource_written"`)

	processed := wait(w, "processed")
	p := a.processed("kb1", "r", w)
	got = <-processed
	require.Nil(t, got.e)
	require.Contains(t, string(got.res), fmt.Sprintf(`"processed_seqid":%d`, p))

	indexed := wait(p, "indexed")
	a.indexed("kb1", "r", p)
	require.Equal(t, 1, b.stats().Waiters, "one replica is not every replica")
	b.indexed("kb1", "r", p)
	got = <-indexed
	require.Nil(t, got.e)
	require.Contains(t, string(got.res), `"indexed_replicas":2`)

	// A stream on b carries what was reported through a, then live.
	st := b.open("kb1", "since=0", heraldtest.APIKey)
	require.Equal(t, http.StatusOK, st.resp.StatusCode)
	for _, typ := range []string{"resource_written", "resource_processed", "resource_indexed", "resource_indexed"} {
		require.Contains(t, st.next(t), `"type":"`+typ+`"`)
	}
	a.written("kb1", "live", "created")
	require.Contains(t, st.next(t), `"resource_uuid":"live"`)
}

// A herald node killed (kill -9) in the middle of reports through both
// nodes: no seqid is ever answered twice, and the surviving node goes on
// above every seqid answered before.
func TestIntegrationClusterNodeKilledNeverReusesSeqids(t *testing.T) {
	ns := natstest.Start(t)
	nodes := startClusterNodes(t, ns.URL(), 2)
	type answer struct {
		seqid uint64
		err   error
	}
	answers := make(chan answer, 10_000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() { // ends at stop
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"kbid":"kb1","resource_uuid":"n%d-%d","operation":"created"}`, i, j)
				req, _ := http.NewRequest(http.MethodPost, n.URL+"/v1/plugins/kb/resource_written", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+heraldtest.APIKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					select {
					case answers <- answer{err: err}:
					case <-stop:
						return
					}
					continue
				}
				var r struct{ Seqid uint64 }
				if resp.StatusCode == http.StatusOK {
					err = json.NewDecoder(resp.Body).Decode(&r)
				} else {
					err = fmt.Errorf("%s", resp.Status)
				}
				_ = resp.Body.Close()
				select {
				case answers <- answer{r.Seqid, err}:
				case <-stop:
					return
				}
			}
		}()
	}
	var got []answer
	for len(got) < 40 {
		got = append(got, <-answers)
	}
	nodes[0].Signal(t, syscall.SIGKILL)
	close(stop)
	wg.Wait()
	close(answers)
	for a := range answers {
		got = append(got, a)
	}
	seen := map[uint64]bool{}
	var max uint64
	for _, a := range got {
		if a.err != nil {
			continue
		}
		require.False(t, seen[a.seqid], "seqid %d answered twice", a.seqid)
		seen[a.seqid] = true
		if a.seqid > max {
			max = a.seqid
		}
	}
	require.NotEmpty(t, seen)
	require.Greater(t, nodes[1].written("kb1", "after", "created"), max)
}
