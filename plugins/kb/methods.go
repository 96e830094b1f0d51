package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"

	"github.com/heraldhq/herald/sdk"
)

// The payloads, field for field and in the order of NucliaDB's models
// (nucliadb_models/notifications.py): every field always present, the
// defaults applied, resource_title "" when the backend gave none.

type notification struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

type writtenData struct {
	UUID      string `json:"resource_uuid"`
	Title     string `json:"resource_title"`
	SeqID     uint64 `json:"seqid"`
	Operation string `json:"operation"`
	Error     bool   `json:"error"`
}

type processedData struct {
	UUID               string `json:"resource_uuid"`
	Title              string `json:"resource_title"`
	SeqID              uint64 `json:"seqid"`
	IngestionSucceeded bool   `json:"ingestion_succeeded"`
	ProcessingErrors   bool   `json:"processing_errors"`
}

type indexedData struct {
	UUID  string `json:"resource_uuid"`
	Title string `json:"resource_title"`
	SeqID uint64 `json:"seqid"`
}

// seqidResult answers resource_written and resource_processed.
type seqidResult struct {
	SeqID uint64 `json:"seqid"`
}

// indexedResult answers resource_indexed.
type indexedResult struct {
	SeqID    uint64 `json:"seqid"`
	Replicas int    `json:"replicas"` // how many replicas reported it so far
	Indexed  bool   `json:"indexed"`  // every replica did
}

// announce emits one notification on kb:<kbid>; the stripe is held.
func (k *KB) announce(ctx context.Context, kbid, typ string, data any) error {
	obj, err := json.Marshal(notification{Type: typ, Data: data})
	if err != nil {
		return sdk.Internal("encode notification: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(ctx, emitTimeout)
	defer cancel()
	_, err = k.host.Emit(ctx, sdk.Notification{Channel: prefix + kbid, Event: typ, ObjectType: "kb", Object: json.RawMessage(obj)})
	if err != nil {
		return fmt.Errorf("emit %s on %s%s: %w", typ, prefix, kbid, err)
	}
	return nil
}

// undoCtx is the context of an undo after a failed emit: the call's
// context may be what ended (its deadline), and the undo must still run.
func undoCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), emitTimeout)
}

// forget deletes the record of a seqid whose notification could not be
// emitted: the seqid stays taken (never reused), but no waiter will ever
// take it for announced.
func (k *KB) forget(ctx context.Context, kbid string, seqid uint64) {
	ctx, cancel := undoCtx(ctx)
	defer cancel()
	if err := k.store.Delete(ctx, kbid, seqid); err != nil {
		k.log.Error("could not forget an unannounced seqid", "kbid", kbid, "seqid", seqid, "error", err)
	}
}

// resourceWritten {kbid, resource_uuid, resource_title?, operation, error?}
// takes the KB's next seqid, durably, records it, then announces it;
// answers {seqid}. A crash after the seqid was taken and before its record
// was written leaves a seqid without a record: it is never handed out
// again, and kb.waitFor on it waits for nothing until its timeout.
func (k *KB) resourceWritten(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseWritten(call.Params)
	if err != nil {
		return nil, err
	}
	mu := k.stripe(r.KBID)
	mu.Lock()
	defer mu.Unlock()
	seqid, err := k.store.Next(ctx, r.KBID)
	if err != nil {
		return nil, fmt.Errorf("kb %s: take a seqid: %w", r.KBID, err)
	}
	if err := k.store.Create(ctx, r.KBID, seqid, record{Type: typeWritten, UUID: r.UUID, Op: r.Operation}); err != nil {
		return nil, fmt.Errorf("kb %s: record the write: %w", r.KBID, err)
	}
	data := writtenData{UUID: r.UUID, Title: r.Title, SeqID: seqid, Operation: r.Operation, Error: r.Error}
	if err := k.announce(ctx, r.KBID, typeWritten, data); err != nil {
		k.forget(ctx, r.KBID, seqid)
		return nil, err
	}
	k.waiters.wake(k.store.RecordKey(r.KBID, seqid))
	return seqidResult{SeqID: seqid}, nil
}

// processable says why the record of written_seqid cannot be processed by
// r, or nil.
func processable(r processedReq, w record, found bool) error {
	switch {
	case found && w.Type != typeWritten:
		return fieldError("written_seqid", "seqid %d of kb %s is a %s, not a resource_written: give the seqid that resource_written answered", r.WrittenSeqID, r.KBID, w.Type)
	case !found:
		return fieldError("written_seqid", "kb %s has no resource_written with seqid %d (or it is older than the keep_operations kept)", r.KBID, r.WrittenSeqID)
	case w.UUID != r.UUID:
		return fieldError("resource_uuid", "seqid %d wrote resource %q, not %q", r.WrittenSeqID, w.UUID, r.UUID)
	case w.Op == "deleted":
		return fieldError("written_seqid", "seqid %d deleted resource %q: a deletion is not processed", r.WrittenSeqID, w.UUID)
	case w.Processed != 0:
		return sdk.InvalidParams(fmt.Sprintf("params.written_seqid: seqid %d was already processed, as seqid %d", r.WrittenSeqID, w.Processed),
			map[string]any{"field": "written_seqid", "seqid": w.Processed})
	}
	return nil
}

// resourceProcessed {kbid, resource_uuid, resource_title?, written_seqid,
// ingestion_succeeded?, processing_errors?}: the processing of the write
// written_seqid was written back; it takes its own new seqid.
//
// The writes, in order: the new seqid n (the counter); the write's record
// marked processed by n, at the revision checked, so that of two reports
// of one write through two nodes exactly one wins (the other is refused,
// and its n stays unused); the record of n; then the notification. A crash
// after the mark leaves the write processed by an n without a record: a
// second report is refused with n, as for an announced one.
func (k *KB) resourceProcessed(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseProcessed(call.Params)
	if err != nil {
		return nil, err
	}
	mu := k.stripe(r.KBID)
	mu.Lock()
	defer mu.Unlock()
	// Refuse what is refused before taking a seqid for it.
	w, _, found, err := k.store.Get(ctx, r.KBID, r.WrittenSeqID)
	if err != nil {
		return nil, err
	}
	if err := processable(r, w, found); err != nil {
		return nil, err
	}
	seqid, err := k.store.Next(ctx, r.KBID)
	if err != nil {
		return nil, fmt.Errorf("kb %s: take a seqid: %w", r.KBID, err)
	}
	_, err = modify(ctx, k.store, r.KBID, r.WrittenSeqID, func(w *record, found bool) error {
		if err := processable(r, *w, found); err != nil {
			return err
		}
		w.Processed = seqid
		return nil
	})
	if err != nil {
		return nil, err
	}
	unmark := func() {
		ctx, cancel := undoCtx(ctx)
		defer cancel()
		_, err := modify(ctx, k.store, r.KBID, r.WrittenSeqID, func(w *record, found bool) error {
			if !found || w.Processed != seqid {
				return errNothingToUndo
			}
			w.Processed = 0
			return nil
		})
		if err != nil && !errors.Is(err, errNothingToUndo) {
			k.log.Error("could not take back the mark of an unannounced resource_processed", "kbid", r.KBID, "written_seqid", r.WrittenSeqID, "seqid", seqid, "error", err)
		}
	}
	if err := k.store.Create(ctx, r.KBID, seqid, record{Type: typeProcessed, UUID: r.UUID, Written: r.WrittenSeqID}); err != nil {
		unmark()
		return nil, fmt.Errorf("kb %s: record the processing: %w", r.KBID, err)
	}
	data := processedData{UUID: r.UUID, Title: r.Title, SeqID: seqid, IngestionSucceeded: r.IngestionSucceeded, ProcessingErrors: r.ProcessingErrors}
	if err := k.announce(ctx, r.KBID, typeProcessed, data); err != nil {
		// The mark first, so that a retry of the report can win again.
		unmark()
		k.forget(ctx, r.KBID, seqid)
		return nil, err
	}
	k.waiters.wake(k.store.RecordKey(r.KBID, seqid))
	k.waiters.wake(k.store.RecordKey(r.KBID, r.WrittenSeqID))
	return seqidResult{SeqID: seqid}, nil
}

// errNothingToUndo ends an undo whose change is no longer there.
var errNothingToUndo = errors.New("nothing to undo")

// resourceIndexed {kbid, resource_uuid, resource_title?, seqid}: one index
// replica indexed the write seqid; each replica reports once. The count is
// a compare-and-set on the record, so replicas reporting through several
// nodes at once are all counted, and one beyond index_replicas is refused.
func (k *KB) resourceIndexed(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseIndexed(call.Params)
	if err != nil {
		return nil, err
	}
	mu := k.stripe(r.KBID)
	mu.Lock()
	defer mu.Unlock()
	rec, err := modify(ctx, k.store, r.KBID, r.SeqID, func(w *record, found bool) error {
		switch {
		case !found:
			return fieldError("seqid", "kb %s has no write with seqid %d (or it is older than the keep_operations kept)", r.KBID, r.SeqID)
		case w.UUID != r.UUID:
			return fieldError("resource_uuid", "seqid %d wrote resource %q, not %q", r.SeqID, w.UUID, r.UUID)
		case w.Indexed >= k.cfg.IndexReplicas:
			return fieldError("seqid", "seqid %d was already indexed by all %d replicas (index_replicas)", r.SeqID, k.cfg.IndexReplicas)
		}
		w.Indexed++
		return nil
	})
	if err != nil {
		return nil, err
	}
	data := indexedData{UUID: r.UUID, Title: r.Title, SeqID: r.SeqID}
	if err := k.announce(ctx, r.KBID, typeIndexed, data); err != nil {
		uctx, cancel := undoCtx(ctx)
		defer cancel()
		_, undo := modify(uctx, k.store, r.KBID, r.SeqID, func(w *record, found bool) error {
			if !found || w.Indexed == 0 {
				return errNothingToUndo
			}
			w.Indexed--
			return nil
		})
		if undo != nil && !errors.Is(undo, errNothingToUndo) {
			k.log.Error("could not undo an unannounced resource_indexed", "kbid", r.KBID, "seqid", r.SeqID, "error", undo)
		}
		return nil, err
	}
	k.waiters.wake(k.store.RecordKey(r.KBID, r.SeqID))
	return indexedResult{SeqID: r.SeqID, Replicas: rec.Indexed, Indexed: rec.Indexed >= k.cfg.IndexReplicas}, nil
}

// stats {} (backends): what the plugin holds open, for operators and for
// the leak tests.
func (k *KB) stats(context.Context, *sdk.Call) (any, error) {
	return map[string]int{
		"streams":    k.streams.open(),
		"waiters":    k.waiters.count(),
		"goroutines": runtime.NumGoroutine(),
	}, nil
}
