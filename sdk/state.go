package sdk

import (
	"context"
	"errors"
	"time"
)

// State is the plugin's own key-value store, kept by Herald. On one node it
// is a file under the config's state.dir; in a cluster (broker
// "nats") it is a JetStream key-value bucket shared by the plugin's
// processes on every node, so a plugin that keeps what must be shared here,
// and writes with compare-and-set, is correct on one node and on many
// without knowing which.
//
// Keys are paths of segments joined by "/": each segment is 1 to 255 bytes
// of printable ASCII; a key is at most 1024 bytes. A value is at most
// MaxStateValue bytes. The store of one plugin is bounded by the config's
// state.max_bytes.
//
// Every write is durable when it returns (fsynced on one node, stored on the
// bucket's replicas in a cluster). Each key has a revision that grows with
// every write of it; a write that names a revision (Update, Delete with rev)
// fails with ErrConflict when the key moved on, so read-modify-write loops
// are safe between processes.
type State interface {
	// Get returns the key's entry, or ErrNotFound.
	Get(ctx context.Context, key string) (Entry, error)
	// Put writes the value whatever the key holds and returns its new revision.
	Put(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error)
	// Create writes the value only if the key does not exist (or expired),
	// else ErrConflict.
	Create(ctx context.Context, key string, value []byte, opts ...WriteOption) (uint64, error)
	// Update writes the value only if the key's revision is still rev, else
	// ErrConflict (ErrNotFound if it is gone).
	Update(ctx context.Context, key string, value []byte, rev uint64, opts ...WriteOption) (uint64, error)
	// Delete removes the key; with rev > 0 only if its revision is still
	// rev (ErrConflict otherwise). Deleting a missing key is not an error.
	Delete(ctx context.Context, key string, rev uint64) error
	// List returns the entries whose key starts with prefix, in key order.
	// prefix is "" (every key) or ends with "/".
	List(ctx context.Context, prefix string) ([]Entry, error)
	// Watch calls f with every change to keys under prefix ("" or ending
	// with "/"), in the order they were made, until ctx ends or it returns
	// an error. Changes made by this process are included. The first call
	// of f is a Change with Reset set, made once the watch is in place:
	// load what you keep with List then, and every change after that List
	// reaches f. f gets Reset again whenever changes may have been missed
	// (the watch fell behind, or its connection to the store was lost):
	// reload then too. f runs on one goroutine, one call at a time.
	Watch(ctx context.Context, prefix string, f func(Change)) error
}

// Entry is one key and its value.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
}

// Change is one write seen by Watch.
type Change struct {
	Entry
	// Deleted says the key was deleted (or expired): Value is empty.
	Deleted bool
	// Reset says changes may have been missed: reload with List.
	Reset bool
}

// WriteOption changes how a write is made.
type WriteOption func(*WriteOptions)

// WriteOptions are the options of one write; see the With... functions.
type WriteOptions struct {
	// TTL, when > 0, makes the key expire (as if deleted) that long after
	// this write unless it is written again. It is what leases are made of.
	TTL time.Duration
}

// WithTTL makes the written key expire d after the write (at least one
// second) unless it is written again.
func WithTTL(d time.Duration) WriteOption { return func(o *WriteOptions) { o.TTL = d } }

// MaxStateValue bounds a State value, in bytes.
const MaxStateValue = 1 << 20

var (
	// ErrNotFound: the key does not exist (or expired).
	ErrNotFound = errors.New("state: key not found")
	// ErrConflict: the key's revision is not the one the write expected,
	// or Create found the key.
	ErrConflict = errors.New("state: revision conflict")
	// ErrNoState: the host keeps no State for the plugin (herald
	// validate's dry run, or a test host that offers none).
	ErrNoState = errors.New("state: not available to this plugin (this host keeps no State: herald validate's dry run, or a test host without one)")
)

// StateHolder is implemented by the Host handle the SDK gives a plugin (a
// separate interface so that Host stays source-compatible for those who
// implement it in tests). Use StateOf.
type StateHolder interface {
	State() State
}

// StateOf returns the plugin's State, or ErrNoState when h does not offer one.
func StateOf(h Host) (State, error) {
	if s, ok := h.(StateHolder); ok && s.State() != nil {
		return s.State(), nil
	}
	return nil, ErrNoState
}
