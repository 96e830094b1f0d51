package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// The plugin keeps what must outlive a process, and what its processes on
// other nodes must see, in Herald's State (sdk.State): a file on one node,
// a JetStream KV bucket shared by every node's chat process in a cluster.
// The keys:
//
//	members/<group>/<user>  {"group","user"}: a participation (addMember)
//	users/<user>            the user object last reported by objectChanged
//	online/<user>           presenceRecord: which processes hold connections
//	                        of the user; the user is announced online while
//	                        the key exists and names a process. A record
//	                        naming none is a tombstone (offline, announced
//	                        by its writer), deleted next (see sync in
//	                        presence.go)
//	procs/<pid>             a process's liveness record, with a TTL renewed
//	                        by the process (see liveness in presence.go)
//	entering/<group>/<user> {"at"}: the last `entering` of the user in the
//	                        group, with a TTL of entering_window + 1s
//
// Ids are printable ASCII without spaces, up to 128 bytes (validID), but may
// hold "/", which separates key segments. seg escapes "%" as "%25" and "/"
// as "%2F"; an id whose escaped form would pass a segment's 255 bytes
// (only one with many "/" or "%") is written "%h" and the hex SHA-256 of the
// id instead, which no escaped id can be (an escaped "%" is always followed
// by "2"). Every value that a List reads back names its ids itself, so a
// hashed segment never has to be decoded.

const (
	keyMembers  = "members/"
	keyUsers    = "users/"
	keyOnline   = "online/"
	keyProcs    = "procs/"
	keyEntering = "entering/"

	maxSegment = 255
)

// seg is id as one key segment (see above).
func seg(id string) string {
	s := strings.NewReplacer("%", "%25", "/", "%2F").Replace(id)
	if len(s) > maxSegment {
		sum := sha256.Sum256([]byte(id))
		return "%h" + hex.EncodeToString(sum[:])
	}
	return s
}

func memberKey(group, user string) string   { return keyMembers + seg(group) + "/" + seg(user) }
func groupPrefix(group string) string       { return keyMembers + seg(group) + "/" }
func userKey(user string) string            { return keyUsers + seg(user) }
func onlineKey(user string) string          { return keyOnline + seg(user) }
func procKey(pid string) string             { return keyProcs + pid }
func enteringKey(group, user string) string { return keyEntering + seg(group) + "/" + seg(user) }

// membership is the value of a members/ key.
type membership struct {
	Group string `json:"group"`
	User  string `json:"user"`
}

// presenceRecord is the value of an online/ key: the chat processes (by
// pid) that hold at least one connection of the user, and the object that
// is_online announced. With no process it is a tombstone: the user is
// offline.
type presenceRecord struct {
	User   string                  `json:"user"`
	Procs  map[string]procPresence `json:"procs"`
	Object json.RawMessage         `json:"object"`
}

// procPresence is one process's entry in a presenceRecord. It is an
// object, written {}, so that records keep the shape every version reads:
// earlier versions wrote {"listening": true} here (whether the process held
// a connection subscribed to chat:user:<user>, to pick the recipients of
// announcements that now go to the group channels). Such a flag is ignored
// when read and dropped the next time the record is written; an earlier
// version reading {} takes it for "not listening".
type procPresence struct{}

// enteringMark is the value of an entering/ key.
type enteringMark struct {
	At int64 `json:"at"` // unix nanoseconds of the last `entering`
}

func isNotFound(err error) bool { return errors.Is(err, sdk.ErrNotFound) }
func isConflict(err error) bool { return errors.Is(err, sdk.ErrConflict) }

// getJSON reads key into v; found is false for a missing key.
func getJSON(ctx context.Context, st sdk.State, key string, v any) (rev uint64, found bool, err error) {
	e, err := st.Get(ctx, key)
	if isNotFound(err) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return e.Revision, true, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision, true, nil
}

// memberCache is this process's copy of every membership, kept fresh by a
// Watch of members/ (and written through by this process's own writes, so
// that it reads its own writes at once). Each key remembers the revision
// it was last seen at, so that a change the watch delivers late never
// undoes a newer write.
type memberCache struct {
	revs       map[string]memberRev
	groups     map[string]set // group -> its participants
	userGroups map[string]set // user -> their groups
}

type memberRev struct {
	rev  uint64
	m    membership
	gone bool // deleted by this process at rev; the watch has not said so yet
}

func newMemberCache() *memberCache {
	return &memberCache{revs: map[string]memberRev{}, groups: map[string]set{}, userGroups: map[string]set{}}
}

// put records that key holds m at rev, unless a newer revision is known.
func (c *memberCache) put(key string, rev uint64, m membership) {
	if old, ok := c.revs[key]; ok && rev != 0 && old.rev >= rev {
		return
	}
	c.revs[key] = memberRev{rev: rev, m: m}
	c.link(m)
}

// deleted records that key was deleted; rev is the revision it was deleted
// at (this process's own delete) or that of the deletion (the watch's).
// tomb keeps a marker that stops an older put the watch still delivers.
func (c *memberCache) deleted(key string, rev uint64, tomb bool) {
	old, ok := c.revs[key]
	if ok && rev != 0 && old.rev > rev {
		return
	}
	if ok && !old.gone {
		c.unlink(old.m)
	}
	if tomb {
		c.revs[key] = memberRev{rev: rev, m: old.m, gone: true}
	} else {
		delete(c.revs, key)
	}
}

func (c *memberCache) link(m membership) {
	if c.groups[m.Group] == nil {
		c.groups[m.Group] = set{}
	}
	c.groups[m.Group].add(m.User)
	if c.userGroups[m.User] == nil {
		c.userGroups[m.User] = set{}
	}
	c.userGroups[m.User].add(m.Group)
}

func (c *memberCache) unlink(m membership) {
	delete(c.groups[m.Group], m.User)
	if len(c.groups[m.Group]) == 0 {
		delete(c.groups, m.Group)
	}
	delete(c.userGroups[m.User], m.Group)
	if len(c.userGroups[m.User]) == 0 {
		delete(c.userGroups, m.User)
	}
}

func (c *memberCache) has(group, user string) bool {
	_, ok := c.groups[group][user]
	return ok
}

// presenceCache is this process's copy of the online/ records, kept fresh
// by a Watch: the reap reads it for the processes the records name (and
// for tombstones) without listing online/ each time.
type presenceCache struct {
	recs map[string]presenceRev // by key
}

type presenceRev struct {
	rev  uint64
	rec  *presenceRecord // nil: deleted by this process at rev (a tombstone)
	gone bool
}

func (c *presenceCache) put(key string, rev uint64, r *presenceRecord) {
	if old, ok := c.recs[key]; ok && rev != 0 && old.rev >= rev {
		return
	}
	c.recs[key] = presenceRev{rev: rev, rec: r}
}

func (c *presenceCache) deleted(key string, rev uint64, tomb bool) {
	if old, ok := c.recs[key]; ok && rev != 0 && old.rev > rev {
		return
	}
	if tomb {
		c.recs[key] = presenceRev{rev: rev, gone: true}
	} else {
		delete(c.recs, key)
	}
}

// stateError is the error a call answers when the State failed: -32050
// (retry later) while the store cannot be reached (in a cluster, NATS is
// down), internal otherwise. what ends with ": ".
func stateError(what string, err error) error {
	if errors.Is(err, sdk.ErrStateUnavailable) {
		return sdk.Errorf(sdk.CodePluginUnavailable, "%s%v (retry later)", what, err)
	}
	return sdk.Internal(what + err.Error())
}
