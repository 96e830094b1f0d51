package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// The rooms are shared by the plugin's processes on every node through
// sdk.State (keys.go):
//
//   - room/<roomId> holds a room and its channels. Every process keeps all
//     rooms in memory (the filter engines match writes against them), kept
//     fresh by a Watch: a write is matched on the node that made it, against
//     every room of the cluster, and emitted there once per phase.
//   - member/<roomId>/<connId> says that a connection (on the node whose
//     process is named in it) holds channels of the room. A process counts
//     its own connections from memory and the others' from these records
//     (Watch): room counts and channel emptiness are cluster-wide.
//   - node/<nodeId> is a live process, written with a TTL and refreshed.
//     When one expires, the records of its connections are deleted (and
//     their leave notifications sent) by whichever process wins each delete.
//
// No two writes are a transaction, so the writes are ordered:
//
//   - Joining: the member record naming the channel is written first, then
//     the room is read fresh and the channel added (or kept) with
//     Update/Create at the revision read.
//   - Dropping (a channel empty for resume_window): the channel is marked
//     dropping with Update at the revision read, then the room's member
//     records are listed fresh, then the channels no record names are
//     removed with Update (or the room deleted) at the marked revision; a
//     joiner that reads the room after its member record was written either
//     finds the channel unmarked (then the listing sees its record) or
//     marked (then it unmarks it, and the removal fails on the revision), so
//     a channel is never dropped under a subscriber.

// roomRecord is a room as State keeps it.
type roomRecord struct {
	ID         string          `json:"roomId"`
	Index      string          `json:"index"`
	Collection string          `json:"collection"`
	Filter     json.RawMessage `json:"filter"`
	// Generation tells apart two lives of a room (dropped, then created
	// again): it is part of the channel names, so that a client resuming a
	// channel of the old life is told recovered: false. The process whose
	// Create of the room wins chooses it.
	Generation uint64          `json:"generation"`
	Channels   []channelRecord `json:"channels"`
}

// channelRecord is one (scope, state, users) configuration of a room.
type channelRecord struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	State string `json:"state"`
	Users string `json:"users"`
	// Dropping: a process is about to drop it (see above).
	Dropping bool `json:"dropping,omitempty"`
}

// memberRecord is a connection's presence in a room.
type memberRecord struct {
	Node     string          `json:"node"`
	Conn     string          `json:"conn"`
	Channels []string        `json:"channels"`
	Volatile json.RawMessage `json:"volatile,omitempty"`
	// Buried: a process claimed the record of a dead one (buryDead) and
	// sends its leave; it is deleted next.
	Buried bool `json:"buried,omitempty"`
}

type cachedMember struct {
	rec memberRecord
	rev uint64
}

// errRoomGone: join's room does not exist (any more).
var errRoomGone = errors.New("room gone")

// maxAttempts bounds the read-and-write-again loops of one call; each
// retry means another process wrote the same key meanwhile.
const maxAttempts = 16

// ---- the cache: applying what State says, d.mu held ----

// applyRoom applies a room record read from State or written by this
// process at revision rev, unless the cache holds a later one.
func (d *Documents) applyRoom(rec *roomRecord, rev uint64, now time.Time) {
	if _, gone := d.roomTomb[rec.ID]; gone {
		return // deleted by this process; the Watch has not said so yet
	}
	r := d.rooms[rec.ID]
	if r != nil && rev <= r.rev {
		return
	}
	if r != nil && r.generation != rec.Generation {
		d.removeRoom(r, now)
		r = nil
	}
	if r == nil {
		c := d.collection(rec.Index, rec.Collection)
		fid, err := c.engine.Register(rec.Filter)
		if err != nil {
			d.log.Warn("stored room has a filter this plugin refuses: skipped", "room", rec.ID, "error", err)
			if len(c.rooms) == 0 {
				delete(d.colls, rec.Index+"\x00"+rec.Collection)
			}
			return
		}
		r = &room{id: rec.ID, coll: c, filterID: fid, filter: rec.Filter, generation: rec.Generation,
			channels: map[string]*channel{}, members: map[string]*member{}}
		c.rooms[fid] = r
		d.rooms[r.id] = r
	}
	r.rev = rev
	seen := make(map[string]bool, len(rec.Channels))
	for _, cr := range rec.Channels {
		seen[cr.Name] = true
		ch := r.channels[cr.Name]
		if ch == nil {
			ch = &channel{name: cr.Name, room: r, scope: cr.Scope, state: cr.State, users: cr.Users,
				subs: map[string]struct{}{}, emptySince: now}
			r.channels[ch.name] = ch
			d.channels[ch.name] = ch
		}
		ch.dropping = cr.Dropping
	}
	for name, ch := range r.channels {
		if !seen[name] {
			d.dropChannel(ch)
		}
	}
	d.recount(r, now)
}

// applyRoomLocal applies a room record this process wrote.
func (d *Documents) applyRoomLocal(rec *roomRecord, rev uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.roomTomb, rec.ID)
	d.applyRoom(rec, rev, d.now())
}

// unapplyRoom applies a room's deletion.
func (d *Documents) unapplyRoom(id string, now time.Time) {
	if r := d.rooms[id]; r != nil {
		d.removeRoom(r, now)
	}
}

// removeRoom forgets a room, its channels and its filter.
func (d *Documents) removeRoom(r *room, _ time.Time) {
	for _, ch := range r.channels {
		d.dropChannel(ch)
	}
	delete(d.rooms, r.id)
	delete(r.coll.rooms, r.filterID)
	r.coll.engine.Remove(r.filterID)
	if len(r.coll.rooms) == 0 {
		delete(d.colls, r.coll.index+"\x00"+r.coll.name)
	}
}

// dropChannel forgets a channel. Subscribers of this process on it (the
// channel was dropped while this process's records were missing: it lost
// its State for longer than liveness_ttl) are unsubscribed by the janitor.
func (d *Documents) dropChannel(ch *channel) {
	r := ch.room
	delete(r.channels, ch.name)
	delete(d.channels, ch.name)
	for conn := range ch.subs {
		d.log.Warn("room channel dropped under a subscriber of this node; unsubscribing it", "conn", conn, "channel", ch.name)
		d.forgetSub(conn, ch)
		d.orphans = append(d.orphans, orphan{conn: conn, channel: ch.name})
		d.markDirty(r.id, conn)
		d.kickJanitor()
	}
}

// forgetSub removes a local subscription without any notification.
func (d *Documents) forgetSub(conn string, ch *channel) {
	delete(ch.subs, conn)
	if cs := d.conns[conn]; cs != nil {
		delete(cs, ch.name)
		if len(cs) == 0 {
			delete(d.conns, conn)
		}
	}
	if m := ch.room.members[conn]; m != nil {
		delete(m.channels, ch.name)
		if len(m.channels) == 0 {
			d.dropMember(ch.room, conn)
		}
	}
}

// takeMember makes conn a member of r held by this process; d.mu held.
func (d *Documents) takeMember(r *room, conn string, m *member) {
	r.members[conn] = m
	if cm := d.records[r.id][seg(conn)]; cm != nil && cm.rec.Node != d.node {
		d.contrib(r, cm, -1, d.now()) // counted as this process's from now on
	}
}

// dropMember ends conn's membership of r held by this process; d.mu held.
func (d *Documents) dropMember(r *room, conn string) {
	delete(r.members, conn)
	if cm := d.records[r.id][seg(conn)]; cm != nil && d.counted(r, cm) {
		d.contrib(r, cm, 1, d.now()) // its record, another process's, counts again
	}
}

// recount counts again the other nodes' connections in r and on each of
// its channels.
func (d *Documents) recount(r *room, now time.Time) {
	was := make(map[*channel]bool, len(r.channels))
	for _, ch := range r.channels {
		was[ch] = ch.empty()
		ch.remote = 0
	}
	r.remote = 0
	for _, cm := range d.records[r.id] {
		if d.counted(r, cm) {
			d.contrib(r, cm, 1, now)
		}
	}
	for ch, empty := range was {
		if !empty && ch.empty() {
			ch.emptySince = now
		}
	}
}

// counted says whether a member record counts in r: another process's, of
// a connection this process does not hold (a restarted process holds the
// connections its predecessor's records name until it writes them again).
func (d *Documents) counted(r *room, cm *cachedMember) bool {
	return cm.rec.Node != d.node && r.members[cm.rec.Conn] == nil
}

// contrib adds (sign 1) or takes away (-1) a record's connection from r's
// counts.
func (d *Documents) contrib(r *room, cm *cachedMember, sign int, now time.Time) {
	r.remote += sign
	for _, name := range cm.rec.Channels {
		if ch := r.channels[name]; ch != nil {
			ch.remote += sign
			if sign < 0 && ch.empty() {
				ch.emptySince = now
			}
		}
	}
}

// applyMember applies a member record (nil: deleted) at revision rev; sc
// is the connection's key segment.
func (d *Documents) applyMember(roomID, sc string, rec *memberRecord, rev uint64, now time.Time) {
	rs := d.records[roomID]
	old := rs[sc]
	r := d.rooms[roomID]
	if old != nil && r != nil && d.counted(r, old) {
		d.contrib(r, old, -1, now)
	}
	if rec == nil {
		delete(rs, sc)
		if len(rs) == 0 {
			delete(d.records, roomID)
		}
		return
	}
	if rs == nil {
		rs = map[string]*cachedMember{}
		d.records[roomID] = rs
	}
	cm := &cachedMember{rec: *rec, rev: rev}
	rs[sc] = cm
	if rec.Node == d.node {
		return
	}
	if !d.nodes[rec.Node] {
		d.suspects[rec.Node] = true // the janitor asks whether it lives
	}
	if r != nil && d.counted(r, cm) {
		d.contrib(r, cm, 1, now)
	}
}

// ---- Watch: keeping the cache fresh ----

// watch follows prefix with apply until ctx ends, watching again after a
// failure; ready is closed after the first complete load.
//
// The load is a List made once the watch is in place, so that no change
// falls between the two: when the Watch's first call says Reset (as
// sdk.State promises), or when this process's probe key under prefix comes
// through the watch (Herald's one-node host sends no first Reset yet; a
// probe's change proves the watch is in place). Probes are never applied.
func (d *Documents) watch(ctx context.Context, prefix string, load func([]sdk.Entry), apply func(sdk.Change), ready chan struct{}) {
	defer d.wg.Done()
	loaded := false
	for {
		wctx, cancel := context.WithCancel(ctx)
		inPlace := false
		err := d.state.Watch(wctx, prefix, func(c sdk.Change) {
			probe := !c.Reset && isProbe(prefix, c.Key)
			if c.Reset || probe && !inPlace {
				inPlace = true
				es, err := d.state.List(wctx, prefix)
				if err != nil {
					d.log.Warn("state watch: reload failed; watching again", "prefix", prefix, "error", err)
					cancel()
					return
				}
				load(slices.DeleteFunc(es, func(e sdk.Entry) bool { return isProbe(prefix, e.Key) }))
				if !loaded {
					loaded = true
					close(ready)
				}
				return
			}
			if !probe {
				apply(c)
			}
		})
		cancel()
		if ctx.Err() != nil {
			return
		}
		d.log.Warn("state watch ended; watching again", "prefix", prefix, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// probeKey is this process's probe under prefix: no other key's segment
// starts with "=" and a letter (seg puts two hex digits or "=" after an
// "="; room and process ids are hex), and its bytes are those NATS allows
// in a key-value key.
func (d *Documents) probeKey(prefix string) string { return prefix + "=probe-" + d.node }

func isProbe(prefix, key string) bool { return strings.HasPrefix(key, prefix+"=probe-") }

func (d *Documents) loadRooms(es []sdk.Entry) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.roomTomb)
	listed := make(map[string]bool, len(es))
	for _, e := range es {
		var rec roomRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			d.log.Warn("stored room unreadable: skipped", "key", e.Key, "error", err)
			continue
		}
		listed[rec.ID] = true
		if r := d.rooms[rec.ID]; r != nil && r.rev > e.Revision {
			r.rev = 0 // a reload is the truth, even if revisions went back
		}
		d.applyRoom(&rec, e.Revision, now)
	}
	for id, r := range d.rooms {
		if listed[id] {
			continue
		}
		if len(r.members) > 0 {
			// This process's subscribers are on it: the listing may predate
			// this process's own write of it; the janitor reads it fresh.
			d.verify[id] = struct{}{}
			d.kickJanitor()
			continue
		}
		d.removeRoom(r, now)
	}
}

func (d *Documents) applyRoomChange(c sdk.Change) {
	id := strings.TrimPrefix(c.Key, roomPrefix)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.Deleted {
		if r := d.rooms[id]; r != nil && c.Revision != 0 && r.rev > c.Revision {
			return // an older life's deletion, reported late
		}
		delete(d.roomTomb, id)
		d.unapplyRoom(id, now)
		return
	}
	var rec roomRecord
	if err := json.Unmarshal(c.Value, &rec); err != nil {
		d.log.Warn("stored room unreadable: skipped", "key", c.Key, "error", err)
		return
	}
	d.applyRoom(&rec, c.Revision, now)
}

// memberRoom splits a member key into its room and its last segment (the
// connection, escaped: the cache is keyed by it, the record holds the
// connection as it is).
func memberRoom(key string) (room, sc string) {
	rest := strings.TrimPrefix(key, memberPrefix)
	room, sc, _ = strings.Cut(rest, "/")
	return room, sc
}

func (d *Documents) loadMembers(es []sdk.Entry) {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.memberTomb)
	clear(d.records)
	for _, e := range es {
		var rec memberRecord
		if err := json.Unmarshal(e.Value, &rec); err != nil {
			d.log.Warn("stored member unreadable: skipped", "key", e.Key, "error", err)
			continue
		}
		room, sc := memberRoom(e.Key)
		rs := d.records[room]
		if rs == nil {
			rs = map[string]*cachedMember{}
			d.records[room] = rs
		}
		rs[sc] = &cachedMember{rec: rec, rev: e.Revision}
		if rec.Node != d.node && !d.nodes[rec.Node] {
			d.suspects[rec.Node] = true
		}
	}
	for _, r := range d.rooms {
		d.recount(r, now)
		for conn := range r.members {
			if cm := d.records[r.id][seg(conn)]; cm == nil || cm.rec.Node != d.node {
				d.markDirty(r.id, conn)
			}
		}
	}
}

func (d *Documents) applyMemberChange(c sdk.Change) {
	room, sc := memberRoom(c.Key)
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.Deleted {
		delete(d.memberTomb, c.Key)
		cm := d.records[room][sc]
		if cm == nil || c.Revision != 0 && cm.rev > c.Revision {
			return // unknown, or an older life's deletion reported late
		}
		conn := cm.rec.Conn
		d.applyMember(room, sc, nil, 0, now)
		if r := d.rooms[room]; r != nil && r.members[conn] != nil {
			// Deleted under a connection this process holds (its node
			// was taken for dead): write it again.
			d.markDirty(room, conn)
			d.kickJanitor()
		}
		return
	}
	if _, gone := d.memberTomb[c.Key]; gone {
		return
	}
	var rec memberRecord
	if err := json.Unmarshal(c.Value, &rec); err != nil {
		d.log.Warn("stored member unreadable: skipped", "key", c.Key, "error", err)
		return
	}
	if cm := d.records[room][sc]; cm != nil && c.Revision <= cm.rev {
		return
	}
	d.applyMember(room, sc, &rec, c.Revision, now)
}

func (d *Documents) loadNodes(es []sdk.Entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.nodes)
	for _, e := range es {
		d.nodes[strings.TrimPrefix(e.Key, nodePrefix)] = true
	}
	for _, rs := range d.records {
		for _, cm := range rs {
			if cm.rec.Node != d.node && !d.nodes[cm.rec.Node] {
				d.suspects[cm.rec.Node] = true
			}
		}
	}
}

func (d *Documents) applyNodeChange(c sdk.Change) {
	id := strings.TrimPrefix(c.Key, nodePrefix)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !c.Deleted {
		d.nodes[id] = true
		delete(d.suspects, id)
		return
	}
	delete(d.nodes, id)
	if id == d.node {
		d.kickJanitor() // this process's own key expired: write it again now
		return
	}
	d.suspects[id] = true
	d.kickJanitor()
}

// ---- writes ----

func (d *Documents) getRoom(ctx context.Context, id string) (*roomRecord, uint64, error) {
	e, err := d.state.Get(ctx, roomKey(id))
	if err != nil {
		return nil, 0, err
	}
	var rec roomRecord
	if err := json.Unmarshal(e.Value, &rec); err != nil {
		return nil, 0, fmt.Errorf("room %s: stored value: %w", id, err)
	}
	return &rec, e.Revision, nil
}

func (d *Documents) putRoom(ctx context.Context, rec *roomRecord, rev uint64, create bool) (uint64, error) {
	v, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	if create {
		return d.state.Create(ctx, roomKey(rec.ID), v)
	}
	return d.state.Update(ctx, roomKey(rec.ID), v, rev)
}

// ensureChannel makes the channel of o live in State's record of room id
// (present and not dropping), creating the room from spec with generation
// gen when it does not exist (errRoomGone without spec). It returns the
// room as State has it now, whose generation may not be gen: the room was
// made again meanwhile, and the caller must name its channel again.
func (d *Documents) ensureChannel(ctx context.Context, id string, gen uint64, spec *roomRecord, o checkedOptions) (*roomRecord, uint64, error) {
	for range maxAttempts {
		rec, rev, err := d.getRoom(ctx, id)
		if errors.Is(err, sdk.ErrNotFound) {
			if spec == nil {
				return nil, 0, errRoomGone
			}
			// The check and the reservation are one step under d.mu, and
			// the reservation ends only once the room is in d.rooms (or
			// was not created): a room being created always counts.
			d.mu.Lock()
			if len(d.rooms)+d.creating >= d.cfg.MaxRooms {
				d.mu.Unlock()
				return nil, 0, sdk.LimitExceeded(fmt.Sprintf("limit exceeded: %d rooms exist, the documents plugin's max_rooms", d.cfg.MaxRooms))
			}
			d.creating++
			d.mu.Unlock()
			rec = &roomRecord{ID: id, Index: spec.Index, Collection: spec.Collection, Filter: spec.Filter, Generation: gen,
				Channels: []channelRecord{{Name: channelName(id, gen, o.scope, o.state, o.users), Scope: o.scope, State: o.state, Users: o.users}}}
			rev, err = d.putRoom(ctx, rec, 0, true)
			d.mu.Lock()
			d.creating--
			if err == nil {
				delete(d.roomTomb, id)
				d.applyRoom(rec, rev, d.now())
			}
			d.mu.Unlock()
			if errors.Is(err, sdk.ErrConflict) {
				continue
			}
			if err != nil {
				return nil, 0, fmt.Errorf("create room %s: %w", id, err)
			}
			return rec, rev, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read room %s: %w", id, err)
		}
		if rec.Generation != gen {
			return rec, rev, nil
		}
		name := channelName(id, gen, o.scope, o.state, o.users)
		i := slices.IndexFunc(rec.Channels, func(c channelRecord) bool { return c.Name == name })
		switch {
		case i >= 0 && !rec.Channels[i].Dropping:
			return rec, rev, nil
		case i >= 0:
			rec.Channels[i].Dropping = false
		default:
			rec.Channels = append(rec.Channels, channelRecord{Name: name, Scope: o.scope, State: o.state, Users: o.users})
		}
		nrev, err := d.putRoom(ctx, rec, rev, false)
		if errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("write room %s: %w", id, err)
		}
		return rec, nrev, nil
	}
	return nil, 0, fmt.Errorf("room %s: other nodes kept changing it; try again", id)
}

// writeMember brings State's record of conn in room in line with this
// process's memory, plus extra (a channel being joined); the caller holds
// the member's lock.
func (d *Documents) writeMember(ctx context.Context, roomID, conn, extra string, volatile json.RawMessage) error {
	d.mu.RLock()
	var rec *memberRecord
	if r := d.rooms[roomID]; r != nil {
		if m := r.members[conn]; m != nil {
			rec = &memberRecord{Node: d.node, Conn: conn, Volatile: m.volatile}
			for name := range m.channels {
				rec.Channels = append(rec.Channels, name)
			}
		}
	}
	if extra != "" {
		if rec == nil {
			rec = &memberRecord{Node: d.node, Conn: conn, Volatile: volatile}
		}
		if !slices.Contains(rec.Channels, extra) {
			rec.Channels = append(rec.Channels, extra)
		}
	}
	sc := seg(conn)
	cur := d.records[roomID][sc]
	d.mu.RUnlock()
	key := memberKey(roomID, conn)
	if rec == nil {
		if cur == nil {
			return nil
		}
		if err := d.state.Delete(ctx, key, 0); err != nil {
			return fmt.Errorf("delete member %s: %w", key, err)
		}
		d.mu.Lock()
		d.applyMember(roomID, sc, nil, 0, d.now())
		d.memberTomb[key] = struct{}{}
		d.mu.Unlock()
		return nil
	}
	slices.Sort(rec.Channels)
	if cur != nil && cur.rec.Node == d.node && slices.Equal(cur.rec.Channels, rec.Channels) && string(cur.rec.Volatile) == string(rec.Volatile) {
		return nil
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	rev, err := d.state.Put(ctx, key, v)
	if err != nil {
		return fmt.Errorf("write member %s: %w", key, err)
	}
	d.mu.Lock()
	delete(d.memberTomb, key)
	if cm := d.records[roomID][sc]; cm == nil || rev > cm.rev {
		d.applyMember(roomID, sc, rec, rev, d.now())
	}
	d.mu.Unlock()
	return nil
}

// flushMember writes the record of conn in room as memory has it.
func (d *Documents) flushMember(ctx context.Context, roomID, conn string) error {
	defer d.memberLock(roomID, conn)()
	return d.writeMember(ctx, roomID, conn, "", nil)
}

type memberRef struct{ room, conn string }

// markDirty queues a member record for flushDirty; d.mu held.
func (d *Documents) markDirty(room, conn string) { d.dirty[memberRef{room, conn}] = struct{}{} }

// flushDirty writes the queued member records, a few at a time; failed
// ones stay queued.
func (d *Documents) flushDirty(ctx context.Context) {
	d.mu.Lock()
	refs := make([]memberRef, 0, len(d.dirty))
	for ref := range d.dirty {
		refs = append(refs, ref)
	}
	clear(d.dirty)
	d.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	sem := make(chan struct{}, flushParallel)
	done := make(chan struct{})
	for _, ref := range refs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; done <- struct{}{} }()
			if err := d.flushMember(ctx, ref.room, ref.conn); err != nil {
				d.log.Warn("state: member record not written; will retry", "room", ref.room, "conn", ref.conn, "error", err)
				d.mu.Lock()
				d.markDirty(ref.room, ref.conn)
				d.mu.Unlock()
			}
		}()
	}
	for range refs {
		<-done
	}
}

// ---- the janitor: liveness, dead nodes, leftovers, empty channels ----

func (d *Documents) kickJanitor() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// janitor runs until Drain: it refreshes this process's liveness key,
// writes queued member records, cleans up after dead nodes and drops
// channels that stayed empty for the resume window.
func (d *Documents) janitor(ctx context.Context) {
	defer d.wg.Done()
	// A tick of at most a sixth of the TTL renews the liveness key at most
	// half a TTL after the previous renewal.
	tick := max(min(d.cfg.ResumeWindow/4, d.cfg.LivenessTTL/6), 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastBeat, lastCheck := d.now(), d.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		now := d.now()
		d.mu.RLock()
		lost := !d.nodes[d.node]
		d.mu.RUnlock()
		if lost || now.Sub(lastBeat) >= d.cfg.LivenessTTL/3 {
			if err := d.beat(ctx); err != nil {
				d.log.Warn("state: liveness key not written", "error", err)
			} else {
				lastBeat = now
			}
		}
		if now.Sub(lastCheck) >= d.cfg.LivenessTTL {
			// A store may not report a key's expiry as a deletion: every
			// TTL, every process that holds records is asked about.
			lastCheck = now
			d.suspectAll()
		}
		d.unsubscribeOrphans(ctx)
		d.maint.Lock()
		d.flushDirty(ctx)
		d.verifyRooms(ctx)
		d.auditOwn(now, tick)
		d.buryDead(ctx)
		d.sweep(ctx)
		d.maint.Unlock()
	}
}

// suspectAll queues every other process seen in member records, for
// buryDead to check whether it lives.
func (d *Documents) suspectAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, rs := range d.records {
		for _, cm := range rs {
			if cm.rec.Node != d.node {
				d.suspects[cm.rec.Node] = true
			}
		}
	}
}

// beat writes this process's liveness key.
func (d *Documents) beat(ctx context.Context) error {
	v, _ := json.Marshal(map[string]any{"started": d.started.UnixMilli()})
	if _, err := d.state.Put(ctx, nodeKey(d.node), v, sdk.WithTTL(d.cfg.LivenessTTL)); err != nil {
		return err
	}
	d.mu.Lock()
	d.nodes[d.node] = true
	d.mu.Unlock()
	return nil
}

// auditOwn, once the replay that follows a Reset is over (no replayed
// event for a tick), queues this process's records of connections it no
// longer holds, so that they are deleted.
func (d *Documents) auditOwn(now time.Time, quiet time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.audit || now.Sub(d.lastReplay) < quiet {
		return
	}
	d.audit = false
	for room, rs := range d.records {
		for _, cm := range rs {
			if cm.rec.Node != d.node {
				continue
			}
			if r := d.rooms[room]; r == nil || r.members[cm.rec.Conn] == nil {
				d.markDirty(room, cm.rec.Conn)
			}
		}
	}
	if len(d.dirty) > 0 {
		d.kickJanitor()
	}
}

// verifyRooms reads fresh the rooms a reload did not list but this process
// has subscribers on: gone, they are dropped; else kept.
func (d *Documents) verifyRooms(ctx context.Context) {
	d.mu.Lock()
	ids := make([]string, 0, len(d.verify))
	for id := range d.verify {
		ids = append(ids, id)
	}
	clear(d.verify)
	d.mu.Unlock()
	for _, id := range ids {
		rec, rev, err := d.getRoom(ctx, id)
		d.mu.Lock()
		switch {
		case errors.Is(err, sdk.ErrNotFound):
			d.unapplyRoom(id, d.now())
		case err != nil:
			d.log.Warn("state: room not read; will retry", "room", id, "error", err)
			d.verify[id] = struct{}{}
		default:
			if r := d.rooms[id]; r != nil && r.generation != rec.Generation {
				r.rev = 0
			}
			d.applyRoom(rec, rev, d.now())
		}
		d.mu.Unlock()
	}
}

type orphan struct{ conn, channel string }

// unsubscribeOrphans unsubscribes connections from channels dropped under
// them.
func (d *Documents) unsubscribeOrphans(ctx context.Context) {
	d.mu.Lock()
	os := d.orphans
	d.orphans = nil
	for _, o := range os {
		ex := d.expectUnsub[o.conn]
		if ex == nil {
			ex = map[string]int{}
			d.expectUnsub[o.conn] = ex
		}
		ex[o.channel]++
	}
	d.mu.Unlock()
	for _, o := range os {
		if err := d.host.Unsubscribe(ctx, o.conn, o.channel); err != nil {
			d.log.Warn("unsubscribe from a dropped channel", "conn", o.conn, "channel", o.channel, "error", err)
		}
	}
}

// buryDead deletes the member records of processes whose liveness key is
// gone, each at the revision read, and sends the leave notifications of
// the records it deleted: whichever process wins a delete sends them, so
// they leave once.
func (d *Documents) buryDead(ctx context.Context) {
	d.mu.RLock()
	var suspects []string
	for n := range d.suspects {
		suspects = append(suspects, n)
	}
	d.mu.RUnlock()
	for _, n := range suspects {
		_, err := d.state.Get(ctx, nodeKey(n))
		if err == nil {
			d.mu.Lock()
			delete(d.suspects, n)
			d.nodes[n] = true
			d.mu.Unlock()
			continue
		}
		if !errors.Is(err, sdk.ErrNotFound) {
			d.log.Warn("state: liveness of a node unknown", "node", n, "error", err)
			continue
		}
		type dead struct {
			room string
			cm   cachedMember
		}
		var ds []dead
		d.mu.Lock()
		delete(d.suspects, n)
		for room, rs := range d.records {
			for _, cm := range rs {
				if cm.rec.Node == n {
					ds = append(ds, dead{room, *cm})
				}
			}
		}
		d.mu.Unlock()
		for _, x := range ds {
			d.bury(ctx, n, x.room, x.cm)
		}
	}
}

// bury deletes a dead process's member record and, when this process's
// claim of it wins (Update at the revision read: State's Delete of a key
// already gone succeeds, so it cannot decide), sends its leave.
func (d *Documents) bury(ctx context.Context, node, room string, cm cachedMember) {
	key := memberKey(room, cm.rec.Conn)
	rev, announce := cm.rev, !cm.rec.Buried
	if announce {
		claim := cm.rec
		claim.Buried = true
		v, err := json.Marshal(claim)
		if err != nil {
			return
		}
		rev, err = d.state.Update(ctx, key, v, cm.rev)
		if errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) {
			return // written again (the connection came back), or claimed by another node
		}
		if err != nil {
			d.log.Warn("state: record of a dead node not claimed; will retry", "key", key, "error", err)
			d.mu.Lock()
			d.suspects[node] = true
			d.mu.Unlock()
			return
		}
	}
	deleted := true
	if err := d.state.Delete(ctx, key, rev); err != nil && !errors.Is(err, sdk.ErrConflict) {
		// The record stays, claimed: whoever meets it next deletes it
		// without a second leave.
		d.log.Warn("state: record of a dead node not deleted; will retry", "key", key, "error", err)
		deleted = false
	}
	now := d.now()
	sc := seg(cm.rec.Conn)
	d.mu.Lock()
	if cur := d.records[room][sc]; cur != nil && cur.rec.Node == node {
		d.applyMember(room, sc, nil, 0, now)
		if deleted {
			d.memberTomb[key] = struct{}{}
		} else {
			d.suspects[node] = true
		}
	}
	var ns []sdk.Notification
	if r := d.rooms[room]; r != nil && announce {
		ns = d.userNotifications(r, "out", request{protocol: protoWS, timestamp: now.UnixMilli(), volatile: cm.rec.Volatile})
	}
	d.mu.Unlock()
	d.emit(ctx, ns)
}

// sweep drops the channels that stayed empty, cluster-wide, for the resume
// window, and rooms left without channels.
func (d *Documents) sweep(ctx context.Context) {
	now := d.now()
	cands := map[string][]string{}
	d.mu.RLock()
	if d.closed {
		d.mu.RUnlock()
		return
	}
	for id, r := range d.rooms {
		for name, ch := range r.channels {
			if ch.empty() && now.Sub(ch.emptySince) >= d.cfg.ResumeWindow {
				cands[id] = append(cands[id], name)
			}
		}
	}
	d.mu.RUnlock()
	for id, names := range cands {
		if err := d.sweepRoom(ctx, id, names); err != nil {
			d.log.Warn("state: empty room channels not dropped; will retry", "room", id, "error", err)
		}
	}
}

// sweepRoom drops names from room id if no member record names them (the
// protocol at the top of this file).
func (d *Documents) sweepRoom(ctx context.Context, id string, names []string) error {
	rec, rev, err := d.getRoom(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		d.mu.Lock()
		d.unapplyRoom(id, d.now())
		d.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	marked := 0
	for i := range rec.Channels {
		if slices.Contains(names, rec.Channels[i].Name) {
			rec.Channels[i].Dropping = true
			marked++
		}
	}
	if marked == 0 {
		return nil
	}
	rev, err = d.putRoom(ctx, rec, rev, false)
	if errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) {
		return nil // someone else is at it; the next tick sees
	}
	if err != nil {
		return err
	}
	d.applyRoomLocal(rec, rev)
	if f := d.afterMark.Load(); f != nil {
		(*f)()
	}
	es, err := d.state.List(ctx, membersPrefix(id))
	if err != nil {
		return err
	}
	named := map[string]bool{}
	for _, e := range es {
		var m memberRecord
		if json.Unmarshal(e.Value, &m) != nil {
			continue
		}
		for _, ch := range m.Channels {
			named[ch] = true
		}
	}
	kept := rec.Channels[:0:0]
	for _, c := range rec.Channels {
		if c.Dropping && named[c.Name] {
			c.Dropping = false
		}
		if !c.Dropping {
			kept = append(kept, c)
		}
	}
	now := d.now()
	if len(kept) == 0 {
		err := d.state.Delete(ctx, roomKey(id), rev)
		if errors.Is(err, sdk.ErrConflict) {
			return nil
		}
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.unapplyRoom(id, now)
		d.roomTomb[id] = struct{}{}
		d.mu.Unlock()
		return nil
	}
	rec.Channels = kept
	rev, err = d.putRoom(ctx, rec, rev, false)
	if errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	d.applyRoomLocal(rec, rev)
	return nil
}
