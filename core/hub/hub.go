package hub

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/heraldhq/herald/core/broker"
)

// Subscriber is one connection as the hub sees it.
type Subscriber interface {
	// Deliver queues a publication for the connection. It must not block.
	Deliver(p *broker.Publication)
	// UserID is the connection's user ("" when anonymous), for presence.
	UserID() string
}

// Pager is implemented by a Subscriber whose queue is bounded (a
// connection's outbox): the missed publications of a resuming subscriber
// are handed to it a page at a time, as it drains, rather than all at once
// (a resume across more than its queue holds would close it, and it would
// resume again: a reconnect loop). A Subscriber without it takes them all.
type Pager interface {
	// Room is how many more publications it should be given now.
	Room() int
	// WhenDrained calls f, once, on a goroutine of its own, when the
	// queue is empty; never if the subscriber ends first. Every f given
	// is called, in order: each channel of a resume pages on its own.
	WhenDrained(f func())
}

// MissedDeliverer is implemented by a Subscriber that tells the
// publications it missed (a resume's history, the live ones buffered while
// it joined) from live ones: they are handed to DeliverMissed instead of
// Deliver, so that their age does not count as delivery latency.
type MissedDeliverer interface {
	DeliverMissed(p *broker.Publication)
}

// Resyncer is implemented by a Subscriber that can be told that its stream
// has a gap that cannot be filled (the history no longer covers what it
// still had to receive): it continues from pos, and its client must reload
// its state.
type Resyncer interface {
	Resync(channel string, pos broker.Position)
}

// History is the part of the broker the hub needs to join history to the
// live stream.
type History interface {
	History(ctx context.Context, channel string, since broker.Position) ([]*broker.Publication, broker.Position, error)
	Position(ctx context.Context, channel string) (broker.Position, error)
}

const shardCount = 64

// Hub holds the subscriptions of this node.
type Hub struct {
	history       History
	interest      broker.Interest // nil: the broker feeds every channel
	seed          maphash.Seed
	shards        [shardCount]shard
	subscriptions atomic.Int64

	// groupOpen says a publication with More was handled and the last of
	// its publish has not been yet; groupEnd is told when it has.
	groupOpen atomic.Bool
	groupEnd  func()

	// recoveryLimit bounds the live publications buffered for one joining
	// subscriber (SetRecoveryLimit); past it they are dropped and read
	// again from the history when the subscriber gets to them.
	recoveryLimit int
}

// DefaultRecoveryLimit is the recovery buffer's bound until
// SetRecoveryLimit says otherwise.
const DefaultRecoveryLimit = 4096

// SetRecoveryLimit bounds the live publications buffered for a subscriber
// while it joins or pages through missed ones (n >= 1). Call it before
// subscribing.
func (h *Hub) SetRecoveryLimit(n int) { h.recoveryLimit = max(1, n) }

type shard struct {
	mu       sync.RWMutex
	channels map[string]*channel
}

type channel struct {
	mu sync.Mutex
	// subs maps each subscriber to its membership: the user it counted as
	// in presence, and its recovery buffer while it joins the stream (nil
	// once it receives live publications).
	subs  map[Subscriber]*member
	users map[string]int
	// live is a snapshot of the subscribers with a nil recovery, rebuilt
	// when stale: iterating a slice is what makes broadcast fan-out cheap.
	live      []Subscriber
	liveStale bool
}

type member struct {
	userID string
	rec    *recovery
	// epoch is the epoch of a live subscriber's position (the one it
	// became live in, then the one of each run change it was told of),
	// for RunChanged to tell only subscribers of an earlier run.
	epoch string
}

// recovery is a joining subscriber's state: what it still has to receive
// before it is live, oldest first.
type recovery struct {
	// buf is the live publications that arrived since it joined (or since
	// the last history read), at most the hub's recoveryLimit.
	buf []*broker.Publication
	// overflow says buf passed its bound and was dropped: what it held is
	// read again from the history (after last) when the subscriber gets
	// to it.
	overflow bool
	// pending is the history still to deliver; last the seq delivered
	// last (everything up to it is delivered or was not wanted), in epoch.
	pending []*broker.Publication
	last    uint64
	epoch   string
	// active says Activate set last and epoch. Before, a run change is
	// kept in changed, for Activate to compare with the position the
	// client was answered.
	active  bool
	changed *broker.Position
}

// New returns an empty hub reading history from h.
func New(h History) *Hub {
	hub := &Hub{history: h, seed: maphash.MakeSeed(), recoveryLimit: DefaultRecoveryLimit}
	hub.interest, _ = h.(broker.Interest)
	for i := range hub.shards {
		hub.shards[i].channels = make(map[string]*channel)
	}
	return hub
}

// OnGroupEnd sets f to be called once the last publication of a publish
// with several has been delivered: connections holding their frame for the
// rest of that publish (broker.Publication.More) may send it now rather
// than at the end of their batching delay. Call it before publishing.
func (h *Hub) OnGroupEnd(f func()) { h.groupEnd = f }

// noteGroup follows publishes of several publications, even on channels
// without subscribers here: their last one ends the wait of those that
// have some.
func (h *Hub) noteGroup(p *broker.Publication) {
	if p.More {
		if !h.groupOpen.Load() {
			h.groupOpen.Store(true)
		}
		return
	}
	if h.groupOpen.Load() && h.groupOpen.CompareAndSwap(true, false) && h.groupEnd != nil {
		h.groupEnd()
	}
}

func (h *Hub) shard(name string) *shard {
	return &h.shards[maphash.String(h.seed, name)%shardCount]
}

func (h *Hub) lookup(name string) *channel {
	s := h.shard(name)
	s.mu.RLock()
	ch := s.channels[name]
	s.mu.RUnlock()
	return ch
}

// HandlePublication implements broker.Handler: it queues p for every live
// subscriber of its channel and buffers it for the joining ones.
func (h *Hub) HandlePublication(p *broker.Publication) {
	if ch := h.lookup(p.Channel); ch != nil {
		h.deliverTo(ch, p)
	}
	h.noteGroup(p)
}

// deliverTo is HandlePublication's delivery to the subscribers of
// ch, which it locks.
func (h *Hub) deliverTo(ch *channel, p *broker.Publication) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.liveStale {
		ch.live = ch.live[:0]
		for s, m := range ch.subs {
			if m.rec == nil {
				ch.live = append(ch.live, s)
			}
		}
		ch.liveStale = false
	}
	deliverAll(ch.live, p)
	if len(ch.live) == len(ch.subs) {
		return
	}
	for _, m := range ch.subs {
		switch rec := m.rec; {
		case rec == nil || rec.overflow:
		case len(rec.buf) >= h.recoveryLimit:
			rec.buf, rec.overflow = nil, true
		default:
			rec.buf = append(rec.buf, p)
		}
	}
}

// RunChanged implements broker.RunHandler: the channel started a new run
// (its history was lost; seq starts again in a new epoch) and the
// publications that follow continue from pos. Every subscriber whose
// position is of an earlier run is told (Resyncer) before any of them is
// handed: a live one at once; a joining one at once too, and what it still
// had to receive of the old run (history, buffered publications) is
// dropped: it goes on live from pos, as when the history moves past a
// resume. A joining one not answered yet is told by Activate, if the
// position it is answered is of the old run. A subscriber that already
// stands at pos (it joined once the old run was over) is not told.
func (h *Hub) RunChanged(name string, pos broker.Position) {
	ch := h.lookup(name)
	if ch == nil {
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for s, m := range ch.subs {
		switch rec := m.rec; {
		case rec == nil:
			// A live subscriber in the new epoch joined at its seq 0:
			// it is behind pos only if the run's first are not kept.
			if m.epoch == pos.Epoch && pos.Seq == 0 {
				continue
			}
			m.epoch = pos.Epoch
		case !rec.active:
			// What it buffered is of the old run.
			rec.buf, rec.overflow = nil, false
			rec.changed = &pos
			continue
		default:
			if rec.epoch == pos.Epoch && rec.last >= pos.Seq {
				continue
			}
			rec.pending, rec.buf, rec.overflow = nil, nil, false
			rec.last, rec.epoch = pos.Seq, pos.Epoch
		}
		if r, ok := s.(Resyncer); ok {
			r.Resync(name, pos)
		}
	}
}

// ParallelFanOut is the number of live subscribers from which a channel's
// fan-out is split between goroutines, one per processor at most, each
// taking at least this many subscribers. Below it, one goroutine delivers:
// starting others costs more than it saves.
var ParallelFanOut = 2048

// deliverAll queues p for every subscriber in subs. It returns once every
// Deliver has returned, so that publications of a channel are queued in
// seq order and across channels in acceptance order.
func deliverAll(subs []Subscriber, p *broker.Publication) {
	parts := 1
	// runtime.GOMAXPROCS takes the scheduler's lock: asked only for a
	// channel large enough to split, not for every publication of a
	// per-user channel.
	if ParallelFanOut > 0 && len(subs)/ParallelFanOut > 1 {
		parts = min(runtime.GOMAXPROCS(0), len(subs)/ParallelFanOut)
	}
	if parts <= 1 {
		for _, s := range subs {
			s.Deliver(p)
		}
		return
	}
	size := (len(subs) + parts - 1) / parts
	var wg sync.WaitGroup
	for lo := size; lo < len(subs); lo += size {
		part := subs[lo:min(lo+size, len(subs))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, s := range part {
				s.Deliver(p)
			}
		}()
	}
	for _, s := range subs[:size] {
		s.Deliver(p)
	}
	wg.Wait()
}

// ErrAlreadySubscribed is returned by Subscribe when s already has the channel.
var ErrAlreadySubscribed = errors.New("already subscribed")

// Join is a subscription that is in the hub but not yet live: publications
// that arrive meanwhile are buffered. Activate delivers the missed
// publications, then the buffered ones, and makes it live.
type Join struct {
	hub       *Hub
	sub       Subscriber
	channel   string
	rec       *recovery
	missed    []*broker.Publication
	Position  broker.Position
	Recovered bool
}

// Subscribe adds s to channel. With since, the publications after it are
// looked up; Recovered says whether they could be. The caller answers the
// client, then calls Activate (or Cancel) on the returned Join.
func (h *Hub) Subscribe(ctx context.Context, s Subscriber, name string, since *broker.Position) (*Join, error) {
	sh := h.shard(name)
	sh.mu.Lock()
	ch := sh.channels[name]
	if ch == nil {
		ch = &channel{subs: make(map[Subscriber]*member, 1), users: make(map[string]int, 1)}
		sh.channels[name] = ch
		if h.interest != nil {
			// Before the history read below, so that what is placed after
			// that read reaches this node.
			h.interest.Watch(name)
		}
	}
	// The channel lock is taken before the shard lock is released so that an
	// Unsubscribe emptying the channel cannot remove it in between.
	ch.mu.Lock()
	sh.mu.Unlock()
	if _, ok := ch.subs[s]; ok {
		ch.mu.Unlock()
		return nil, ErrAlreadySubscribed
	}
	rec := &recovery{}
	uid := s.UserID()
	ch.subs[s] = &member{userID: uid, rec: rec}
	ch.users[uid]++
	ch.mu.Unlock()
	h.subscriptions.Add(1)

	j := &Join{hub: h, sub: s, channel: name, rec: rec}
	var err error
	if since != nil {
		j.missed, j.Position, err = h.history.History(ctx, name, *since)
		j.Recovered = err == nil
		if errors.Is(err, broker.ErrUnrecoverable) {
			err = nil
		}
	} else {
		j.Position, err = h.history.Position(ctx, name)
	}
	if err != nil {
		h.Unsubscribe(s, name)
		return nil, fmt.Errorf("subscribe %q: %w", name, err)
	}
	return j, nil
}

// Activate delivers what the subscriber missed and what arrived while it
// joined, each publication once and in seq order, and makes it live. A
// Pager gets them a page at a time as it drains: the rest follows from
// WhenDrained, and the subscription is live once they are all delivered.
func (j *Join) Activate() {
	ch := j.hub.lookup(j.channel)
	if ch == nil {
		return
	}
	ch.mu.Lock()
	m := ch.subs[j.sub]
	if m == nil || m.rec != j.rec {
		ch.mu.Unlock()
		return // unsubscribed meanwhile
	}
	rec := j.rec
	rec.pending, rec.last, rec.epoch = j.missed, j.Position.Seq, j.Position.Epoch
	if len(j.missed) > 0 {
		rec.last = j.missed[0].Seq - 1
	}
	j.missed = nil
	rec.active = true
	if c := rec.changed; c != nil {
		rec.changed = nil
		if j.Position.Epoch != c.Epoch || j.Position.Seq < c.Seq {
			// Answered a position of the run that is over (RunChanged):
			// nothing more of it comes, it goes on from the new one.
			rec.pending, rec.last, rec.epoch = nil, c.Seq, c.Epoch
			if r, ok := j.sub.(Resyncer); ok {
				r.Resync(j.channel, *c)
			}
		}
	}
	refetch := j.hub.pageLocked(ch, j.channel, j.sub, m)
	ch.mu.Unlock()
	if refetch {
		j.hub.resume(j.channel, j.sub, rec)
	}
}

// pageLocked delivers what rec still holds for s, as much as s has room
// for. It makes s live once nothing is left, asks s to call back when it
// has drained if something is, and reports whether the history must be
// read again first (the live buffer overflowed).
func (h *Hub) pageLocked(ch *channel, name string, s Subscriber, m *member) (refetch bool) {
	rec := m.rec
	pager, paged := s.(Pager)
	// Room is asked before each publication: it counts bytes as well as
	// publications, and one large publication may use it all.
	hasRoom := func() bool { return !paged || pager.Room() > 0 }
	handOver := s.Deliver
	if md, ok := s.(MissedDeliverer); ok {
		handOver = md.DeliverMissed
	}
	deliver := func(list []*broker.Publication) []*broker.Publication {
		for len(list) > 0 && hasRoom() {
			p := list[0]
			list[0] = nil
			list = list[1:]
			if p.Seq <= rec.last {
				continue // delivered already, from the history or the buffer
			}
			handOver(p)
			rec.last = p.Seq
		}
		return list
	}
	if rec.pending = deliver(rec.pending); len(rec.pending) == 0 {
		rec.pending = nil
		if rec.overflow {
			return true
		}
		if rec.buf = deliver(rec.buf); len(rec.buf) == 0 {
			m.rec, m.epoch = nil, rec.epoch
			if !ch.liveStale {
				// Added to the snapshot, which stays exact, rather than
				// rebuilt from the map on the next publication: with
				// one subscriber a channel (per-user channels), that
				// was a map iteration and an allocation for the first
				// publication of every subscription.
				ch.live = append(ch.live, s)
			}
			return false
		}
	}
	if paged { // always: only a Pager's room runs out
		pager.WhenDrained(func() { h.resume(name, s, rec) })
	}
	return false
}

// resume goes on paging rec to s once s drained, reading the history again
// where the live buffer overflowed. If the history no longer covers what s
// still needs, s is told (Resyncer) and continues from the channel's
// current position.
func (h *Hub) resume(name string, s Subscriber, rec *recovery) {
	for {
		ch := h.lookup(name)
		if ch == nil {
			return
		}
		ch.mu.Lock()
		m := ch.subs[s]
		if m == nil || m.rec != rec {
			ch.mu.Unlock()
			return // unsubscribed meanwhile
		}
		if !h.pageLocked(ch, name, s, m) {
			ch.mu.Unlock()
			return
		}
		// Buffer again from now: the history read below covers everything
		// published before it, the buffer what comes after; the overlap is
		// skipped by seq.
		rec.buf, rec.overflow = nil, false
		since := broker.Position{Seq: rec.last, Epoch: rec.epoch}
		ch.mu.Unlock()

		pubs, pos, err := h.history.History(context.Background(), name, since)

		ch.mu.Lock()
		if m := ch.subs[s]; m == nil || m.rec != rec {
			ch.mu.Unlock()
			return
		}
		if rec.last != since.Seq || rec.epoch != since.Epoch {
			// The run changed meanwhile (RunChanged): what was read is
			// of the old one, and s was told where it goes on from.
			ch.mu.Unlock()
			continue
		}
		if err != nil {
			// A gap it cannot be given: it continues from the current
			// position, and its client reloads.
			rec.pending, rec.last, rec.epoch = nil, pos.Seq, pos.Epoch
			if r, ok := s.(Resyncer); ok {
				r.Resync(name, pos)
			}
		} else {
			rec.pending = pubs
		}
		ch.mu.Unlock()
	}
}

// Cancel removes a subscription that will not be activated.
func (j *Join) Cancel() { j.hub.Unsubscribe(j.sub, j.channel) }

// Unsubscribe removes s from channel and reports whether it was there.
func (h *Hub) Unsubscribe(s Subscriber, name string) bool {
	sh := h.shard(name)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ch := sh.channels[name]
	if ch == nil {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	m, ok := ch.subs[s]
	if !ok {
		return false
	}
	delete(ch.subs, s)
	uid := m.userID
	if ch.users[uid] <= 1 {
		delete(ch.users, uid)
	} else {
		ch.users[uid]--
	}
	ch.liveStale = true
	if len(ch.subs) == 0 {
		delete(sh.channels, name)
		if h.interest != nil {
			h.interest.Unwatch(name)
		}
	}
	h.subscriptions.Add(-1)
	return true
}

// Presence returns how many connections are subscribed to channel and the
// distinct user ids among them (anonymous connections count, but have no id).
func (h *Hub) Presence(name string) (count int, users []string) {
	ch := h.lookup(name)
	if ch == nil {
		return 0, []string{}
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	users = make([]string, 0, len(ch.users))
	for u := range ch.users {
		if u != "" {
			users = append(users, u)
		}
	}
	return len(ch.subs), users
}

// HasSubscribers reports whether anyone on this node is subscribed to channel.
func (h *Hub) HasSubscribers(name string) bool { return h.lookup(name) != nil }

// Subscriptions is the number of subscriptions on this node.
func (h *Hub) Subscriptions() int64 { return h.subscriptions.Load() }
