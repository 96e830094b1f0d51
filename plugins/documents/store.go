package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Store is what the plugin keeps on disk: documents, and the rooms live
// clients subscribe to (so that a restarted plugin serves the channels the
// host kept subscribed). It is small on purpose: a later issue moves the
// plugin onto a shared store. Every write method returns once the write is
// durable.
type Store interface {
	// Get returns the document, or nil when there is none.
	Get(index, collection, id string) (*Doc, error)
	Put(index, collection string, d *Doc) error
	Delete(index, collection, id string) error
	// Each calls f for every document of a collection, in _id order, until
	// f returns false.
	Each(index, collection string, f func(*Doc) bool) error

	PutRoom(r *RoomRecord) error
	DeleteRoom(roomID string) error
	Rooms() ([]*RoomRecord, error)

	Close() error
}

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
}

// RoomRecord is a room as stored: enough to register its filter again and
// to know its channels.
type RoomRecord struct {
	ID         string          `json:"roomId"`
	Index      string          `json:"index"`
	Collection string          `json:"collection"`
	Filter     json.RawMessage `json:"filter"`
	// Generation tells apart two lives of a room (dropped, then created
	// again): it is part of the channel names, so that a client resuming a
	// channel of the old life is told recovered: false.
	Generation uint64          `json:"generation"`
	Channels   []ChannelRecord `json:"channels"`
}

// ChannelRecord is one (scope, state, users) configuration of a room.
type ChannelRecord struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	State string `json:"state"`
	Users string `json:"users"`
}

// boltStore keeps everything in <data_dir>/documents.db:
//
//   - docs:  one nested bucket per "<index>\x00<collection>", _id -> Doc JSON;
//   - rooms: roomId -> RoomRecord JSON.
//
// Document writes go through bolt's Batch, which groups concurrent writers
// into one transaction and one fsync.
type boltStore struct {
	db *bolt.DB
}

var (
	bucketDocs  = []byte("docs")
	bucketRooms = []byte("rooms")
)

func openStore(dir string) (*boltStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dir, "documents.db")
	// The timeout covers a previous plugin process still closing the file
	// during a restart; bbolt's lock dies with a killed process.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Concurrent writes of different documents share a commit; the delay
	// bounds what one write waits for others to join it.
	db.MaxBatchDelay = 2 * time.Millisecond
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketDocs, bucketRooms} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &boltStore{db: db}, nil
}

func collKey(index, collection string) []byte { return []byte(index + "\x00" + collection) }

func (s *boltStore) Close() error { return s.db.Close() }

func (s *boltStore) Get(index, collection, id string) (*Doc, error) {
	var d *Doc
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDocs).Bucket(collKey(index, collection))
		if b == nil {
			return nil
		}
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		d = new(Doc)
		return json.Unmarshal(v, d)
	})
	if err != nil {
		return nil, fmt.Errorf("get %s/%s/%s: %w", index, collection, id, err)
	}
	return d, nil
}

func (s *boltStore) Put(index, collection string, d *Doc) error {
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("put %s/%s/%s: %w", index, collection, d.ID, err)
	}
	err = s.db.Batch(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketDocs).CreateBucketIfNotExists(collKey(index, collection))
		if err != nil {
			return err
		}
		return b.Put([]byte(d.ID), v)
	})
	if err != nil {
		return fmt.Errorf("put %s/%s/%s: %w", index, collection, d.ID, err)
	}
	return nil
}

func (s *boltStore) Delete(index, collection, id string) error {
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDocs).Bucket(collKey(index, collection))
		if b == nil {
			return nil
		}
		return b.Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete %s/%s/%s: %w", index, collection, id, err)
	}
	return nil
}

var errStop = errors.New("stop")

func (s *boltStore) Each(index, collection string, f func(*Doc) bool) error {
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDocs).Bucket(collKey(index, collection))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var d Doc
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			if !f(&d) {
				return errStop
			}
			return nil
		})
	})
	if err != nil && !errors.Is(err, errStop) {
		return fmt.Errorf("scan %s/%s: %w", index, collection, err)
	}
	return nil
}

func (s *boltStore) PutRoom(r *RoomRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("put room %s: %w", r.ID, err)
	}
	if err := s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucketRooms).Put([]byte(r.ID), v) }); err != nil {
		return fmt.Errorf("put room %s: %w", r.ID, err)
	}
	return nil
}

func (s *boltStore) DeleteRoom(id string) error {
	if err := s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucketRooms).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("delete room %s: %w", id, err)
	}
	return nil
}

func (s *boltStore) Rooms() ([]*RoomRecord, error) {
	var out []*RoomRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).ForEach(func(k, v []byte) error {
			r := new(RoomRecord)
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("room %s: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load rooms: %w", err)
	}
	return out, nil
}
