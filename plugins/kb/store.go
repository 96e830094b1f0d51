package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/heraldhq/herald/sdk"
)

// record is what the plugin keeps of one seqid of a KB: enough to answer
// kb.waitFor and to check later reports against it.
type record struct {
	Type      string `json:"t"`           // typeWritten or typeProcessed
	UUID      string `json:"u"`           // resource_uuid
	Op        string `json:"o,omitempty"` // resource_written: created|modified|deleted
	Written   uint64 `json:"w,omitempty"` // resource_processed: the write it completes
	Processed uint64 `json:"p,omitempty"` // resource_written: the seqid of its resource_processed
	Indexed   int    `json:"i,omitempty"` // index replicas that reported resource_indexed
}

// seqStore is the plugin's state: per KB, its seqid counter and the records
// of its recent seqids. There are no transactions: each method is one
// durable write (or read), so the callers order their writes so that a
// crash between two leaves a state the next reader handles, and rewrite a
// record only at the revision they read (modify).
type seqStore interface {
	// Next takes the KB's next seqid: once it returned, no process on any
	// node is ever handed that seqid again, whatever follows.
	Next(ctx context.Context, kbid string) (uint64, error)
	// Counter returns the KB's last seqid taken and the seqid up to which
	// every record was pruned (zeros for a KB never written).
	Counter(ctx context.Context, kbid string) (last, pruned uint64, err error)
	// Get returns the record of seqid and its revision; found is false
	// when there is none.
	Get(ctx context.Context, kbid string, seqid uint64) (rec record, rev uint64, found bool, err error)
	// Create records seqid, which Next handed to the caller.
	Create(ctx context.Context, kbid string, seqid uint64, rec record) error
	// Update rewrites the record of seqid if its revision is still rev:
	// sdk.ErrConflict when it moved on, sdk.ErrNotFound when it is gone.
	Update(ctx context.Context, kbid string, seqid uint64, rec record, rev uint64) error
	// Delete removes the record of seqid (none is not an error).
	Delete(ctx context.Context, kbid string, seqid uint64) error
	// RecordKey is the key whose changes the watch reports for seqid.
	RecordKey(kbid string, seqid uint64) string
}

// stateStore keeps the records in sdk.State: on one node a file under
// Herald's `state` block (state.dir), in a cluster a JetStream key-value bucket that the kb
// processes of every node share. The keys:
//
//	kb/<kb>/last         {"last": n, "pruned": p}: the KB's last seqid taken (the
//	                     counter, never pruned), and the seqid up to which every
//	                     record is deleted
//	kb/<kb>/ops/<seqid>  the record of one seqid as JSON; the seqid as 20
//	                     decimal digits, so that a KB's records sort by seqid
//
// <kb> is the kbid through sdk.KeySegment (escaped; hashed if too long:
// a kbid of many dots or tildes). Records older than the last keep
// seqids are pruned by the process that takes a seqid (Next).
type stateStore struct {
	st     sdk.State
	keep   uint64
	closed atomic.Bool
}

var _ seqStore = (*stateStore)(nil)

const (
	stateRoot = "kb/"
	// pruneBatch bounds the records one Next deletes: with a constant
	// keep_operations it deletes one; after keep_operations was lowered it
	// catches up by this many per seqid instead of all at once.
	pruneBatch = 64
)

var errClosed = sdk.Errorf(sdk.CodePluginUnavailable, "kb plugin is stopping: retry later")

func newStateStore(st sdk.State, keep int) *stateStore {
	return &stateStore{st: st, keep: uint64(keep)}
}

// close makes every later use fail with errClosed (Drain).
func (s *stateStore) close() { s.closed.Store(true) }

func (s *stateStore) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

func (s *stateStore) kbPrefix(kbid string) string { return stateRoot + sdk.KeySegment(kbid) + "/" }

func (s *stateStore) lastKey(kbid string) string { return s.kbPrefix(kbid) + "last" }

func (s *stateStore) RecordKey(kbid string, seqid uint64) string {
	return fmt.Sprintf("%sops/%020d", s.kbPrefix(kbid), seqid)
}

// counter is the value of kb/<kb>/last.
type counter struct {
	Last   uint64 `json:"last"`
	Pruned uint64 `json:"pruned"`
}

// readCounter returns the KB's counter and its revision (0: none yet).
func (s *stateStore) readCounter(ctx context.Context, kbid string) (counter, uint64, error) {
	e, err := s.st.Get(ctx, s.lastKey(kbid))
	if errors.Is(err, sdk.ErrNotFound) {
		return counter{}, 0, nil
	}
	if err != nil {
		return counter{}, 0, fmt.Errorf("read the seqid counter of kb %s: %w", kbid, err)
	}
	var c counter
	if err := json.Unmarshal(e.Value, &c); err != nil {
		return counter{}, 0, fmt.Errorf("the seqid counter of kb %s is damaged: %w", kbid, err)
	}
	return c, e.Revision, nil
}

func (s *stateStore) Counter(ctx context.Context, kbid string) (uint64, uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, 0, err
	}
	c, _, err := s.readCounter(ctx, kbid)
	return c.Last, c.Pruned, err
}

// Next is a compare-and-set loop on kb/<kb>/last: of the processes that
// read the same counter, one writes last+1 and the others read again, so
// seqids are handed out once each and without gaps across every node.
//
// Before it takes seqid n, it deletes the records that fall out of the kept
// window (seqids up to n-keep) above the counter's pruned mark, and the
// counter it writes carries the new mark. The deletions come first so that
// a crash between them and the counter's write leaves at worst records
// that the next Next deletes again (deleting a missing key is no error);
// two processes pruning at once delete the same keys, harmlessly, and only
// one of them moves the mark. The window only moves forward, so what one
// process deletes is outside every later window too.
func (s *stateStore) Next(ctx context.Context, kbid string) (uint64, error) {
	for {
		if err := s.check(ctx); err != nil {
			return 0, err
		}
		c, rev, err := s.readCounter(ctx, kbid)
		if err != nil {
			return 0, err
		}
		next := counter{Last: c.Last + 1, Pruned: c.Pruned}
		if next.Last > s.keep {
			upto := min(next.Last-s.keep, c.Pruned+pruneBatch)
			for q := c.Pruned + 1; q <= upto; q++ {
				if err := s.st.Delete(ctx, s.RecordKey(kbid, q), 0); err != nil {
					return 0, fmt.Errorf("prune seqid %d of kb %s: %w", q, kbid, err)
				}
			}
			next.Pruned = max(c.Pruned, upto)
		}
		v, err := json.Marshal(next)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			_, err = s.st.Create(ctx, s.lastKey(kbid), v)
		} else {
			_, err = s.st.Update(ctx, s.lastKey(kbid), v, rev)
		}
		switch {
		case err == nil:
			return next.Last, nil
		case errors.Is(err, sdk.ErrConflict), errors.Is(err, sdk.ErrNotFound):
			continue // another process took a seqid meanwhile: read again
		default:
			return 0, fmt.Errorf("take seqid %d of kb %s: %w", next.Last, kbid, err)
		}
	}
}

func (s *stateStore) Get(ctx context.Context, kbid string, seqid uint64) (record, uint64, bool, error) {
	if err := s.check(ctx); err != nil {
		return record{}, 0, false, err
	}
	e, err := s.st.Get(ctx, s.RecordKey(kbid, seqid))
	if errors.Is(err, sdk.ErrNotFound) {
		return record{}, 0, false, nil
	}
	if err != nil {
		return record{}, 0, false, fmt.Errorf("read seqid %d of kb %s: %w", seqid, kbid, err)
	}
	var r record
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return record{}, 0, false, fmt.Errorf("the record of seqid %d of kb %s is damaged: %w", seqid, kbid, err)
	}
	return r, e.Revision, true, nil
}

func (s *stateStore) Create(ctx context.Context, kbid string, seqid uint64, rec record) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.st.Create(ctx, s.RecordKey(kbid, seqid), v); err != nil {
		return fmt.Errorf("record seqid %d of kb %s: %w", seqid, kbid, err)
	}
	return nil
}

func (s *stateStore) Update(ctx context.Context, kbid string, seqid uint64, rec record, rev uint64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.st.Update(ctx, s.RecordKey(kbid, seqid), v, rev); err != nil {
		return fmt.Errorf("update seqid %d of kb %s: %w", seqid, kbid, err)
	}
	return nil
}

func (s *stateStore) Delete(ctx context.Context, kbid string, seqid uint64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.st.Delete(ctx, s.RecordKey(kbid, seqid), 0); err != nil {
		return fmt.Errorf("delete seqid %d of kb %s: %w", seqid, kbid, err)
	}
	return nil
}

// modify rewrites the record of seqid with f, at the revision it read,
// until that write wins: two processes that change one record at once (two
// index replicas reporting through two nodes) both get their change in. f
// gets found false when there is no record, and fails to refuse the change
// (its error is returned as is).
func modify(ctx context.Context, st seqStore, kbid string, seqid uint64, f func(rec *record, found bool) error) (record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return record{}, err
		}
		rec, rev, found, err := st.Get(ctx, kbid, seqid)
		if err != nil {
			return record{}, err
		}
		if err := f(&rec, found); err != nil {
			return record{}, err
		}
		if !found {
			return record{}, fmt.Errorf("kb %s has no record of seqid %d", kbid, seqid) // f should have refused
		}
		err = st.Update(ctx, kbid, seqid, rec, rev)
		switch {
		case err == nil:
			return rec, nil
		case errors.Is(err, sdk.ErrConflict), errors.Is(err, sdk.ErrNotFound):
			continue // changed or pruned meanwhile: f decides again on what is there now
		default:
			return record{}, err
		}
	}
}
