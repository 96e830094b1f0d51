package main

import (
	"context"
	"encoding/json"
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

// forget undoes the record of a seqid whose notification could not be
// emitted: the seqid stays taken (never reused), but no waiter will ever
// take it for announced. The stripe is held.
func (k *KB) forget(ctx context.Context, kbid string, seqid uint64, undo func(tx kbTx) error) {
	err := k.store.Update(ctx, kbid, func(tx kbTx) error {
		if undo != nil {
			if err := undo(tx); err != nil {
				return err
			}
		}
		return tx.Delete(seqid)
	})
	if err != nil {
		k.log.Error("could not forget an unannounced seqid", "kbid", kbid, "seqid", seqid, "error", err)
	}
}

// resourceWritten {kbid, resource_uuid, resource_title?, operation, error?}
// takes the KB's next seqid, durably, then announces it; answers {seqid}.
func (k *KB) resourceWritten(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseWritten(call.Params)
	if err != nil {
		return nil, err
	}
	mu := k.stripe(r.KBID)
	mu.Lock()
	defer mu.Unlock()
	var seqid uint64
	err = k.store.Update(ctx, r.KBID, func(tx kbTx) error {
		n, err := tx.Next()
		if err != nil {
			return err
		}
		seqid = n
		return tx.Put(n, record{Type: typeWritten, UUID: r.UUID, Op: r.Operation})
	})
	if err != nil {
		return nil, fmt.Errorf("kb %s: record the write: %w", r.KBID, err)
	}
	data := writtenData{UUID: r.UUID, Title: r.Title, SeqID: seqid, Operation: r.Operation, Error: r.Error}
	if err := k.announce(ctx, r.KBID, typeWritten, data); err != nil {
		k.forget(ctx, r.KBID, seqid, nil)
		return nil, err
	}
	k.waiters.wake(r.KBID, seqid)
	return seqidResult{SeqID: seqid}, nil
}

// resourceProcessed {kbid, resource_uuid, resource_title?, written_seqid,
// ingestion_succeeded?, processing_errors?}: the processing of the write
// written_seqid was written back; it takes its own new seqid.
func (k *KB) resourceProcessed(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseProcessed(call.Params)
	if err != nil {
		return nil, err
	}
	mu := k.stripe(r.KBID)
	mu.Lock()
	defer mu.Unlock()
	var seqid uint64
	err = k.store.Update(ctx, r.KBID, func(tx kbTx) error {
		w, ok, err := tx.Get(r.WrittenSeqID)
		if err != nil {
			return err
		}
		switch {
		case !ok || w.Type != typeWritten:
			return fieldError("written_seqid", "kb %s has no resource_written with seqid %d (or it is older than the keep_operations kept)", r.KBID, r.WrittenSeqID)
		case w.UUID != r.UUID:
			return fieldError("resource_uuid", "seqid %d wrote resource %q, not %q", r.WrittenSeqID, w.UUID, r.UUID)
		case w.Op == "deleted":
			return fieldError("written_seqid", "seqid %d deleted resource %q: a deletion is not processed", r.WrittenSeqID, w.UUID)
		case w.Processed != 0:
			return sdk.InvalidParams(fmt.Sprintf("params.written_seqid: seqid %d was already processed, as seqid %d", r.WrittenSeqID, w.Processed),
				map[string]any{"field": "written_seqid", "seqid": w.Processed})
		}
		n, err := tx.Next()
		if err != nil {
			return err
		}
		seqid = n
		w.Processed = n
		if err := tx.Put(r.WrittenSeqID, w); err != nil {
			return err
		}
		return tx.Put(n, record{Type: typeProcessed, UUID: r.UUID, Written: r.WrittenSeqID})
	})
	if err != nil {
		return nil, err
	}
	data := processedData{UUID: r.UUID, Title: r.Title, SeqID: seqid, IngestionSucceeded: r.IngestionSucceeded, ProcessingErrors: r.ProcessingErrors}
	if err := k.announce(ctx, r.KBID, typeProcessed, data); err != nil {
		k.forget(ctx, r.KBID, seqid, func(tx kbTx) error {
			w, ok, err := tx.Get(r.WrittenSeqID)
			if err != nil || !ok {
				return err
			}
			w.Processed = 0
			return tx.Put(r.WrittenSeqID, w)
		})
		return nil, err
	}
	k.waiters.wake(r.KBID, seqid)
	k.waiters.wake(r.KBID, r.WrittenSeqID)
	return seqidResult{SeqID: seqid}, nil
}

// resourceIndexed {kbid, resource_uuid, resource_title?, seqid}: one index
// replica indexed the write seqid; each replica reports once.
func (k *KB) resourceIndexed(ctx context.Context, call *sdk.Call) (any, error) {
	r, err := parseIndexed(call.Params)
	if err != nil {
		return nil, err
	}
	mu := k.stripe(r.KBID)
	mu.Lock()
	defer mu.Unlock()
	var replicas int
	err = k.store.Update(ctx, r.KBID, func(tx kbTx) error {
		w, ok, err := tx.Get(r.SeqID)
		if err != nil {
			return err
		}
		switch {
		case !ok:
			return fieldError("seqid", "kb %s has no write with seqid %d (or it is older than the keep_operations kept)", r.KBID, r.SeqID)
		case w.UUID != r.UUID:
			return fieldError("resource_uuid", "seqid %d wrote resource %q, not %q", r.SeqID, w.UUID, r.UUID)
		case w.Indexed >= k.cfg.IndexReplicas:
			return fieldError("seqid", "seqid %d was already indexed by all %d replicas (index_replicas)", r.SeqID, k.cfg.IndexReplicas)
		}
		w.Indexed++
		replicas = w.Indexed
		return tx.Put(r.SeqID, w)
	})
	if err != nil {
		return nil, err
	}
	data := indexedData{UUID: r.UUID, Title: r.Title, SeqID: r.SeqID}
	if err := k.announce(ctx, r.KBID, typeIndexed, data); err != nil {
		undo := k.store.Update(ctx, r.KBID, func(tx kbTx) error {
			w, ok, err := tx.Get(r.SeqID)
			if err != nil || !ok {
				return err
			}
			w.Indexed--
			return tx.Put(r.SeqID, w)
		})
		if undo != nil {
			k.log.Error("could not undo an unannounced resource_indexed", "kbid", r.KBID, "seqid", r.SeqID, "error", undo)
		}
		return nil, err
	}
	k.waiters.wake(r.KBID, r.SeqID)
	return indexedResult{SeqID: r.SeqID, Replicas: replicas, Indexed: replicas >= k.cfg.IndexReplicas}, nil
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
