package boltstate

import (
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heraldhq/herald/core/state"
)

// txn is one write transaction and the changes it makes, in order.
type txn struct {
	entries, expiries, meta *bolt.Bucket
	now                     time.Time
	maxBytes                int64
	changes                 []state.Change
}

// size is what a stored record counts against MaxBytes.
func size(key string, rec []byte) int64 {
	if rec == nil {
		return 0
	}
	return int64(len(key) + len(rec) - recordHeader)
}

func (x *txn) total() int64 {
	b := x.meta.Get(metaBytes)
	if len(b) != 8 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(b))
}

func (x *txn) setTotal(n int64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return x.meta.Put(metaBytes, b[:])
}

// set writes the key with the next revision.
func (x *txn) set(key string, value []byte, ttl time.Duration) (uint64, error) {
	k := []byte(key)
	need := func() int64 {
		return x.total() - size(key, x.entries.Get(k)) + int64(len(key)+len(value))
	}
	if x.maxBytes > 0 && need() > x.maxBytes {
		// Expired entries the sweeper has not reached yet make room.
		if err := x.sweep(); err != nil {
			return 0, err
		}
		if n := need(); n > x.maxBytes {
			return 0, &state.FullError{Max: x.maxBytes, Need: n}
		}
	}
	total := need()
	if err := x.unindex(key, x.entries.Get(k)); err != nil {
		return 0, err
	}
	rev, err := x.meta.NextSequence()
	if err != nil {
		return 0, err
	}
	var exp int64
	if ttl > 0 {
		exp = x.now.Add(ttl).UnixNano()
		if err := x.expiries.Put(expiryKey(exp, key), nil); err != nil {
			return 0, err
		}
	}
	rec := make([]byte, recordHeader+len(value))
	binary.BigEndian.PutUint64(rec[0:8], rev)
	binary.BigEndian.PutUint64(rec[8:16], uint64(exp))
	copy(rec[recordHeader:], value)
	if err := x.entries.Put(k, rec); err != nil {
		return 0, err
	}
	if err := x.setTotal(total); err != nil {
		return 0, err
	}
	x.changes = append(x.changes, state.Change{Entry: state.Entry{Key: key, Value: rec[recordHeader:], Revision: rev}})
	return rev, nil
}

// remove deletes the key (whose record is rec) with the next revision.
func (x *txn) remove(key string, rec []byte) error {
	total := x.total() - size(key, rec)
	if err := x.unindex(key, rec); err != nil {
		return err
	}
	if err := x.entries.Delete([]byte(key)); err != nil {
		return err
	}
	rev, err := x.meta.NextSequence()
	if err != nil {
		return err
	}
	if err := x.setTotal(total); err != nil {
		return err
	}
	x.changes = append(x.changes, state.Change{Entry: state.Entry{Key: key, Revision: rev}, Deleted: true})
	return nil
}

// unindex drops the record's expiry from the index.
func (x *txn) unindex(key string, rec []byte) error {
	if len(rec) < recordHeader || expiry(rec) == 0 {
		return nil
	}
	return x.expiries.Delete(expiryKey(expiry(rec), key))
}

// sweep removes every entry expired by now, in expiry order.
func (x *txn) sweep() error {
	type due struct {
		exp int64
		key string
	}
	var dues []due
	c := x.expiries.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		exp, key := splitExpiryKey(k)
		if exp > x.now.UnixNano() {
			break
		}
		dues = append(dues, due{exp, key})
	}
	for _, d := range dues {
		rec := x.entries.Get([]byte(d.key))
		if rec == nil || expiry(rec) != d.exp {
			// Not the entry this expiry was for: drop the stale index entry.
			if err := x.expiries.Delete(expiryKey(d.exp, d.key)); err != nil {
				return err
			}
			continue
		}
		if err := x.remove(d.key, rec); err != nil {
			return err
		}
	}
	return nil
}

func expiryKey(exp int64, key string) []byte {
	b := make([]byte, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(exp))
	copy(b[8:], key)
	return b
}

func splitExpiryKey(k []byte) (int64, string) {
	if len(k) < 8 {
		return 0, ""
	}
	return int64(binary.BigEndian.Uint64(k[:8])), string(k[8:])
}

// nextExpiry is the earliest expiry in the index (ok false: none).
func nextExpiry(tx *bolt.Tx) (time.Time, bool) {
	k, _ := tx.Bucket(bucketExpiries).Cursor().First()
	if k == nil {
		return time.Time{}, false
	}
	exp, _ := splitExpiryKey(k)
	return time.Unix(0, exp), true
}
