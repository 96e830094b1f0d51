package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// MemoryOptions bound the memory broker.
type MemoryOptions struct {
	HistorySize int           // publications kept per channel (0: none)
	HistoryTTL  time.Duration // how long a publication is kept (0: no limit)
	// Now is the clock; tests may replace it. Defaults to time.Now.
	Now func() time.Time
}

const memoryShards = 64

// Memory is a single-process Broker. Its history does not survive a restart:
// every channel gets a new epoch, so resuming clients learn they must reload.
type Memory struct {
	opts    MemoryOptions
	seed    maphash.Seed
	shards  [memoryShards]memoryShard
	handler Handler
}

type memoryShard struct {
	mu       sync.Mutex
	channels map[string]*memoryChannel
}

type memoryChannel struct {
	mu    sync.Mutex
	seq   uint64
	epoch string
	// ring holds the last HistorySize publications; head is the index of the
	// oldest, n how many are kept.
	ring   []historyEntry
	head   int
	n      int
	lastAt time.Time
}

type historyEntry struct {
	pub *Publication
	at  time.Time
}

// NewMemory returns a memory broker.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Memory{opts: opts, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].channels = make(map[string]*memoryChannel)
	}
	return m
}

// SetHandler implements Broker.
func (m *Memory) SetHandler(h Handler) { m.handler = h }

// Close implements Broker.
func (m *Memory) Close() error { return nil }

func (m *Memory) channel(name string, create bool) *memoryChannel {
	s := &m.shards[maphash.String(m.seed, name)%memoryShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[name]
	if ch == nil && create {
		ch = &memoryChannel{epoch: newEpoch(), lastAt: m.opts.Now()}
		s.channels[name] = ch
	}
	return ch
}

func newEpoch() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("broker: no randomness for an epoch: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// Publish implements Broker. Publications of one channel are handed to the
// handler under that channel's lock, so fan-out order is seq order.
func (m *Memory) Publish(ctx context.Context, ns []Notification) ([]*Publication, error) {
	out := make([]*Publication, 0, len(ns))
	for i := range ns {
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("publish to %q: %w", ns[i].Channel, err)
		}
		n := &ns[i]
		ch := m.channel(n.Channel, true)
		now := m.opts.Now()
		id := ulid.Make().String()

		ch.mu.Lock()
		ch.seq++
		seq := ch.seq
		data := Encode(make([]byte, 0, 128+len(n.Object)), n, id, seq, now.UnixMilli())
		pub := &Publication{Channel: n.Channel, Seq: seq, ID: id, Data: data, More: i < len(ns)-1}
		ch.append(pub, now, m.opts.HistorySize)
		if m.handler != nil {
			m.handler.HandlePublication(pub)
		}
		ch.mu.Unlock()
		out = append(out, pub)
	}
	return out, nil
}

func (c *memoryChannel) append(p *Publication, now time.Time, size int) {
	c.lastAt = now
	if size <= 0 {
		return
	}
	if c.ring == nil {
		c.ring = make([]historyEntry, 0, min(size, 16))
	}
	if c.n < size {
		if len(c.ring) < size {
			c.ring = append(c.ring, historyEntry{p, now})
		} else {
			c.ring[(c.head+c.n)%size] = historyEntry{p, now}
		}
		c.n++
		return
	}
	c.ring[c.head] = historyEntry{p, now}
	c.head = (c.head + 1) % size
}

// expire drops entries older than ttl from the front.
func (c *memoryChannel) expire(now time.Time, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	for c.n > 0 && now.Sub(c.ring[c.head].at) > ttl {
		c.ring[c.head] = historyEntry{}
		c.head = (c.head + 1) % len(c.ring)
		c.n--
	}
}

// History implements Broker.
func (m *Memory) History(ctx context.Context, channel string, since Position) ([]*Publication, Position, error) {
	ch := m.channel(channel, true)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.expire(m.opts.Now(), m.opts.HistoryTTL)
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

// Position implements Broker.
func (m *Memory) Position(ctx context.Context, channel string) (Position, error) {
	ch := m.channel(channel, true)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return Position{Seq: ch.seq, Epoch: ch.epoch}, nil
}

// Sweep forgets channels that have had no publication for longer than the
// history TTL, keep no history and for which keep (if not nil) says no, so
// that memory follows live channels. A forgotten channel restarts with a new
// epoch. The server calls it periodically with keep reporting channels that
// still have subscribers.
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
			ch.expire(now, m.opts.HistoryTTL)
			idle := ch.n == 0 && now.Sub(ch.lastAt) > ttl
			ch.mu.Unlock()
			if idle && (keep == nil || !keep(name)) {
				delete(s.channels, name)
				removed++
			}
		}
		s.mu.Unlock()
	}
	return removed
}
