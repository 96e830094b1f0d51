package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Store is one plugin's key-value namespace, as the host keeps it for the
// plugin's State capability (sdk.State). Implementations: Bolt (one node, a
// file in the plugin's data_dir) and JetStream (a cluster: one KV bucket
// per plugin, shared by its processes on every node).
//
// Keys are validated by the caller (ValidKey) before they reach a Store.
// Every method is safe for concurrent use. A write has returned only once
// it is durable.
type Store interface {
	Get(ctx context.Context, key string) (Entry, error)
	// Put writes whatever the key holds. ttl > 0 makes the key expire
	// ttl after this write.
	Put(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error)
	// Create writes only if the key does not exist (or expired); else ErrConflict.
	Create(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error)
	// Update writes only if the key's revision is rev; else ErrConflict,
	// or ErrNotFound if the key does not exist.
	Update(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error)
	// Delete removes the key; rev > 0: only at that revision (ErrConflict).
	// A missing key is not an error.
	Delete(ctx context.Context, key string, rev uint64) error
	// List returns the live entries under prefix ("" or ending in "/"), in
	// key order.
	List(ctx context.Context, prefix string) ([]Entry, error)
	// Watch calls f for every change under prefix, in order, until ctx
	// ends (it then returns ctx.Err()) or the store fails. Its first call
	// of f is a Reset, made once the watch is in place (every change after
	// it reaches f). When changes may have been missed it calls f with
	// Reset set again and goes on.
	// f must not block for long.
	Watch(ctx context.Context, prefix string, f func(Change)) error
	// Close releases the store; the data stays.
	Close() error
}

// Entry is a key, its value and its revision (> 0).
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// Change is one write seen by Watch.
type Change struct {
	Entry
	Deleted bool // deleted or expired; Value empty
	Reset   bool // changes may have been missed: reload with List
}

var (
	ErrNotFound = errors.New("state: key not found")
	ErrConflict = errors.New("state: revision conflict")
	// ErrTooLarge: the value is over MaxValueBytes, or the store is full
	// (a *FullError: herald's state.max_bytes).
	ErrTooLarge = errors.New("state: over its size bound")
	// ErrUnavailable: the store cannot be reached now (NATS down); retry.
	ErrUnavailable = errors.New("state: store unavailable")
)

// Key bounds.
const (
	MaxKeyBytes     = pluginpb.MaxStateKeyBytes
	MaxSegmentBytes = pluginpb.MaxStateSegmentBytes
	MaxValueBytes   = 1 << 20
)

// FullError: a write would take the store over its bound (its MaxBytes
// option, which herald's state.max_bytes sets). It is ErrTooLarge; the
// host's answer to the plugin names the key to raise.
type FullError struct {
	Max  int64  // the store's bound
	Need int64  // what the store would hold with the write; 0: unknown
	Why  string // the backend's own words, when it rather than the store counted
}

func (e *FullError) Error() string {
	if e.Need > 0 {
		return fmt.Sprintf("store would hold %d bytes, over its bound of %d: %v", e.Need, e.Max, ErrTooLarge)
	}
	return fmt.Sprintf("store is at its bound of %d bytes (%s): %v", e.Max, e.Why, ErrTooLarge)
}

func (e *FullError) Unwrap() error { return ErrTooLarge }
