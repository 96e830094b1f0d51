package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/sdk"
)

// Store is where documents are kept. It is small on purpose; stateStore
// keeps it in the plugin's sdk.State, which is one file on one node and a
// JetStream bucket shared by every node in a cluster. Two processes may
// write one document at once: writes name the revision they read, and fail
// with errChanged when it moved on, so that the caller reads again and
// redoes its write. Every write returns once it is durable.
type Store interface {
	// Get returns the document and its revision, or nil when there is none.
	Get(ctx context.Context, index, collection, id string) (*Doc, uint64, error)
	// Create writes a new document: errChanged when one has its _id.
	Create(ctx context.Context, index, collection string, d *Doc) error
	// Replace writes d over the revision rev of the document: errChanged
	// when it is no longer rev (written or deleted since).
	Replace(ctx context.Context, index, collection string, d *Doc, rev uint64) error
	// Delete removes the document at revision rev: errChanged when it is no
	// longer rev.
	Delete(ctx context.Context, index, collection, id string, rev uint64) error
	// Each calls f for every document of a collection, in _id order (byte
	// order), until f returns false.
	Each(ctx context.Context, index, collection string, f func(*Doc) bool) error
}

// errChanged says a document changed between a read and a write.
var errChanged = errors.New("the document changed meanwhile")

// Meta is a document's _meta, as Kuzzle shows it.
type Meta struct {
	Author    *string `json:"author"`
	CreatedAt int64   `json:"createdAt"`
	UpdatedAt *int64  `json:"updatedAt"`
	Updater   *string `json:"updater"`
	Active    bool    `json:"active"`
	DeletedAt *int64  `json:"deletedAt"`
}

// Doc is one stored document.
type Doc struct {
	ID     string          `json:"_id"`
	Source json.RawMessage `json:"_source"`
	Meta   Meta            `json:"_meta"`
	// Deleting marks a document a delete has claimed (stateStore.Delete):
	// it reads as absent.
	Deleting bool `json:"_deleting,omitempty"`
}

// stateStore keeps each document at doc/<index>/<collection>/<_id> (keys.go)
// as its Doc JSON.
//
// A delete must have one winner between nodes (it is notified once), and
// State's Delete of a key already gone succeeds: so a delete first claims
// the document with Update at the revision read (one process wins that),
// marking it Deleting, then deletes it. A process that dies between the two
// leaves a marked document, which reads as absent and which a create
// overwrites.
type stateStore struct {
	st  sdk.State
	log hclog.Logger
}

// get reads a document as stored, markers included.
func (s stateStore) get(ctx context.Context, key string) (*Doc, uint64, error) {
	e, err := s.st.Get(ctx, key)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	d := new(Doc)
	if err := json.Unmarshal(e.Value, d); err != nil {
		return nil, 0, fmt.Errorf("stored value: %w", err)
	}
	return d, e.Revision, nil
}

func (s stateStore) Get(ctx context.Context, index, collection, id string) (*Doc, uint64, error) {
	d, rev, err := s.get(ctx, docKey(index, collection, id))
	if err != nil {
		return nil, 0, fmt.Errorf("get %s/%s/%s: %w", index, collection, id, err)
	}
	if d == nil || d.Deleting {
		return nil, 0, nil
	}
	return d, rev, nil
}

func (s stateStore) Create(ctx context.Context, index, collection string, d *Doc) error {
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("create %s/%s/%s: %w", index, collection, d.ID, err)
	}
	key := docKey(index, collection, d.ID)
	_, err = s.st.Create(ctx, key, v)
	if errors.Is(err, sdk.ErrConflict) {
		// A delete's marker left behind is overwritten; a document is not.
		old, rev, gerr := s.get(ctx, key)
		if gerr == nil && old != nil && old.Deleting {
			_, err = s.st.Update(ctx, key, v, rev)
		}
	}
	if err != nil {
		return fmt.Errorf("create %s/%s/%s: %w", index, collection, d.ID, changed(err))
	}
	return nil
}

func (s stateStore) Replace(ctx context.Context, index, collection string, d *Doc, rev uint64) error {
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("write %s/%s/%s: %w", index, collection, d.ID, err)
	}
	if _, err := s.st.Update(ctx, docKey(index, collection, d.ID), v, rev); err != nil {
		return fmt.Errorf("write %s/%s/%s: %w", index, collection, d.ID, changed(err))
	}
	return nil
}

func (s stateStore) Delete(ctx context.Context, index, collection, id string, rev uint64) error {
	key := docKey(index, collection, id)
	marker, err := json.Marshal(Doc{ID: id, Deleting: true})
	if err != nil {
		return fmt.Errorf("delete %s/%s/%s: %w", index, collection, id, err)
	}
	claimed, err := s.st.Update(ctx, key, marker, rev)
	if err != nil {
		return fmt.Errorf("delete %s/%s/%s: %w", index, collection, id, changed(err))
	}
	if err := s.st.Delete(ctx, key, claimed); err != nil && !errors.Is(err, sdk.ErrConflict) {
		// Claimed, so deleted for every reader: the marker stays until a
		// create overwrites it.
		s.log.Warn("deleted document's marker left in state", "key", key, "error", err)
	}
	return nil
}

// Each lists the collection's prefix. Keys are escaped (and long ones
// hashed), so their order is not the _ids': the documents are sorted by
// _id after the listing.
func (s stateStore) Each(ctx context.Context, index, collection string, f func(*Doc) bool) error {
	es, err := s.st.List(ctx, collPrefix(index, collection))
	if err != nil {
		return fmt.Errorf("scan %s/%s: %w", index, collection, err)
	}
	docs := make([]*Doc, 0, len(es))
	for _, e := range es {
		d := new(Doc)
		if err := json.Unmarshal(e.Value, d); err != nil {
			return fmt.Errorf("scan %s/%s: %s: %w", index, collection, e.Key, err)
		}
		if !d.Deleting {
			docs = append(docs, d)
		}
	}
	slices.SortFunc(docs, func(a, b *Doc) int { return bytes.Compare([]byte(a.ID), []byte(b.ID)) })
	for _, d := range docs {
		if !f(d) {
			return nil
		}
	}
	return nil
}

// changed maps the State's revision conflicts (and a document gone under an
// Update) onto errChanged, keeping the State's error in the chain.
func changed(err error) error {
	if errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) {
		return fmt.Errorf("%w: %w", errChanged, err)
	}
	return err
}
