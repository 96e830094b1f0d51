package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// SubscribeOptions shape Call.Subscribe.
type SubscribeOptions struct {
	// Since resumes the channel as a client's subscribe with since does:
	// the notifications after it are delivered first, then live ones.
	Since *Position
}

// Subscription is where Call.Subscribe's subscription starts.
type Subscription struct {
	Channel  string
	Position Position
	// Recovered: with Since, the history after it will be delivered (the
	// channel's epoch is the same and the history still holds it).
	Recovered bool
}

// ErrNoConnection is returned by Call.Subscribe for a call that did not come
// from a client connection (a backend through the HTTP route).
var ErrNoConnection = errors.New("the call has no client connection to subscribe")

// heldList collects the holds of one call's subscriptions.
type heldList struct {
	mu    sync.Mutex
	holds []string
}

func (l *heldList) add(h string) {
	l.mu.Lock()
	l.holds = append(l.holds, h)
	l.mu.Unlock()
}

func (l *heldList) list() []string {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holds
}

// Subscribe subscribes the caller's connection to channel, a channel of the
// plugin's own prefixes (Authorize is not asked), in step with this call's
// reply: the subscription starts at the returned position, and the
// connection receives the channel's notifications after it only once this
// call's reply (result or error) has been written to it. So a client always
// reads the answer naming a channel before the channel's first
// notification, and nothing emitted between the subscribe and the reply is
// lost. Already subscribed, it returns the channel's current position.
func (c *Call) Subscribe(ctx context.Context, channel string, opts SubscribeOptions) (Subscription, error) {
	if c.Caller.ConnID == "" {
		return Subscription{}, ErrNoConnection
	}
	h, ok := c.Host.(*host)
	if !ok || c.held == nil {
		return Subscription{}, fmt.Errorf("subscribe %q: the call has no host connection", channel)
	}
	req := &pluginpb.SubscriptionRequest{ConnId: c.Caller.ConnID, Channel: channel, Hold: true}
	if opts.Since != nil {
		req.HasSince, req.SinceSeq, req.SinceEpoch = true, opts.Since.Seq, opts.Since.Epoch
	}
	r, err := h.client.Subscribe(ctx, req)
	if err != nil {
		return Subscription{}, fmt.Errorf("subscribe %q to %q: %w", c.Caller.ConnID, channel, err)
	}
	if e := fromPBError(r.GetError()); e != nil {
		return Subscription{}, e
	}
	if r.GetHold() != "" {
		c.held.add(r.GetHold())
	}
	return Subscription{Channel: channel, Position: Position{Seq: r.GetSeq(), Epoch: r.GetEpoch()}, Recovered: r.GetRecovered()}, nil
}
