package pluginhost

import (
	"context"
	"encoding/json"

	"github.com/heraldhq/herald/core/rpc"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Subscriptions in step with a call's reply (issue 15). A plugin answering
// `documents.subscribe` subscribes the caller's connection to a room channel
// and answers with that channel; the client must read the answer before the
// first notification of the channel, and must be able to resume the channel
// later with `since`. So the plugin asks the host to hold the subscription:
// the host registers it at the channel's current position and returns that
// position and a hold; the plugin lists the hold in its reply; the server
// writes the reply and only then makes the subscription live, delivering
// what was published in between from that position on, gaplessly (the hub's
// Join, the same path as a client's subscribe with since).

// SubscribeOptions shape a plugin's subscription of a connection.
type SubscribeOptions struct {
	// Hold defers delivery until the hold is released (ReleaseHolds).
	Hold bool
	// Since resumes from a position, as a client's subscribe with since.
	Since *Position
}

// SubscribeResult is where a plugin's subscription starts.
type SubscribeResult struct {
	Position  Position
	Hold      string // "" when nothing is held (already subscribed, or no Hold)
	Recovered bool   // with Since: the history after it will be delivered
}

// HeldSubscriber is the optional part of Core that subscribes a connection
// with options. A Core without it refuses held and resuming subscriptions.
type HeldSubscriber interface {
	SubscribeWith(ctx context.Context, connID, channel string, opts SubscribeOptions) (SubscribeResult, error)
	// ReleaseHolds makes held subscriptions of connID live; call it once
	// the reply of the call that made them was written. Unknown holds are
	// ignored (released already, or by their timeout).
	ReleaseHolds(connID string, holds []string)
}

func (h *hostService) subscribeWith(ctx context.Context, r *pluginpb.SubscriptionRequest) *pluginpb.HostReply {
	hs, ok := h.m.opts.Core.(HeldSubscriber)
	if !ok {
		return &pluginpb.HostReply{Error: toPBError(rpc.Errorf(rpc.CodeInternal, "this host cannot hold or resume a plugin's subscriptions"))}
	}
	opts := SubscribeOptions{Hold: r.GetHold()}
	if r.GetHasSince() {
		opts.Since = &Position{Seq: r.GetSinceSeq(), Epoch: r.GetSinceEpoch()}
	}
	res, err := hs.SubscribeWith(ctx, r.GetConnId(), r.GetChannel(), opts)
	if err != nil {
		return &pluginpb.HostReply{Error: toPBError(err)}
	}
	return &pluginpb.HostReply{Seq: res.Position.Seq, Epoch: res.Position.Epoch, Hold: res.Hold, Recovered: res.Recovered}
}

// CallHeld is Call that also returns the holds the plugin made during the
// call: the caller writes the reply, then passes them to ReleaseHolds. They
// come back with an error reply too (the plugin may have subscribed before
// failing); on a transport error there are none (the host's timeout
// releases what the plugin held).
func (m *Manager) CallHeld(ctx context.Context, plugin, method string, caller Caller, params json.RawMessage) (json.RawMessage, []string, error) {
	var holds []string
	res, err := m.call(ctx, plugin, method, caller, params, &holds)
	return res, holds, err
}

// ReleaseHolds hands holds to the Core (see HeldSubscriber).
func (m *Manager) ReleaseHolds(connID string, holds []string) {
	if len(holds) == 0 {
		return
	}
	if hs, ok := m.opts.Core.(HeldSubscriber); ok {
		hs.ReleaseHolds(connID, holds)
	}
}
