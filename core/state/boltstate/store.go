package boltstate

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/heraldhq/herald/core/state"
)

// Options bound and tune one Store. Zero values take the defaults.
type Options struct {
	// MaxBytes bounds the store: the total of its keys and values (the
	// config's state.max_bytes). A write that would go over it is a
	// *state.FullError (ErrTooLarge). 0: unbounded.
	MaxBytes int64
	// WatchBuffer is how many changes a Watch may fall behind before it
	// gets a Reset instead (default 1024).
	WatchBuffer int
	// OpenTimeout bounds the wait for the file's lock, held while a
	// previous herald is still closing it, or by another herald on the
	// same file (default 2s: well under a plugin's start limit, so that
	// "still locked" is what the operator reads; a plugin whose store is
	// unavailable is restarted with backoff, which covers a slow close).
	OpenTimeout time.Duration
	// Now is the clock of TTLs (default time.Now); for tests.
	Now func() time.Time
}

const defaultWatchBuffer = 1024

// DefaultOpenTimeout is Options.OpenTimeout's default.
const DefaultOpenTimeout = 2 * time.Second

var (
	bucketEntries  = []byte("entries")  // key → record
	bucketExpiries = []byte("expiries") // expiry (8 bytes, unix ns) + key → nothing
	bucketMeta     = []byte("meta")     // the revision counter (its sequence) and metaBytes
	metaBytes      = []byte("bytes")    // the total of keys and values, 8 bytes
)

// A record is the revision (8 bytes), the expiry (8 bytes, unix ns, 0:
// none) and the value.
const recordHeader = 16

// Store is one plugin's state in a bbolt file.
type Store struct {
	db   *bolt.DB
	opts Options

	// mu serialises the writes with their fan-out, so that every watcher
	// sees changes in commit order, and guards watchers.
	mu       sync.Mutex
	watchers map[*watcher]struct{}

	poke      chan struct{} // a write with a TTL: the sweeper looks again
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	sweepDone chan struct{}
}

var _ state.Store = (*Store)(nil)

// Open opens (or creates) the store's file. The directory must exist.
func Open(path string, opts Options) (*Store, error) {
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = defaultWatchBuffer
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.OpenTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open state file %s: still locked after %v (another herald using it?): %w", path, opts.OpenTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketEntries, bucketExpiries, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state file %s: create buckets: %w", path, err)
	}
	s := &Store{
		db:        db,
		opts:      opts,
		watchers:  map[*watcher]struct{}{},
		poke:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		sweepDone: make(chan struct{}),
	}
	go s.sweeper()
	return s, nil
}

// Close stops the sweeper, ends the watches (with state.ErrClosed) and
// closes the file. Closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closed)
		s.mu.Unlock()
		<-s.sweepDone
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close state file %s: %w", s.db.Path(), err)
		}
	})
	return s.closeErr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// closedErr says ErrClosed for an operation that raced with Close.
func closedErr(err error) error {
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", state.ErrClosed, err)
	}
	return err
}

// check refuses an operation on a closed store or with an ended context.
func (s *Store) check(ctx context.Context) error {
	if s.isClosed() {
		return state.ErrClosed
	}
	return ctx.Err()
}

func checkValue(value []byte) error {
	if len(value) > state.MaxValueBytes {
		return fmt.Errorf("state value of %d bytes, over %d: %w", len(value), state.MaxValueBytes, state.ErrTooLarge)
	}
	return nil
}

// Get returns the key's live entry.
func (s *Store) Get(ctx context.Context, key string) (state.Entry, error) {
	if err := s.check(ctx); err != nil {
		return state.Entry{}, fmt.Errorf("state get %q: %w", key, err)
	}
	var e state.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		rec := tx.Bucket(bucketEntries).Get([]byte(key))
		if !live(rec, s.opts.Now()) {
			return state.ErrNotFound
		}
		e = entry(key, rec)
		return nil
	})
	if err != nil {
		return state.Entry{}, fmt.Errorf("state get %q: %w", key, closedErr(err))
	}
	return e, nil
}

// Put writes the key whatever it holds.
func (s *Store) Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return s.write(ctx, "put", key, value, ttl, func(*txn, []byte) error { return nil })
}

// Create writes the key only if it holds nothing live.
func (s *Store) Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	return s.write(ctx, "create", key, value, ttl, func(x *txn, rec []byte) error {
		if live(rec, x.now) {
			return state.ErrConflict
		}
		return nil
	})
}

// Update writes the key only if it is live at revision rev.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	return s.write(ctx, "update", key, value, ttl, func(x *txn, rec []byte) error {
		if !live(rec, x.now) {
			return state.ErrNotFound
		}
		if revision(rec) != rev {
			return state.ErrConflict
		}
		return nil
	})
}

func (s *Store) write(ctx context.Context, op, key string, value []byte, ttl time.Duration, precondition func(*txn, []byte) error) (uint64, error) {
	if err := checkValue(value); err != nil {
		return 0, fmt.Errorf("state %s %q: %w", op, key, err)
	}
	if err := state.ValidTTL(ttl); err != nil {
		return 0, fmt.Errorf("state %s %q: %w", op, key, err)
	}
	var rev uint64
	err := s.update(ctx, func(x *txn) error {
		if err := precondition(x, x.entries.Get([]byte(key))); err != nil {
			return err
		}
		var err error
		rev, err = x.set(key, value, ttl)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state %s %q: %w", op, key, err)
	}
	if ttl > 0 {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
	return rev, nil
}

// Delete removes the key; rev > 0: only if it is live at that revision.
func (s *Store) Delete(ctx context.Context, key string, rev uint64) error {
	err := s.update(ctx, func(x *txn) error {
		rec := x.entries.Get([]byte(key))
		if !live(rec, x.now) {
			return nil // an expired one is the sweeper's, which reports it
		}
		if rev > 0 && revision(rec) != rev {
			return state.ErrConflict
		}
		return x.remove(key, rec)
	})
	if err != nil {
		return fmt.Errorf("state delete %q: %w", key, err)
	}
	return nil
}

// List returns the live entries under prefix in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]state.Entry, error) {
	if err := state.ValidPrefix(prefix); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, fmt.Errorf("state list %q: %w", prefix, err)
	}
	var out []state.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		now := s.opts.Now()
		c := tx.Bucket(bucketEntries).Cursor()
		for k, rec := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, rec = c.Next() {
			if live(rec, now) {
				out = append(out, entry(string(k), rec))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state list %q: %w", prefix, closedErr(err))
	}
	return out, nil
}

// update runs fn in one committed (fsynced) transaction and then hands its
// changes to the watchers, all under mu.
func (s *Store) update(ctx context.Context, fn func(*txn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	var changes []state.Change
	err := s.db.Update(func(tx *bolt.Tx) error {
		x := &txn{
			entries:  tx.Bucket(bucketEntries),
			expiries: tx.Bucket(bucketExpiries),
			meta:     tx.Bucket(bucketMeta),
			now:      s.opts.Now(),
			maxBytes: s.opts.MaxBytes,
		}
		if err := fn(x); err != nil {
			return err
		}
		changes = x.changes
		return nil
	})
	if err != nil {
		return err
	}
	s.fanOut(changes)
	return nil
}

func live(rec []byte, now time.Time) bool {
	if len(rec) < recordHeader {
		return false
	}
	exp := expiry(rec)
	return exp == 0 || exp > now.UnixNano()
}

func revision(rec []byte) uint64 { return binary.BigEndian.Uint64(rec[0:8]) }

func expiry(rec []byte) int64 { return int64(binary.BigEndian.Uint64(rec[8:16])) }

// entry copies a record out of its transaction.
func entry(key string, rec []byte) state.Entry {
	return state.Entry{Key: key, Value: append([]byte{}, rec[recordHeader:]...), Revision: revision(rec)}
}
