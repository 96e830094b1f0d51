package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// Follow implements pluginhost.Core: a follower is a hub subscriber without
// a connection. It joins the channel as a resuming subscribe does (the
// hub's Join: history after since, then what arrived meanwhile, then live),
// and queues publications for the plugin's stream, bounded like an outbox.
func (s *Server) Follow(ctx context.Context, channel string, since *pluginhost.Position, maxBytes int) (pluginhost.Follower, error) {
	if err := validChannel(channel); err != nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "follow: %v", err)
	}
	var from *broker.Position
	if since != nil {
		p := broker.Position{Seq: since.Seq, Epoch: since.Epoch}
		if p.Epoch == "" { // "the current stream": take its epoch
			cur, err := s.broker.Position(ctx, channel)
			if err != nil {
				return nil, rpc.Errorf(rpc.CodeInternal, "follow %q: %v", channel, err)
			}
			p.Epoch = cur.Epoch
		}
		from = &p
	}
	// Bounded like a connection's outbox, and never past what one reply to
	// the plugin may carry.
	if ob := s.live().Delivery.OutboxBytes; ob > 0 && (maxBytes <= 0 || ob < maxBytes) {
		maxBytes = ob
	}
	f := &follower{hub: s.hub, followers: &s.followers, channel: channel, maxItems: s.live().Delivery.OutboxLimit, maxBytes: maxBytes,
		wake: make(chan struct{}, 1)}
	j, err := s.hub.Subscribe(ctx, f, channel, from)
	if err != nil {
		return nil, rpc.Errorf(rpc.CodeInternal, "follow %q: %v", channel, err)
	}
	// Counted once in the hub (presence may count it for that moment, never
	// fewer than the connections), and uncounted before it leaves (Close).
	s.followers.add(channel, 1)
	f.start = pluginhost.Position{Seq: j.Position.Seq, Epoch: j.Position.Epoch}
	f.recovered = from == nil || j.Recovered
	if from != nil && j.Recovered {
		f.start.Seq = from.Seq // the replay starts right after since
	}
	j.Activate()
	return f, nil
}

// errFollowClosed is what Next returns once Close was called.
var errFollowClosed = errors.New("follower closed")

// errFollowRestarted is what Next returns, after what was queued before,
// once the channel's stream no longer continues from what the follower had
// (Resync).
var errFollowRestarted = errors.New("the channel's history was lost and its seq started again")

// follower is one plugin's follow of a channel.
type follower struct {
	hub       *hub.Hub
	followers *followerCounts
	channel   string
	start     pluginhost.Position
	recovered bool
	maxItems  int
	maxBytes  int

	mu    sync.Mutex
	queue []*broker.Publication
	bytes int
	err   error         // set once: slow or closed; the queue is dropped
	wake  chan struct{} // 1-buffered: something changed

	closeOnce sync.Once
}

var (
	_ hub.Subscriber = (*follower)(nil)
	_ hub.Resyncer   = (*follower)(nil)
)

// Resync implements hub.Resyncer: the channel's stream does not continue
// from what the follower had (with broker nats, its history aged out
// entirely and its seq starts again from 1 in a new epoch). A follow
// promises each next seq, no gap and no duplicate: it ends, after what was
// queued before, with an error saying so; following again from the last
// position answers recovered: false, and the plugin reloads. It runs under
// the hub's channel lock: it only marks the follower, which takes nothing
// more (Deliver) and leaves the hub when the plugin's stream ends (Close).
func (f *follower) Resync(_ string, pos broker.Position) {
	f.mu.Lock()
	if f.err == nil {
		f.err = fmt.Errorf("%w (now at seq %d of epoch %q): follow again", errFollowRestarted, pos.Seq, pos.Epoch)
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Deliver implements hub.Subscriber. It runs under the hub's channel lock:
// it only queues, and a follower over its bounds drops its queue at once
// and leaves the hub from another goroutine (Close takes the channel lock).
func (f *follower) Deliver(p *broker.Publication) {
	f.mu.Lock()
	slow := false
	if f.err == nil {
		if len(f.queue) >= f.maxItems || (f.maxBytes > 0 && f.bytes+len(p.Data) > f.maxBytes) {
			f.err, f.queue, f.bytes = pluginhost.ErrFollowerSlow, nil, 0
			slow = true
		} else {
			f.queue = append(f.queue, p)
			f.bytes += len(p.Data)
		}
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
	if slow {
		go f.Close() // ends once the hub lock this Deliver holds is released
	}
}

// UserID implements hub.Subscriber: a follower is nobody in presence.
func (f *follower) UserID() string { return "" }

func (f *follower) Start() (pluginhost.Position, bool) { return f.start, f.recovered }

func (f *follower) Next(ctx context.Context) ([]pluginhost.FollowedNotification, error) {
	for {
		f.mu.Lock()
		// What was queued first: a follower ended slow or closed has
		// nothing queued; one told of a restarted stream has what came
		// before it.
		if len(f.queue) > 0 {
			q := f.queue
			f.queue, f.bytes = nil, 0
			f.mu.Unlock()
			return decodeFollowed(q)
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return nil, err
		}
		f.mu.Unlock()
		select {
		case <-f.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (f *follower) Dropped() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return errors.Is(f.err, pluginhost.ErrFollowerSlow)
}

func (f *follower) Close() {
	f.closeOnce.Do(func() {
		f.followers.add(f.channel, -1)
		f.hub.Unsubscribe(f, f.channel)
		f.mu.Lock()
		if f.err == nil {
			f.err = errFollowClosed
		}
		f.queue, f.bytes = nil, 0
		f.mu.Unlock()
		select {
		case f.wake <- struct{}{}:
		default:
		}
	})
}

// followedWire is a publication's encoding (broker.Encode).
type followedWire struct {
	ID         string          `json:"id"`
	Seq        uint64          `json:"seq"`
	Timestamp  int64           `json:"timestamp"`
	Event      string          `json:"event"`
	ObjectType string          `json:"object_type"`
	ObjectName string          `json:"object_name"`
	Object     json.RawMessage `json:"object"`
}

func decodeFollowed(q []*broker.Publication) ([]pluginhost.FollowedNotification, error) {
	out := make([]pluginhost.FollowedNotification, len(q))
	for i, p := range q {
		var w followedWire
		if err := json.Unmarshal(p.Data, &w); err != nil {
			return nil, fmt.Errorf("follow %q: publication %d: %w", p.Channel, p.Seq, err)
		}
		out[i] = pluginhost.FollowedNotification{ID: w.ID, Seq: w.Seq, Timestamp: w.Timestamp, Event: w.Event,
			ObjectType: w.ObjectType, ObjectName: w.ObjectName, Object: w.Object}
	}
	return out, nil
}

// followerCounts counts followers per channel, so that presence counts
// connections only: a follower is a hub subscriber, not a connection.
type followerCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *followerCounts) add(channel string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	if c.n[channel] += d; c.n[channel] <= 0 {
		delete(c.n, channel)
	}
}

// presence is the hub's presence of channel without its followers.
func (s *Server) presence(ctx context.Context, channel string) (int, []string, error) {
	if s.clusterPresence != nil {
		return s.clusterPresence.Presence(ctx, channel)
	}
	count, users := s.LocalPresence(channel)
	return count, users, nil
}

// LocalPresence is the presence of channel on this node: its subscribed
// connections (not plugin follows) and their distinct users. In a cluster
// each node answers its part of a presence with it.
func (s *Server) LocalPresence(channel string) (int, []string) {
	count, users := s.hub.Presence(channel)
	s.followers.mu.Lock()
	count -= s.followers.n[channel]
	s.followers.mu.Unlock()
	return max(count, 0), users
}
