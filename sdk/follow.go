package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Position is a point in a channel's stream: its seq, and the epoch that
// changes whenever the channel's stream was reset (history lost).
type Position struct {
	Seq   uint64
	Epoch string
}

// Followed is one notification of a followed channel, as published.
type Followed struct {
	ID         string
	Channel    string
	Seq        uint64
	Timestamp  int64 // epoch milliseconds
	Event      string
	ObjectType string
	ObjectName string
	Object     []byte // JSON, as emitted
}

// Follower is implemented by the Host handle the SDK gives a plugin (it is
// a separate interface so that Host stays source-compatible for those who
// implement it in tests). Use the Follow function.
type Follower interface {
	Follow(ctx context.Context, channel string, since *Position) (*Follow, error)
}

// Follow reads one of the plugin's own channels from a position and then
// follows it live, with no gap and no duplicate: the notifications after
// since (nil: from now on) come first, oldest first, then each new one as
// it is published. Follow answers once the host has joined the channel;
// Start and Recovered say where the stream starts. The follow ends when ctx
// ends, when Close is called, or when the host ends it because the plugin
// did not keep up (Next then fails with a CodeLimitExceeded error): the
// host bounds what waits for a follower as it bounds a connection's outbox.
// Following a channel outside the plugin's prefixes is CodeForbidden.
//
// It is how a plugin streams its channels over HTTP (the kb plugin's
// GET /v1/kb/{kbid}/notifications), or rebuilds its state from them.
func FollowChannel(ctx context.Context, h Host, channel string, since *Position) (*Follow, error) {
	f, ok := h.(Follower)
	if !ok {
		return nil, fmt.Errorf("follow %q: this Host (%T) cannot follow channels", channel, h)
	}
	return f.Follow(ctx, channel, since)
}

// Follow is an open follow of a channel. Next and Close may be called from
// different goroutines; Next from one at a time.
type Follow struct {
	channel   string
	start     Position
	recovered bool
	stream    pluginpb.Host_FollowClient
	cancel    context.CancelFunc
	once      sync.Once
}

// Start is the channel's position just before the first notification Next
// returns. When since could not be recovered, it is the channel's current
// position, and the stream continues live from there.
func (f *Follow) Start() Position { return f.start }

// Recovered reports whether the history bridged the gap after since (always
// true when Follow was given no since). When false, what happened between
// since and Start is lost: reload your state another way.
func (f *Follow) Recovered() bool { return f.recovered }

// ErrFollowClosed is what Next returns once the follow was closed (by Close
// or by the end of its context).
var ErrFollowClosed = errors.New("follow closed")

// Next blocks until notifications were published on the channel and
// returns them, oldest first (a batch of one or more). Each is the next
// seq of the channel: no gap, no duplicate. It fails with ErrFollowClosed
// after Close or the end of Follow's context, with a coded error when the
// host ended the follow (it fell behind its bounds, or, with broker nats,
// the channel's history aged out and its seq started again in a new
// epoch: follow again, and reload when that is not recovered), and with
// ErrHostGone when the host went away.
func (f *Follow) Next() ([]Followed, error) {
	for {
		r, err := f.stream.Recv()
		if err != nil {
			if f.stream.Context().Err() != nil {
				return nil, ErrFollowClosed
			}
			if err == io.EOF {
				return nil, ErrHostGone
			}
			return nil, fmt.Errorf("follow %q: %w", f.channel, err)
		}
		if e := fromPBError(r.GetError()); e != nil {
			f.Close()
			return nil, e
		}
		if len(r.GetNotifications()) == 0 {
			continue
		}
		out := make([]Followed, len(r.GetNotifications()))
		for i, n := range r.GetNotifications() {
			out[i] = Followed{ID: n.GetId(), Channel: f.channel, Seq: n.GetSeq(), Timestamp: n.GetTimestamp(),
				Event: n.GetEvent(), ObjectType: n.GetObjectType(), ObjectName: n.GetObjectName(), Object: n.GetObject()}
		}
		return out, nil
	}
}

// Close ends the follow: the host removes it at once. Safe to call twice.
func (f *Follow) Close() { f.once.Do(f.cancel) }

// Follow implements Follower.
func (h *host) Follow(ctx context.Context, channel string, since *Position) (*Follow, error) {
	ctx, cancel := context.WithCancel(ctx)
	req := &pluginpb.FollowRequest{Channel: channel}
	if since != nil {
		req.HasSince, req.SinceSeq, req.Epoch = true, since.Seq, since.Epoch
	}
	stream, err := h.client.Follow(ctx, req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("follow %q: %w", channel, err)
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		if err == io.EOF {
			return nil, fmt.Errorf("follow %q: the host ended the stream before its position", channel)
		}
		return nil, fmt.Errorf("follow %q: %w", channel, err)
	}
	if e := fromPBError(first.GetError()); e != nil {
		cancel()
		return nil, e
	}
	p := first.GetPosition()
	return &Follow{channel: channel, start: Position{Seq: p.GetSeq(), Epoch: p.GetEpoch()}, recovered: p.GetRecovered(),
		stream: stream, cancel: cancel}, nil
}
