package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// waiters holds the kb.waitFor calls that wait: no polling, each waits on
// a channel closed by the next change of its seqid's record, whichever
// node's process made it. The changes come from the watch of the plugin's
// state (watchState) and, for this process's own reports, at once from
// the report.
type waiters struct {
	maxPerConn, maxBackend int

	mu      sync.Mutex
	watches map[string]*watch // by the record's state key
	perConn map[string]int    // connection id ("" for backends) -> waiting calls
	total   int
}

type watch struct {
	ch chan struct{} // closed when the seqid's record changes
	n  int           // waiters on ch
}

func newWaiters(maxPerConn, maxBackend int) *waiters {
	return &waiters{maxPerConn: maxPerConn, maxBackend: maxBackend, watches: map[string]*watch{}, perConn: map[string]int{}}
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

// watch returns the channel closed at the next change of the record under
// key. A waiter watches before it reads the record, so that no change can
// come in between unseen.
func (w *waiters) watch(key string) *watch {
	w.mu.Lock()
	defer w.mu.Unlock()
	wt := w.watches[key]
	if wt == nil {
		wt = &watch{ch: make(chan struct{})}
		w.watches[key] = wt
	}
	wt.n++
	return wt
}

// unwatch drops a waiter that stopped waiting on wt before it was woken.
func (w *waiters) unwatch(key string, wt *watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watches[key] != wt {
		return // woken meanwhile: already gone
	}
	if wt.n--; wt.n == 0 {
		delete(w.watches, key)
	}
}

// wake wakes every waiter of the record under key.
func (w *waiters) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt := w.watches[key]; wt != nil {
		close(wt.ch)
		delete(w.watches, key)
	}
}

// wakeAll wakes every waiter, to read its record again: changes may have
// been missed (the watch was reset or restarted).
func (w *waiters) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, wt := range w.watches {
		close(wt.ch)
		delete(w.watches, key)
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

	key := k.store.RecordKey(r.KBID, r.SeqID)
	for {
		wt := k.waiters.watch(key)
		res, done, err := k.stage(ctx, r)
		if done || err != nil {
			k.waiters.unwatch(key, wt)
			return res, err
		}
		select {
		case <-wt.ch:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		k.waiters.unwatch(key, wt)
		msg := fmt.Sprintf("timeout: seqid %d of kb %s did not reach %q within %gs", r.SeqID, r.KBID, r.Until, r.Timeout)
		if hostBound {
			msg = fmt.Sprintf("timeout: seqid %d of kb %s did not reach %q within the host's limits.call_timeout (shorter than the %gs asked); raise limits.call_timeout to wait longer", r.SeqID, r.KBID, r.Until, r.Timeout)
		}
		return nil, sdk.LimitExceeded(msg).WithData(map[string]any{"reason": "timeout", "kbid": r.KBID, "seqid": r.SeqID, "until": r.Until})
	}
}

// stage reports whether r's stage is reached (with the answer), or why it
// never will be.
func (k *KB) stage(ctx context.Context, r waitReq) (waitResult, bool, error) {
	rec, _, ok, err := k.store.Get(ctx, r.KBID, r.SeqID)
	if err != nil {
		return waitResult{}, false, err
	}
	if !ok {
		_, pruned, err := k.store.Counter(ctx, r.KBID)
		if err != nil {
			return waitResult{}, false, err
		}
		if r.SeqID <= pruned {
			return waitResult{}, false, fieldError("seqid", "kb %s has no record of seqid %d: it is older than the operations kept (keep_operations)", r.KBID, r.SeqID)
		}
		// Not taken yet, or taken and not yet recorded (a report in
		// flight, maybe on another node): its record wakes the wait. The
		// seqid of a report that failed stays without a record: the wait
		// ends at its timeout.
		return waitResult{}, false, nil
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
