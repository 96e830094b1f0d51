package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
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
// of its recent seqids. It is an interface so that a later store shared by
// several Herald nodes can replace the bbolt file.
type seqStore interface {
	// Update runs f in one durable transaction on kbid's state: once it
	// returned nil, what f wrote survives a crash, and a seqid f took with
	// Next is never handed out again, whatever follows.
	Update(ctx context.Context, kbid string, f func(tx kbTx) error) error
	// Get returns the record of seqid (found false when there is none) and
	// the KB's last seqid.
	Get(ctx context.Context, kbid string, seqid uint64) (rec record, found bool, last uint64, err error)
	Close() error
}

// kbTx is one KB inside an Update.
type kbTx interface {
	// Next takes the KB's next seqid.
	Next() (uint64, error)
	Get(seqid uint64) (record, bool, error)
	Put(seqid uint64, r record) error
	Delete(seqid uint64) error
}

// boltStore keeps <data_dir>/kb.db: one bucket per KB holding "last" (its
// last seqid, big-endian) and the bucket "ops" (seqid, big-endian -> the
// record as JSON). Records older than the last `keep` seqids are pruned as
// new ones come.
type boltStore struct {
	db   *bolt.DB
	keep uint64
}

var (
	keyLast   = []byte("last")
	bucketOps = []byte("ops")
)

func openBoltStore(dir string, keep int) (*boltStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dir, "kb.db")
	// The timeout covers a previous plugin process still closing the file
	// during a restart; bbolt's lock dies with a killed process.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &boltStore{db: db, keep: uint64(keep)}, nil
}

func (s *boltStore) Close() error { return s.db.Close() }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func (s *boltStore) Update(_ context.Context, kbid string, f func(tx kbTx) error) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte(kbid))
		if err != nil {
			return fmt.Errorf("kb %q: %w", kbid, err)
		}
		ops, err := b.CreateBucketIfNotExists(bucketOps)
		if err != nil {
			return fmt.Errorf("kb %q: %w", kbid, err)
		}
		return f(&boltTx{b: b, ops: ops, keep: s.keep})
	})
}

func (s *boltStore) Get(_ context.Context, kbid string, seqid uint64) (rec record, found bool, last uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(kbid))
		if b == nil {
			return nil
		}
		t := &boltTx{b: b, ops: b.Bucket(bucketOps)}
		last = t.last()
		if t.ops == nil {
			return nil
		}
		rec, found, err = t.Get(seqid)
		return err
	})
	return rec, found, last, err
}

type boltTx struct {
	b, ops *bolt.Bucket
	keep   uint64
}

func (t *boltTx) last() uint64 {
	if v := t.b.Get(keyLast); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (t *boltTx) Next() (uint64, error) {
	n := t.last() + 1
	if err := t.b.Put(keyLast, u64(n)); err != nil {
		return 0, err
	}
	// Prune what falls out of the kept window (at most one or two per write).
	if t.keep > 0 && n > t.keep {
		c := t.ops.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= n-t.keep; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (t *boltTx) Get(seqid uint64) (record, bool, error) {
	v := t.ops.Get(u64(seqid))
	if v == nil {
		return record{}, false, nil
	}
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return record{}, false, fmt.Errorf("record %d: %w", seqid, err)
	}
	return r, true, nil
}

func (t *boltTx) Put(seqid uint64, r record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return t.ops.Put(u64(seqid), v)
}

func (t *boltTx) Delete(seqid uint64) error { return t.ops.Delete(u64(seqid)) }
