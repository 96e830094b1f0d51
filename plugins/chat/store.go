package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store is the plugin's bbolt file, <data_dir>/chat.db. It holds what must
// survive a restart:
//
//   - members: "<group_id>\x00<user_id>" -> "" (ids never contain \x00);
//   - users:   user_id -> the user object last reported by objectChanged;
//   - online:  user_id -> the object announced by is_online, so that a
//     restarted plugin knows whom it last told the participants was online.
//
// The plugin keeps the same data in memory and writes through: reads never
// touch the file.
type store struct {
	db *bolt.DB
}

var (
	bucketMembers = []byte("members")
	bucketUsers   = []byte("users")
	bucketOnline  = []byte("online")
)

func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	path := filepath.Join(dir, "chat.db")
	// The timeout covers a previous plugin process still closing the file
	// during a restart; bbolt's lock dies with a killed process.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMembers, bucketUsers, bucketOnline} {
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
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func memberKey(group, user string) []byte { return []byte(group + "\x00" + user) }

func (s *store) setMember(group, user string, member bool) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMembers)
		if member {
			return b.Put(memberKey(group, user), nil)
		}
		return b.Delete(memberKey(group, user))
	})
}

// eachMember calls f for every recorded membership.
func (s *store) eachMember(f func(group, user string)) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, _ []byte) error {
			g, u, ok := bytes.Cut(k, []byte{0})
			if ok {
				f(string(g), string(u))
			}
			return nil
		})
	})
}

// put writes value under key in bucket, or deletes key when value is nil.
func (s *store) put(bucket []byte, key string, value []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if value == nil {
			return b.Delete([]byte(key))
		}
		return b.Put([]byte(key), value)
	})
}

// replace makes bucket hold exactly m.
func (s *store) replace(bucket []byte, m map[string][]byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucket); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		for k, v := range m {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

// all returns a bucket's contents.
func (s *store) all(bucket []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			out[string(k)] = bytes.Clone(v)
			return nil
		})
	})
	return out, err
}
