package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/plugins/documents/filter"
	"github.com/heraldhq/herald/sdk"
)

const (
	version     = "1.0.0"
	prefix      = "documents"
	chanPrefix  = prefix + ":"
	emitTimeout = 10 * time.Second

	defaultResumeWindow = 30 * time.Second
	defaultMaxRooms     = 100_000
	// lockShards serialize writes of one document (a hash of its
	// index/collection/_id picks the lock), so that a write sees the
	// document as the previous write left it, while writes of different
	// documents run and commit together.
	lockShards = 256
)

// config is the plugin's `config` block.
type config struct {
	// DataDir holds documents.db (documents and rooms); required.
	DataDir string `mapstructure:"data_dir"`
	// ResumeWindow keeps a channel whose last subscriber left (and its room
	// and filter) for this long, still receiving its notifications, so that
	// a client that reconnects within it resumes with since and misses
	// nothing. "0s" drops it at once.
	ResumeWindow time.Duration `mapstructure:"resume_window"`
	// MaxRooms bounds the rooms (distinct index, collection and filter)
	// alive at once; a subscribe that would create one more is -32005.
	MaxRooms int `mapstructure:"max_rooms"`
}

func (c *config) Validate() error {
	if strings.TrimSpace(c.DataDir) == "" {
		return errors.New("data_dir is required (the directory that keeps documents.db)")
	}
	if c.ResumeWindow < 0 || c.ResumeWindow > 24*time.Hour {
		return fmt.Errorf("resume_window must be between 0s and 24h, got %v", c.ResumeWindow)
	}
	if c.MaxRooms < 1 {
		return fmt.Errorf("max_rooms must be at least 1, got %d", c.MaxRooms)
	}
	return nil
}

// collection is one index/collection: its filter engine and its rooms.
type collection struct {
	index, name string
	engine      *filter.Engine
	rooms       map[string]*room // by filter ID
}

// room is one filter on one collection; its channels are its (scope,
// state, users) configurations.
type room struct {
	id         string
	coll       *collection
	filterID   string
	filter     json.RawMessage // as first given, to register it again after a restart
	generation uint64
	channels   map[string]*channel
	members    map[string]*member // by connection: Kuzzle counts connections per room
}

type channel struct {
	name                string
	room                *room
	scope, state, users string
	subs                map[string]struct{} // connections subscribed
	emptySince          time.Time
}

type member struct {
	channels map[string]struct{}
	volatile json.RawMessage // given when it joined: its leave notification carries it
}

// Documents is the plugin.
type Documents struct {
	cfg   config
	store Store
	host  sdk.Host
	log   hclog.Logger
	now   func() time.Time

	locks [lockShards]sync.Mutex
	// roomLocks order the stored writes of one room (saveRoom).
	roomLocks [64]sync.Mutex

	mu       sync.RWMutex
	colls    map[string]*collection         // by "<index>\x00<collection>"
	rooms    map[string]*room               // by room ID
	channels map[string]*channel            // by channel name
	conns    map[string]map[string]struct{} // connection -> its room channels
	// Unsubscribed events of the plugin's own unsubscribes arrive after it
	// applied them (and a new subscribe may have come meanwhile): this
	// counts, per connection and channel, the events to skip.
	expectUnsub map[string]map[string]int

	stop   chan struct{}
	done   chan struct{}
	closed bool
}

var (
	_ sdk.Configurer   = (*Documents)(nil)
	_ sdk.Authorizer   = (*Documents)(nil)
	_ sdk.EventHandler = (*Documents)(nil)
	_ sdk.Drainer      = (*Documents)(nil)
)

// New returns an unconfigured plugin.
func New() *Documents { return &Documents{now: time.Now} }

func (d *Documents) Manifest() sdk.Manifest {
	m := sdk.Manifest{Name: prefix, Version: version, Prefixes: []string{prefix}}
	for name, h := range map[string]func(context.Context, *sdk.Call) (any, error){
		"create": d.create, "createOrReplace": d.createOrReplace, "replace": d.replace,
		"update": d.update, "delete": d.delete, "get": d.get, "count": d.count,
		"subscribe": d.subscribe, "join": d.join, "unsubscribe": d.unsubscribe,
		"publish": d.publish, "list": d.list, "validate": d.validate,
	} {
		m.Methods = append(m.Methods, sdk.Method{Name: name, Handler: h})
	}
	return m
}

// Configure opens the store and registers the stored rooms again.
func (d *Documents) Configure(_ context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := config{ResumeWindow: defaultResumeWindow, MaxRooms: defaultMaxRooms}
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; open nothing
	}
	st, err := openStore(cfg.DataDir)
	if err != nil {
		return err
	}
	d.cfg, d.store, d.host, d.log = cfg, st, h, h.Logger()
	d.colls, d.rooms, d.channels = map[string]*collection{}, map[string]*room{}, map[string]*channel{}
	d.conns, d.expectUnsub = map[string]map[string]struct{}{}, map[string]map[string]int{}
	recs, err := st.Rooms()
	if err != nil {
		_ = st.Close()
		return err
	}
	now := d.now()
	for _, rec := range recs {
		if err := d.restoreRoom(rec, now); err != nil {
			d.log.Warn("stored room dropped", "room", rec.ID, "error", err)
			_ = st.DeleteRoom(rec.ID)
		}
	}
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	go d.janitor()
	d.log.Info("documents store loaded", "dir", cfg.DataDir, "rooms", len(d.rooms),
		"resume_window", cfg.ResumeWindow.String(), "max_rooms", cfg.MaxRooms)
	return nil
}

func (d *Documents) restoreRoom(rec *RoomRecord, now time.Time) error {
	c := d.collection(rec.Index, rec.Collection)
	fid, err := c.engine.Register(rec.Filter)
	if err != nil {
		return err
	}
	r := &room{id: rec.ID, coll: c, filterID: fid, filter: rec.Filter, generation: rec.Generation,
		channels: map[string]*channel{}, members: map[string]*member{}}
	c.rooms[fid] = r
	d.rooms[r.id] = r
	for _, cr := range rec.Channels {
		ch := &channel{name: cr.Name, room: r, scope: cr.Scope, state: cr.State, users: cr.Users,
			subs: map[string]struct{}{}, emptySince: now}
		r.channels[ch.name] = ch
		d.channels[ch.name] = ch
	}
	return nil
}

// collection returns (creating it) the collection; d.mu held for writing
// or Configure.
func (d *Documents) collection(index, name string) *collection {
	k := index + "\x00" + name
	c := d.colls[k]
	if c == nil {
		c = &collection{index: index, name: name, engine: filter.New(filter.Options{}), rooms: map[string]*room{}}
		d.colls[k] = c
	}
	return c
}

// Drain stops the janitor and closes the store.
func (d *Documents) Drain(context.Context) error {
	d.mu.Lock()
	if d.closed || d.store == nil {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	close(d.stop)
	<-d.done
	// Writes in flight hold a document lock: take them all so that the
	// store closes after the last one.
	for i := range d.locks {
		d.locks[i].Lock()
	}
	return d.store.Close()
}

// Authorize refuses direct subscribes: room channels are joined through
// documents.subscribe and documents.join, which create them.
func (d *Documents) Authorize(_ context.Context, _ sdk.Caller, channels []string) ([]sdk.Refusal, error) {
	out := make([]sdk.Refusal, 0, len(channels))
	for _, ch := range channels {
		out = append(out, sdk.Refuse(ch, "documents channels are joined with documents.subscribe or documents.join (pass since to resume one)"))
	}
	return out, nil
}

// roomID is Kuzzle-like: a hash of the collection and the normalized filter,
// so that equal filters, however written, share it.
func roomID(index, collection, filterID string) string {
	h := sha256.Sum256([]byte(index + "\x00" + collection + "\x00" + filterID))
	return hex.EncodeToString(h[:8])
}

// channelName identifies (room, scope, state, users) in one life of the room.
func channelName(roomID string, generation uint64, scope, state, users string) string {
	h := sha256.New()
	_ = binary.Write(h, binary.BigEndian, generation)
	h.Write([]byte(roomID + "\x00" + scope + "\x00" + state + "\x00" + users))
	return chanPrefix + roomID + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

func newGeneration() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

func (r *room) record() *RoomRecord {
	rec := &RoomRecord{ID: r.id, Index: r.coll.index, Collection: r.coll.name, Filter: r.filter, Generation: r.generation}
	for _, ch := range r.channels {
		rec.Channels = append(rec.Channels, ChannelRecord{Name: ch.name, Scope: ch.scope, State: ch.state, Users: ch.users})
	}
	return rec
}

func subKey(conn, ch string) string { return conn + "\x00" + ch }

// addSub records conn on ch; d.mu held. joined says conn is new to the room.
func (d *Documents) addSub(conn string, ch *channel, volatile json.RawMessage) (joined bool) {
	if _, ok := ch.subs[conn]; ok {
		return false
	}
	ch.subs[conn] = struct{}{}
	r := ch.room
	m := r.members[conn]
	if m == nil {
		m = &member{channels: map[string]struct{}{}, volatile: volatile}
		r.members[conn] = m
		joined = true
	}
	m.channels[ch.name] = struct{}{}
	cs := d.conns[conn]
	if cs == nil {
		cs = map[string]struct{}{}
		d.conns[conn] = cs
	}
	cs[ch.name] = struct{}{}
	return joined
}

// removeSub forgets conn on ch; d.mu held. left is conn's membership when
// that was its last channel of the room.
func (d *Documents) removeSub(conn string, ch *channel, now time.Time) (left *member) {
	if _, ok := ch.subs[conn]; !ok {
		return nil
	}
	delete(ch.subs, conn)
	if len(ch.subs) == 0 {
		ch.emptySince = now
	}
	if cs := d.conns[conn]; cs != nil {
		delete(cs, ch.name)
		if len(cs) == 0 {
			delete(d.conns, conn)
		}
	}
	r := ch.room
	m := r.members[conn]
	if m == nil {
		return nil
	}
	delete(m.channels, ch.name)
	if len(m.channels) > 0 {
		return nil
	}
	delete(r.members, conn)
	return m
}

// janitor drops channels that stayed empty for the resume window, and
// rooms without channels, until Drain.
func (d *Documents) janitor() {
	defer close(d.done)
	tick := max(d.cfg.ResumeWindow/4, 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
			d.sweep()
		}
	}
}

// sweep drops what stayed empty for the resume window.
func (d *Documents) sweep() {
	now := d.now()
	var changed []string // rooms to store again, or to delete
	d.mu.Lock()
	for _, r := range d.rooms {
		dropped := false
		for name, ch := range r.channels {
			if len(ch.subs) == 0 && now.Sub(ch.emptySince) >= d.cfg.ResumeWindow {
				delete(r.channels, name)
				delete(d.channels, name)
				dropped = true
			}
		}
		if len(r.channels) == 0 {
			delete(d.rooms, r.id)
			delete(r.coll.rooms, r.filterID)
			r.coll.engine.Remove(r.filterID)
			if len(r.coll.rooms) == 0 {
				delete(d.colls, r.coll.index+"\x00"+r.coll.name)
			}
		}
		if dropped || len(r.channels) == 0 {
			changed = append(changed, r.id)
		}
	}
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return
	}
	for _, id := range changed {
		if err := d.saveRoom(id); err != nil {
			d.log.Warn("store room", "room", id, "error", err)
		}
	}
}

// saveRoom writes a room as it is now (or deletes it, gone): writes of one
// room are serialized and each reads the state when it runs, so the last
// one on disk is the latest state whatever order concurrent changes took.
func (d *Documents) saveRoom(id string) error {
	var h maphash.Hash
	h.SetSeed(lockSeed)
	h.WriteString(id)
	l := &d.roomLocks[h.Sum64()%uint64(len(d.roomLocks))]
	l.Lock()
	defer l.Unlock()
	d.mu.RLock()
	var rec *RoomRecord
	if r := d.rooms[id]; r != nil {
		rec = r.record()
	}
	d.mu.RUnlock()
	if rec == nil {
		return d.store.DeleteRoom(id)
	}
	return d.store.PutRoom(rec)
}

// HandleEvent follows subscriptions to room channels: a connection that
// leaves a room (unsubscribe, disconnect) is announced to the room's
// channels that ask for users; a replay after a restart rebuilds the
// subscribers silently. Live Subscribed events are the plugin's own
// subscribes, which it recorded already: they are skipped (one arriving
// after a quick unsubscribe must not bring the subscriber back).
func (d *Documents) HandleEvent(ctx context.Context, _ sdk.Host, ev sdk.Event) {
	switch ev.Kind {
	case sdk.Reset:
		d.mu.Lock()
		now := d.now()
		for conn, cs := range d.conns {
			for name := range cs {
				if ch := d.channels[name]; ch != nil {
					d.removeSub(conn, ch, now)
				}
			}
		}
		clear(d.conns)
		clear(d.expectUnsub)
		d.mu.Unlock()
	case sdk.Subscribed:
		if !ev.Replay || !strings.HasPrefix(ev.Channel, chanPrefix) {
			return
		}
		d.mu.Lock()
		ch := d.channels[ev.Channel]
		if ch != nil {
			d.addSub(ev.ConnID, ch, ev.Volatile)
		}
		d.mu.Unlock()
		if ch == nil {
			// A channel of a room this plugin no longer has (its record was
			// lost): nothing will ever be sent there; let the client's
			// subscription go rather than linger.
			if err := d.host.Unsubscribe(ctx, ev.ConnID, ev.Channel); err != nil {
				d.log.Warn("unsubscribe from an unknown room channel", "conn", ev.ConnID, "channel", ev.Channel, "error", err)
			}
		}
	case sdk.Disconnected:
		d.mu.Lock()
		delete(d.expectUnsub, ev.ConnID)
		d.mu.Unlock()
	case sdk.Unsubscribed:
		if !strings.HasPrefix(ev.Channel, chanPrefix) {
			return
		}
		d.mu.Lock()
		if ex := d.expectUnsub[ev.ConnID]; ex[ev.Channel] > 0 {
			if ex[ev.Channel]--; ex[ev.Channel] == 0 {
				delete(ex, ev.Channel)
				if len(ex) == 0 {
					delete(d.expectUnsub, ev.ConnID)
				}
			}
			d.mu.Unlock()
			return
		}
		now := d.now()
		ch := d.channels[ev.Channel]
		var left *member
		if ch != nil {
			left = d.removeSub(ev.ConnID, ch, now)
		}
		var ns []sdk.Notification
		if left != nil {
			ns = d.userNotifications(ch.room, "out", request{protocol: protoWS, timestamp: now.UnixMilli(), volatile: left.volatile})
		}
		d.mu.Unlock()
		d.emit(ctx, ns)
		if d.cfg.ResumeWindow == 0 {
			d.sweep()
		}
	}
}

// emit publishes ns, logging a failure (there is no caller to tell).
func (d *Documents) emit(ctx context.Context, ns []sdk.Notification) {
	if len(ns) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), emitTimeout)
	defer cancel()
	if _, err := d.host.Emit(ctx, ns...); err != nil {
		d.log.Warn("emit failed", "notifications", len(ns), "error", err)
	}
}
