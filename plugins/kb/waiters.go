package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// waiters holds the kb.waitFor calls that wait: no polling, each waits on
// a channel that the report changing its seqid closes.
type waiters struct {
	maxPerConn, maxBackend int

	mu      sync.Mutex
	watches map[watchKey]*watch
	perConn map[string]int // connection id ("" for backends) -> waiting calls
	total   int
}

type watchKey struct {
	kbid  string
	seqid uint64
}

type watch struct {
	ch chan struct{} // closed when the seqid's record changes
	n  int           // waiters on ch
}

func newWaiters(maxPerConn, maxBackend int) *waiters {
	return &waiters{maxPerConn: maxPerConn, maxBackend: maxBackend, watches: map[watchKey]*watch{}, perConn: map[string]int{}}
}

// admit counts one more waiting call of conn, within its bound.
func (w *waiters) admit(c sdk.Caller) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	key, limit, what := c.ConnID, w.maxPerConn, "max_waiters, per connection"
	if c.Backend {
		key, limit, what = "", w.maxBackend, "max_backend_waiters, for all backends"
	}
	if w.perConn[key] >= limit {
		return sdk.LimitExceeded(fmt.Sprintf("limit exceeded: %d kb.waitFor calls are already waiting (%s); wait for their answers", limit, what))
	}
	w.perConn[key]++
	w.total++
	return nil
}

func (w *waiters) leave(c sdk.Caller) {
	key := c.ConnID
	if c.Backend {
		key = ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.perConn[key] <= 1 {
		delete(w.perConn, key)
	} else {
		w.perConn[key]--
	}
	w.total--
}

func (w *waiters) count() int {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// watch returns the channel closed at the next change of (kbid, seqid).
// The KB's stripe is held, so no wake can come in between a check and this.
func (w *waiters) watch(kbid string, seqid uint64) *watch {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := watchKey{kbid, seqid}
	wt := w.watches[k]
	if wt == nil {
		wt = &watch{ch: make(chan struct{})}
		w.watches[k] = wt
	}
	wt.n++
	return wt
}

// unwatch drops a waiter that stopped waiting on wt before it was woken.
func (w *waiters) unwatch(kbid string, seqid uint64, wt *watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := watchKey{kbid, seqid}
	if w.watches[k] != wt {
		return // woken meanwhile: already gone
	}
	if wt.n--; wt.n == 0 {
		delete(w.watches, k)
	}
}

// wake wakes every waiter of (kbid, seqid).
func (w *waiters) wake(kbid string, seqid uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := watchKey{kbid, seqid}
	if wt := w.watches[k]; wt != nil {
		close(wt.ch)
		delete(w.watches, k)
	}
}

// waitResult answers kb.waitFor.
type waitResult struct {
	KBID           string `json:"kbid"`
	SeqID          uint64 `json:"seqid"`
	Until          string `json:"until"`
	Type           string `json:"type"` // the seqid's notification type
	UUID           string `json:"resource_uuid"`
	Operation      string `json:"operation,omitempty"`
	WrittenSeqID   uint64 `json:"written_seqid,omitempty"`
	ProcessedSeqID uint64 `json:"processed_seqid,omitempty"`
	IndexedBy      int    `json:"indexed_replicas"`
}

// waitMargin is how long before the host's own deadline for the call
// kb.waitFor gives up, so that the caller gets its clear error rather than
// the host's "did not answer in time".
const waitMargin = 100 * time.Millisecond

// waitFor {kbid, seqid, until, timeout?} answers once the operation seqid
// of kbid reached the stage until: at once if it has, when the report that
// gets it there arrives otherwise, and fails at the timeout.
func (k *KB) waitFor(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseWait(call.Params)
	if err != nil {
		return nil, err
	}
	if !mayRead(call.Caller, r.KBID) {
		return nil, forbidden(call.Caller, r.KBID)
	}
	timeout := time.Duration(r.Timeout * float64(time.Second))
	deadline := time.Now().Add(timeout)
	hostBound := false
	if d, ok := ctx.Deadline(); ok && d.Add(-waitMargin).Before(deadline) {
		deadline, hostBound = d.Add(-waitMargin), true
	}
	if err := k.waiters.admit(call.Caller); err != nil {
		return nil, err
	}
	defer k.waiters.leave(call.Caller)
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()

	mu := k.stripe(r.KBID)
	for {
		mu.Lock()
		res, done, err := k.stage(ctx, r)
		if done || err != nil {
			mu.Unlock()
			return res, err
		}
		wt := k.waiters.watch(r.KBID, r.SeqID)
		mu.Unlock()
		select {
		case <-wt.ch:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		k.waiters.unwatch(r.KBID, r.SeqID, wt)
		msg := fmt.Sprintf("timeout: seqid %d of kb %s did not reach %q within %gs", r.SeqID, r.KBID, r.Until, r.Timeout)
		if hostBound {
			msg = fmt.Sprintf("timeout: seqid %d of kb %s did not reach %q within the host's limits.call_timeout (shorter than the %gs asked); raise limits.call_timeout to wait longer", r.SeqID, r.KBID, r.Until, r.Timeout)
		}
		return nil, sdk.LimitExceeded(msg).WithData(map[string]any{"reason": "timeout", "kbid": r.KBID, "seqid": r.SeqID, "until": r.Until})
	}
}

// stage reports whether r's stage is reached (with the answer), or why it
// never will be. The stripe is held.
func (k *KB) stage(ctx context.Context, r waitReq) (waitResult, bool, error) {
	rec, ok, last, err := k.store.Get(ctx, r.KBID, r.SeqID)
	if err != nil {
		return waitResult{}, false, err
	}
	if !ok {
		if r.SeqID > last {
			return waitResult{}, false, nil // not written yet
		}
		return waitResult{}, false, fieldError("seqid", "kb %s has no record of seqid %d: it is older than the operations kept (keep_operations), or its report failed", r.KBID, r.SeqID)
	}
	res := waitResult{KBID: r.KBID, SeqID: r.SeqID, Until: r.Until, Type: rec.Type, UUID: rec.UUID, Operation: rec.Op,
		WrittenSeqID: rec.Written, ProcessedSeqID: rec.Processed, IndexedBy: rec.Indexed}
	switch r.Until {
	case untilWritten:
		return res, true, nil
	case untilProcessed:
		switch {
		case rec.Type == typeProcessed || rec.Processed != 0:
			return res, true, nil
		case rec.Op == "deleted":
			return waitResult{}, false, fieldError("until", "seqid %d of kb %s deleted resource %q: a deletion is never processed", r.SeqID, r.KBID, rec.UUID)
		}
		return res, false, nil
	default: // indexed
		return res, rec.Indexed >= k.cfg.IndexReplicas, nil
	}
}
