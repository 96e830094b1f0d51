package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// grant is one right the backend recorded for a user of a network:
// view_readers on a message, or the admin role of a group.
type grant struct {
	Network string // networkEID
	User    string // the user's EID in that network
	Right   string // rightViewReaders or rightAdmin
	Object  string // the messageEID (view_readers) or groupEID (admin)
}

const (
	rightViewReaders = "view_readers" // granted per message: `permission`
	rightAdmin       = "admin"        // granted per group: `role`
)

// grants is where the plugin keeps the backend's grants. It is the plugin's
// only state that outlives a process; keep it behind this interface so that
// a shared store can replace the bbolt file (clustering).
type grants interface {
	// Set records g (on) or removes it (off) and says whether that changed
	// anything.
	Set(g grant, on bool) (changed bool, err error)
	Has(g grant) (bool, error)
	Close() error
}

// boltGrants keeps grants in <data_dir>/timelines.db, bucket "grants", one
// key per grant: right, network, user and object joined by \x00 (EIDs hold
// no control characters). Every write is a committed transaction, so a
// grant answered to the backend survives a kill -9.
type boltGrants struct {
	db *bolt.DB
}

var _ grants = (*boltGrants)(nil)

var bucketGrants = []byte("grants")

func openBoltGrants(dir string) (*boltGrants, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dir, "timelines.db")
	// The timeout covers a previous plugin process still closing the file
	// during a restart; bbolt's lock dies with a killed process.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketGrants)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return &boltGrants{db: db}, nil
}

func (g grant) key() []byte {
	return []byte(strings.Join([]string{g.Right, g.Network, g.User, g.Object}, "\x00"))
}

func (s *boltGrants) Set(g grant, on bool) (bool, error) {
	changed := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGrants)
		k := g.key()
		had := b.Get(k) != nil
		changed = had != on
		if !changed {
			return nil
		}
		if on {
			return b.Put(k, []byte{1})
		}
		return b.Delete(k)
	})
	if err != nil {
		return false, fmt.Errorf("save %s grant: %w", g.Right, err)
	}
	return changed, nil
}

func (s *boltGrants) Has(g grant) (bool, error) {
	has := false
	err := s.db.View(func(tx *bolt.Tx) error {
		has = tx.Bucket(bucketGrants).Get(g.key()) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("read %s grant: %w", g.Right, err)
	}
	return has, nil
}

func (s *boltGrants) Close() error { return s.db.Close() }
