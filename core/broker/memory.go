package broker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// ulidText stands for any id in EncodedLen, which counts only its length.
const ulidText = "00000000000000000000000000"

// MemoryOptions bound the memory broker.
type MemoryOptions struct {
	HistorySize int           // publications kept per channel (0: none)
	HistoryTTL  time.Duration // how long a publication is kept (0: no limit)
	// MaxBytes bounds the history of all channels together (0: no bound).
	// Over it, the least recently published channels lose their history
	// first, and their epoch changes.
	MaxBytes int64
	// Now is the clock; tests may replace it. Defaults to time.Now.
	Now func() time.Time
}

const (
	memoryShards = 64
	// epochBuckets spreads channel names over counters that say how often
	// a channel of that bucket lost its stream (see memoryShard.gens).
	epochBuckets = 1 << 14
	// entryOverhead is what a kept publication costs beyond its encoded
	// bytes: the Publication (96 bytes with its accept time) and its ring
	// slot (32), with room to spare (its id and channel strings, which
	// were allocations of their own, are now read from its bytes; the
	// figure is kept so that history.max_bytes bounds what it did).
	entryOverhead = 160
	// channelOverhead is what a channel's own state costs beyond its name:
	// the memoryChannel (128 bytes with its allocation class) and its map
	// entry in the shard, with room to spare. It counts in the bytes that
	// MaxBytes bounds, so that publishing to ever new channels (a plugin
	// emitting to distinct channels of its namespace) is bounded too.
	channelOverhead = 192
	// evictTo is the share of MaxBytes that an eviction brings the history
	// down to, so that evictions (a scan of every channel) stay rare.
	evictToPercent = 90
)

// Memory is a single-process Broker. Its history does not survive a restart:
// every channel gets a new epoch, so resuming clients learn they must reload.
//
// A channel costs memory only once it has had a publication: Position and
// History of a channel that has none answer from the name alone. A channel's
// epoch is the broker's random base plus its bucket's generation, which
// grows whenever a channel of the bucket loses its stream (forgotten by
// Sweep, or its history dropped for MaxBytes). So a channel that is created
// again after being forgotten never reuses an epoch whose seqs meant other
// publications, and a channel that never had one keeps its epoch without
// any state.
type Memory struct {
	opts MemoryOptions
	seed maphash.Seed
	base string
	// start is when the broker was made: history entries keep their time
	// as the duration since (monotonic where the clock is), which is
	// smaller than a time.Time and holds no pointer.
	start   time.Time
	ids     *ids
	shards  [memoryShards]memoryShard
	handler Handler
	// keep reports channels that must not be forgotten (they have
	// subscribers, whose positions go on); see SetKeep.
	keep func(channel string) bool

	bytes        atomic.Int64 // history bytes kept, all channels
	channels     atomic.Int64
	evictMu      sync.Mutex // one eviction at a time
	evicted      atomic.Int64
	evictedBytes atomic.Int64

	// afterLookup, when set (tests only), runs in Publish between finding
	// a channel and locking it: the window a concurrent Sweep may use.
	afterLookup func()
}

type memoryShard struct {
	mu       sync.Mutex
	channels map[string]*memoryChannel
	// gens are the generations of this shard's epoch buckets.
	gens [epochBuckets / memoryShards]uint32
}

type memoryChannel struct {
	mu    sync.Mutex
	seq   uint64
	epoch string
	// gone is set, under mu, when the channel is removed from its shard:
	// whoever locked it meanwhile must look the name up again rather than
	// publish into a stream that no longer exists.
	gone bool
	// ring holds the last HistorySize publications: entry i (0 the oldest)
	// is at (head+i) % len(ring), n are kept. It grows only when full, and
	// is released when empty.
	ring   []historyEntry
	head   int
	n      int
	bytes  int64 // cost of the kept entries
	lastAt time.Time
}

// historyEntry is a kept publication with what expiring and replacing it
// need, so that neither reads the publication itself: the oldest entry's
// publication is rarely still in the processor's cache.
type historyEntry struct {
	pub  *Publication
	at   time.Duration // since Memory.start
	cost int64         // entryCost(pub)
}

// MemoryStats is what the memory broker holds, for metrics.
type MemoryStats struct {
	Channels       int64 // channels with state (had a publication, not yet forgotten)
	Bytes          int64 // history bytes kept (approximate: encoded notifications plus a fixed overhead each, and each channel's own state)
	MaxBytes       int64 // the bound on Bytes (0: none)
	EvictedStreams int64 // channels whose history was dropped for MaxBytes
	EvictedBytes   int64 // history bytes dropped for MaxBytes
}

// NewMemory returns a memory broker.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("broker: no randomness for an epoch: %v", err))
	}
	m := &Memory{opts: opts, seed: maphash.MakeSeed(), base: fmt.Sprintf("%08x", binary.BigEndian.Uint32(b[:])), start: opts.Now(), ids: newIDs()}
	for i := range m.shards {
		m.shards[i].channels = make(map[string]*memoryChannel)
	}
	return m
}

// since is now as a history entry's time.
func (m *Memory) since(now time.Time) time.Duration { return now.Sub(m.start) }

// SetHandler implements Broker.
func (m *Memory) SetHandler(h Handler) { m.handler = h }

// SetKeep names the channels that an eviction for MaxBytes must not forget
// (it drops their history only): those with subscribers, whose positions
// go on. Other evicted channels are forgotten whole, as Sweep forgets them,
// so that the channels' own state is bounded with their history. Call it
// before the first publish; keep is called with the channel locked.
func (m *Memory) SetKeep(keep func(channel string) bool) { m.keep = keep }

// channelCost is what a channel's state counts against MaxBytes.
func channelCost(name string) int64 { return channelOverhead + int64(len(name)) }

// Close implements Broker.
func (m *Memory) Close() error { return nil }

// Stats reports what the broker holds.
func (m *Memory) Stats() MemoryStats {
	return MemoryStats{Channels: m.channels.Load(), Bytes: m.bytes.Load(), MaxBytes: m.opts.MaxBytes,
		EvictedStreams: m.evicted.Load(), EvictedBytes: m.evictedBytes.Load()}
}

func (m *Memory) locate(name string) (*memoryShard, int) {
	h := maphash.String(m.seed, name)
	return &m.shards[h%memoryShards], int(h/memoryShards) % len(m.shards[0].gens)
}

func (m *Memory) epoch(gen uint32) string {
	if gen == 0 {
		return m.base
	}
	return m.base + "." + strconv.FormatUint(uint64(gen), 10)
}

// lookup returns the channel's state, locked, creating it if create is set;
// without create, a channel without state is nil and its epoch is returned.
func (m *Memory) lookup(name string, create bool) (*memoryChannel, string) {
	for {
		s, b := m.locate(name)
		s.mu.Lock()
		ch := s.channels[name]
		if ch == nil {
			if !create {
				e := m.epoch(s.gens[b])
				s.mu.Unlock()
				return nil, e
			}
			ch = &memoryChannel{epoch: m.epoch(s.gens[b]), lastAt: m.opts.Now()}
			// The key outlives the publish: a copy of its own, not a
			// part of whatever the caller's name is a part of (a
			// request's names, a publication's bytes).
			s.channels[strings.Clone(name)] = ch
			m.channels.Add(1)
			m.bytes.Add(channelCost(name))
		}
		s.mu.Unlock()
		if m.afterLookup != nil {
			m.afterLookup()
		}
		ch.mu.Lock()
		if !ch.gone {
			return ch, ch.epoch
		}
		ch.mu.Unlock()
	}
}

// Publish implements Broker. Publications of one channel are handed to the
// handler under that channel's lock, so fan-out order is seq order.
//
// It is all or nothing: the context is checked once, before the first
// notification is placed; from then on nothing can fail, so a publish is
// never cut half way.
func (m *Memory) Publish(ctx context.Context, ns []Notification) ([]*Publication, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
	}
	out := make([]*Publication, 0, len(ns))
	if len(ns) == 0 {
		return out, nil
	}
	// One clock read and one run of ids for the whole publish: the
	// notifications of one Publish share their timestamp (and an emit
	// batch, its accept time already), and the id's time is that
	// timestamp. A clock before 1970 (a test's) gives ids time 0.
	now := m.opts.Now()
	at := m.since(now)
	ms := now.UnixMilli()
	ids := m.ids.reserve(uint64(max(ms, 0)), len(ns))
	var grown int64
	for i := range ns {
		n := &ns[i]
		id := ids.next()
		ch, _ := m.lookup(n.Channel, true)
		ch.seq++
		seq := ch.seq
		// Sized exactly: the history's byte bound counts cap(Data).
		pub, buf := newPublication(EncodedLen(n, ulidText, seq, ms))
		data := appendEncodedULID(buf, n, id, seq, ms)
		accepted := n.Accepted
		if accepted.IsZero() {
			accepted = now
		}
		// The id and (when it needs no escaping) the channel name are
		// read from Data, which no one modifies: two strings a
		// publication that cost no allocation and no copy.
		*pub = Publication{Channel: inData(data, n.Channel), Seq: seq, ID: unsafe.String(&data[idAt], ulidLen),
			Data: data, More: i < len(ns)-1, Accepted: accepted}
		grown += ch.append(pub, now, at, m.opts.HistorySize)
		if m.handler != nil {
			m.handler.HandlePublication(pub)
		}
		ch.mu.Unlock()
		out = append(out, pub)
	}
	m.bytes.Add(grown)
	if m.opts.MaxBytes > 0 && m.bytes.Load() > m.opts.MaxBytes {
		m.evict()
	}
	return out, nil
}

// idAt is where a publication's id starts in its Data, and chanAt where
// its channel name does when it needed no escaping (appendEncodedULID's
// layout: {"id":"<26>","channel":"<name>",...).
const (
	idAt   = len(`{"id":"`)
	chanAt = idAt + ulidLen + len(`","channel":"`)
)

// inData returns the channel name as it is written in data, a
// notification appendEncodedULID wrote: a name that needed escaping is not
// there verbatim, and then name itself is returned.
func inData(data []byte, name string) string {
	end := chanAt + len(name)
	if name == "" || end >= len(data) || data[end] != '"' || string(data[chanAt:end]) != name {
		return name
	}
	return unsafe.String(&data[chanAt], len(name))
}

func entryCost(p *Publication) int64 { return int64(cap(p.Data)) + entryOverhead }

// append keeps p, published at now (at since Memory.start), and returns
// the change in the channel's history bytes.
func (c *memoryChannel) append(p *Publication, now time.Time, at time.Duration, size int) int64 {
	c.lastAt = now
	if size <= 0 {
		return 0
	}
	cost := entryCost(p)
	if c.n == size {
		// Full: the oldest makes room.
		delta := cost - c.ring[c.head].cost
		c.ring[c.head] = historyEntry{p, at, cost}
		c.head = (c.head + 1) % len(c.ring)
		c.bytes += delta
		return delta
	}
	if c.n == len(c.ring) {
		c.grow(size)
	}
	c.ring[(c.head+c.n)%len(c.ring)] = historyEntry{p, at, cost}
	c.n++
	c.bytes += cost
	return cost
}

// grow makes room for more entries in a full ring, oldest first from 0.
func (c *memoryChannel) grow(size int) {
	ring := make([]historyEntry, min(size, max(16, 2*len(c.ring))))
	for i := 0; i < c.n; i++ {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
}

// expire drops entries older than ttl from the front and returns the
// change in history bytes.
func (c *memoryChannel) expire(at, ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	var freed int64
	for c.n > 0 && at-c.ring[c.head].at > ttl {
		freed += c.ring[c.head].cost
		c.ring[c.head] = historyEntry{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
	}
	if c.n == 0 {
		c.ring, c.head = nil, 0
	}
	c.bytes -= freed
	return -freed
}

// drop forgets the channel's whole history and returns the bytes freed.
func (c *memoryChannel) drop() int64 {
	freed := c.bytes
	c.ring, c.head, c.n, c.bytes = nil, 0, 0, 0
	return freed
}

// History implements Broker.
func (m *Memory) History(ctx context.Context, channel string, since Position) ([]*Publication, Position, error) {
	ch, epoch := m.lookup(channel, false)
	if ch == nil {
		cur := Position{Epoch: epoch}
		if since != cur {
			return nil, cur, ErrUnrecoverable
		}
		return nil, cur, nil
	}
	defer ch.mu.Unlock()
	m.bytes.Add(ch.expire(m.since(m.opts.Now()), m.opts.HistoryTTL))
	cur := Position{Seq: ch.seq, Epoch: ch.epoch}
	if since.Epoch != ch.epoch || since.Seq > ch.seq {
		return nil, cur, ErrUnrecoverable
	}
	missed := ch.seq - since.Seq
	if missed == 0 {
		return nil, cur, nil
	}
	if missed > uint64(ch.n) {
		return nil, cur, ErrUnrecoverable
	}
	pubs := make([]*Publication, 0, missed)
	for i := ch.n - int(missed); i < ch.n; i++ {
		pubs = append(pubs, ch.ring[(ch.head+i)%len(ch.ring)].pub)
	}
	return pubs, cur, nil
}

// Position implements Broker. It creates nothing: a channel that never had
// a publication costs no memory, however many ask for it.
func (m *Memory) Position(ctx context.Context, channel string) (Position, error) {
	ch, epoch := m.lookup(channel, false)
	if ch == nil {
		return Position{Epoch: epoch}, nil
	}
	defer ch.mu.Unlock()
	return Position{Seq: ch.seq, Epoch: ch.epoch}, nil
}

// Sweep forgets channels that have had no publication for longer than the
// history TTL, keep no history and for which keep (if not nil) says no, so
// that memory follows live channels. A forgotten channel restarts with a new
// epoch. The server calls it periodically with keep reporting channels that
// still have subscribers. keep is called with the channel locked: a publish
// to it waits, and lands in the channel's next epoch if it is forgotten.
func (m *Memory) Sweep(now time.Time, keep func(channel string) bool) (removed int) {
	ttl := m.opts.HistoryTTL
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for name, ch := range s.channels {
			ch.mu.Lock()
			m.bytes.Add(ch.expire(m.since(now), m.opts.HistoryTTL))
			if ch.n == 0 && now.Sub(ch.lastAt) > ttl && (keep == nil || !keep(name)) {
				m.forgetLocked(s, name, ch)
				removed++
			}
			ch.mu.Unlock()
		}
		s.mu.Unlock()
	}
	return removed
}

// forgetLocked removes ch, locked with its shard s, from the broker: a later
// publish starts it again in a new epoch.
func (m *Memory) forgetLocked(s *memoryShard, name string, ch *memoryChannel) {
	ch.gone = true
	delete(s.channels, name)
	m.channels.Add(-1)
	m.bytes.Add(-channelCost(name))
	_, b := m.locate(name)
	s.gens[b]++
}

// evict drops the history of the least recently published channels until
// the history is back under its bound (with some room, so that the next
// eviction is not at the next publish), and forgets those of them that
// keep (SetKeep) does not name. Each loses its stream: its epoch changes,
// so a client resuming from it is told recovered: false rather than given
// a gap. Publishers that find an eviction running go on.
func (m *Memory) evict() {
	if !m.evictMu.TryLock() {
		return
	}
	defer m.evictMu.Unlock()
	type candidate struct {
		name   string
		lastAt time.Time
	}
	// What expired goes first: dropping it costs no one a resume. A
	// channel being published to right now is skipped rather than waited
	// for (it is the most recently published anyway).
	now := m.opts.Now()
	var cands []candidate
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for name, ch := range s.channels {
			if !ch.mu.TryLock() {
				continue
			}
			m.bytes.Add(ch.expire(m.since(now), m.opts.HistoryTTL))
			// Every channel is a candidate: one without history still
			// costs its own state, which forgetting it frees.
			cands = append(cands, candidate{name, ch.lastAt})
			ch.mu.Unlock()
		}
		s.mu.Unlock()
	}
	target := m.opts.MaxBytes / 100 * evictToPercent
	if m.bytes.Load() <= target {
		return
	}
	slices.SortFunc(cands, func(a, b candidate) int { return a.lastAt.Compare(b.lastAt) })
	for _, c := range cands {
		if m.bytes.Load() <= target {
			return
		}
		s, b := m.locate(c.name)
		s.mu.Lock()
		ch := s.channels[c.name]
		if ch != nil {
			ch.mu.Lock()
			if ch.n > 0 {
				freed := ch.drop()
				m.bytes.Add(-freed)
				m.evictedBytes.Add(freed)
				m.evicted.Add(1)
				s.gens[b]++
				ch.epoch = m.epoch(s.gens[b])
			}
			if m.keep != nil && !m.keep(c.name) {
				m.forgetLocked(s, c.name, ch)
			}
			ch.mu.Unlock()
		}
		s.mu.Unlock()
	}
}
