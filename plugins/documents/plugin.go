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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/plugins/documents/filter"
	"github.com/heraldhq/herald/sdk"
)

const (
	version     = "1.1.0"
	prefix      = "documents"
	chanPrefix  = prefix + ":"
	emitTimeout = 10 * time.Second

	defaultResumeWindow = 30 * time.Second
	defaultMaxRooms     = 100_000
	defaultLivenessTTL  = 15 * time.Second
	// lockShards serialize this process's writes of one document (a hash
	// of its index/collection/_id picks the lock), so that on one node a
	// write sees the document as the previous write left it; between nodes
	// the writes' revisions do it (store.go).
	lockShards = 256
	// flushParallel bounds the member records written at once.
	flushParallel = 16
)

// config is the plugin's `config` block.
type config struct {
	// DataDir is where versions before sdk.State kept documents.db;
	// optional. When set and the file is there, the plugin refuses to
	// start rather than serve an empty store next to the old data.
	DataDir string `mapstructure:"data_dir"`
	// ResumeWindow keeps a channel whose last subscriber (on any node)
	// left, and its room and filter, for this long, still receiving its
	// notifications, so that a client that reconnects within it resumes
	// with since and misses nothing. "0s" drops it at once.
	ResumeWindow time.Duration `mapstructure:"resume_window"`
	// MaxRooms bounds the rooms (distinct index, collection and filter)
	// alive at once; a subscribe that would create one more is -32005.
	MaxRooms int `mapstructure:"max_rooms"`
	// LivenessTTL is how long this process's liveness key lives without
	// being refreshed (every third of it): when a process dies, the others
	// take its connections out of the rooms this long after.
	LivenessTTL time.Duration `mapstructure:"liveness_ttl"`
}

// Validate reports every bad key, each at its key. It also looks for an
// earlier version's documents.db in data_dir (in a dry run too: herald
// validate must refuse what serve would).
func (c *config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &sdk.ConfigError{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	if c.ResumeWindow < 0 || c.ResumeWindow > 24*time.Hour {
		bad("resume_window", "must be between 0s and 24h, got %v", c.ResumeWindow)
	}
	if c.MaxRooms < 1 {
		bad("max_rooms", "must be at least 1, got %d", c.MaxRooms)
	}
	if c.LivenessTTL < 3*time.Second || c.LivenessTTL > time.Hour {
		bad("liveness_ttl", "must be between 3s and 1h, got %v", c.LivenessTTL)
	}
	if c.DataDir != "" {
		old := filepath.Join(c.DataDir, "documents.db")
		if _, err := os.Stat(old); err == nil {
			bad("data_dir", "%s holds the documents and rooms of an earlier documents plugin, which this version does not read (it keeps them in Herald's plugin state): move the file away to start with an empty store", old)
		}
	}
	return errors.Join(errs...)
}

// collection is one index/collection: its filter engine and its rooms.
type collection struct {
	index, name string
	engine      *filter.Engine
	rooms       map[string]*room // by filter ID
}

// room is one filter on one collection, as State has it (rooms.go); its
// channels are its (scope, state, users) configurations.
type room struct {
	id         string
	coll       *collection
	filterID   string
	filter     json.RawMessage // as first given, to register it again after a restart
	generation uint64
	rev        uint64 // of the record this is
	channels   map[string]*channel
	members    map[string]*member // this process's connections: Kuzzle counts connections per room
	remote     int                // the other nodes' connections in the room (member records)
}

// count is the room's connections on every node.
func (r *room) count() int { return len(r.members) + r.remote }

type channel struct {
	name                string
	room                *room
	scope, state, users string
	subs                map[string]struct{} // this process's connections subscribed
	remote              int                 // the other nodes' connections on it
	dropping            bool
	emptySince          time.Time // when it last became empty on every node, as this process saw it
}

func (ch *channel) empty() bool { return len(ch.subs) == 0 && ch.remote == 0 }

type member struct {
	channels map[string]struct{}
	volatile json.RawMessage // given when it joined: its leave notification carries it
}

// Documents is the plugin.
type Documents struct {
	cfg   config
	state sdk.State
	store Store
	host  sdk.Host
	log   hclog.Logger
	now   func() time.Time
	// stateOf is sdk.StateOf; tests give a fake State through it.
	stateOf func(sdk.Host) (sdk.State, error)
	// node names this process in State (node/<node>, member records).
	node    string
	started time.Time

	locks [lockShards]sync.Mutex
	// memberLocks order this process's writes of one member record.
	memberLocks [lockShards]sync.Mutex

	mu       sync.RWMutex
	colls    map[string]*collection         // by "<index>\x00<collection>"
	rooms    map[string]*room               // by room ID
	channels map[string]*channel            // by channel name
	conns    map[string]map[string]struct{} // connection -> its room channels
	// Unsubscribed events of the plugin's own unsubscribes arrive after it
	// applied them (and a new subscribe may have come meanwhile): this
	// counts, per connection and channel, the events to skip.
	expectUnsub map[string]map[string]int
	// creating counts the rooms this process is creating in State and
	// has not yet put in rooms: max_rooms counts them too, so that
	// subscribes arriving together cannot all pass the check.
	creating int

	// What State says beyond the rooms (rooms.go).
	records    map[string]map[string]*cachedMember // room -> connection's key segment -> record
	nodes      map[string]bool                     // live processes
	suspects   map[string]bool                     // processes seen in records whose liveness is to be checked
	dirty      map[memberRef]struct{}              // member records to write as memory has them
	roomTomb   map[string]struct{}                 // rooms this process deleted, until the Watch says so
	memberTomb map[string]struct{}                 // member keys this process deleted, until the Watch says so
	orphans    []orphan                            // subscriptions to unsubscribe (channel dropped under them)
	verify     map[string]struct{}                 // rooms to read fresh (loadRooms)
	audit      bool                                // a Reset came: check this process's records once its replay is over
	lastReplay time.Time

	// afterMark, in tests, runs between a sweep's mark and its listing;
	// atomic, as a test sets it while the janitor may be sweeping.
	afterMark atomic.Pointer[func()]

	// maint runs one pass of upkeep (member records, burials, sweeps) at a
	// time: the janitor's, or a leave's with resume_window 0s.
	maint  sync.Mutex
	kick   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

var (
	_ sdk.Configurer   = (*Documents)(nil)
	_ sdk.Authorizer   = (*Documents)(nil)
	_ sdk.EventHandler = (*Documents)(nil)
	_ sdk.Drainer      = (*Documents)(nil)
)

// New returns an unconfigured plugin.
func New() *Documents { return &Documents{now: time.Now, stateOf: sdk.StateOf} }

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

// Configure takes the plugin's State, announces this process in it, loads
// the rooms and the member records and keeps them fresh (Watch).
func (d *Documents) Configure(ctx context.Context, h sdk.Host, raw sdk.Config) error {
	cfg := config{ResumeWindow: defaultResumeWindow, MaxRooms: defaultMaxRooms, LivenessTTL: defaultLivenessTTL}
	if err := raw.Decode(&cfg); err != nil {
		return sdk.InvalidParams(err.Error(), nil)
	}
	if raw.DryRun() {
		return nil // herald validate: the config is checked; touch nothing
	}
	st, err := d.stateOf(h)
	if err != nil {
		return fmt.Errorf("documents: %w", err)
	}
	d.cfg, d.state, d.store, d.host, d.log = cfg, st, stateStore{st, h.Logger()}, h, h.Logger()
	d.node, d.started = newNodeID(), d.now()
	d.colls, d.rooms, d.channels = map[string]*collection{}, map[string]*room{}, map[string]*channel{}
	d.conns, d.expectUnsub = map[string]map[string]struct{}{}, map[string]map[string]int{}
	d.records, d.nodes, d.suspects = map[string]map[string]*cachedMember{}, map[string]bool{}, map[string]bool{}
	d.dirty, d.roomTomb, d.memberTomb = map[memberRef]struct{}{}, map[string]struct{}{}, map[string]struct{}{}
	d.verify = map[string]struct{}{}
	d.kick = make(chan struct{}, 1)
	if err := d.beat(ctx); err != nil {
		return fmt.Errorf("documents: announce this process in state: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	readyNodes, readyRooms, readyMembers := make(chan struct{}), make(chan struct{}), make(chan struct{})
	d.wg.Add(3)
	go d.watch(wctx, nodePrefix, d.loadNodes, d.applyNodeChange, readyNodes)
	go d.watch(wctx, roomPrefix, d.loadRooms, d.applyRoomChange, readyRooms)
	go d.watch(wctx, memberPrefix, d.loadMembers, d.applyMemberChange, readyMembers)
	// Probe keys show each watch that it is in place (watch); written again
	// until it has loaded, since a write made before the watch was in
	// place is not seen by it.
	probes := map[string]chan struct{}{nodePrefix: readyNodes, roomPrefix: readyRooms, memberPrefix: readyMembers}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(probes) > 0 {
		for prefix, ready := range probes {
			select {
			case <-ready:
				delete(probes, prefix)
				if err := d.state.Delete(ctx, d.probeKey(prefix), 0); err != nil {
					d.log.Warn("state: probe key not deleted (it expires)", "key", d.probeKey(prefix), "error", err)
				}
				continue
			default:
			}
			if _, err := d.state.Put(ctx, d.probeKey(prefix), []byte("{}"), sdk.WithTTL(time.Minute)); err != nil {
				cancel()
				d.wg.Wait()
				return fmt.Errorf("documents: load rooms from state: %w", err)
			}
		}
		if len(probes) == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			cancel()
			d.wg.Wait()
			return fmt.Errorf("documents: load rooms from state: %w", ctx.Err())
		}
	}
	d.wg.Add(1)
	go d.janitor(wctx)
	d.mu.RLock()
	rooms := len(d.rooms)
	d.mu.RUnlock()
	d.log.Info("documents rooms loaded", "node", d.node, "rooms", rooms,
		"resume_window", cfg.ResumeWindow.String(), "max_rooms", cfg.MaxRooms, "liveness_ttl", cfg.LivenessTTL.String())
	return nil
}

func newNodeID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// collection returns (creating it) the collection; d.mu held for writing.
func (d *Documents) collection(index, name string) *collection {
	k := index + "\x00" + name
	c := d.colls[k]
	if c == nil {
		c = &collection{index: index, name: name, engine: filter.New(filter.Options{}), rooms: map[string]*room{}}
		d.colls[k] = c
	}
	return c
}

// Drain writes the member records still queued, stops the watches and the
// janitor, and waits for the writes in flight. What this process wrote
// stays: its successor (a reload, or a restart after a crash) is replayed
// the same connections and takes their records over; otherwise they go
// when this process's liveness key expires.
func (d *Documents) Drain(ctx context.Context) error {
	d.mu.Lock()
	if d.closed || d.state == nil {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	d.flushDirty(ctx)
	for i := range d.locks {
		d.locks[i].Lock()
	}
	return nil
}

func (d *Documents) memberLock(roomID, conn string) func() {
	var h maphash.Hash
	h.SetSeed(lockSeed)
	h.WriteString(roomID)
	h.WriteByte(0)
	h.WriteString(conn)
	l := &d.memberLocks[h.Sum64()%lockShards]
	l.Lock()
	return l.Unlock
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
		d.takeMember(r, conn, m)
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
	if ch.empty() {
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
	d.dropMember(r, conn)
	return m
}

// HandleEvent follows subscriptions to room channels: a connection that
// leaves a room (unsubscribe, disconnect) is announced to the room's
// channels that ask for users; a replay after a restart rebuilds the
// subscribers silently (and their member records). Live Subscribed events
// are the plugin's own subscribes, which it recorded already: they are
// skipped (one arriving after a quick unsubscribe must not bring the
// subscriber back).
func (d *Documents) HandleEvent(ctx context.Context, _ sdk.Host, ev sdk.Event) {
	switch ev.Kind {
	case sdk.Reset:
		// The member records stay: the replay that follows writes them
		// again, and auditOwn deletes those of connections it did not
		// bring back.
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
		d.audit, d.lastReplay = true, now
		d.mu.Unlock()
	case sdk.Subscribed:
		if !ev.Replay || !strings.HasPrefix(ev.Channel, chanPrefix) {
			return
		}
		d.mu.Lock()
		d.lastReplay = d.now()
		ch := d.channels[ev.Channel]
		if ch != nil {
			vol := ev.Volatile
			if cm := d.records[ch.room.id][seg(ev.ConnID)]; cm != nil && cm.rec.Volatile != nil {
				vol = cm.rec.Volatile // the subscriber's own, kept in its record
			}
			d.addSub(ev.ConnID, ch, vol)
			d.markDirty(ch.room.id, ev.ConnID)
			d.kickJanitor()
		}
		d.mu.Unlock()
		if ch == nil {
			// A channel of a room this plugin no longer has (it was dropped):
			// nothing will ever be sent there; let the client's
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
		var ns []sdk.Notification
		if ch != nil {
			left = d.removeSub(ev.ConnID, ch, now)
			d.markDirty(ch.room.id, ev.ConnID)
		}
		if left != nil {
			ns = d.userNotifications(ch.room, "out", request{protocol: protoWS, timestamp: now.UnixMilli(), volatile: left.volatile})
		}
		d.mu.Unlock()
		d.emit(ctx, ns)
		d.afterLeave(ctx)
	}
}

// afterLeave writes the member records of a leave: at once, and the sweep
// with it, when channels go as soon as they are empty (resume_window 0s);
// else soon, by the janitor.
func (d *Documents) afterLeave(ctx context.Context) {
	if d.cfg.ResumeWindow == 0 {
		// After the janitor's pass, if one is running: it may hold this
		// leave's record, or be sweeping the room.
		d.maint.Lock()
		defer d.maint.Unlock()
		d.flushDirty(ctx)
		d.sweep(ctx)
		return
	}
	d.kickJanitor()
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
