package pluginhost

import (
	"context"
	"errors"
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/confine"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// hostService is what one plugin may ask of the host; each plugin process
// gets its own, bound to the plugin's name.
type hostService struct {
	pluginpb.UnimplementedHostServer
	m      *Manager
	plugin string
	inst   *instance
	pol    *policy
	log    hclog.Logger
}

func toPBError(err error) *pluginpb.Error {
	if err == nil {
		return nil
	}
	var e *rpc.Error
	if errors.As(err, &e) {
		return &pluginpb.Error{Code: int32(e.Code), Message: e.Message, Data: e.Data}
	}
	return &pluginpb.Error{Code: rpc.CodeInternal, Message: err.Error()}
}

// Emit handles the plugin's event path: batches in, in order; each batch goes
// to the core in one call, and the ack goes back once the core returned, i.e.
// once the notifications are in history. Batches arrive decoded straight
// into Notifications whose objects point into the received message, held
// until the core's Emit returned (emitcodec.go). A plugin that asks for it gets the ack
// in columns (seqs, ids), not one Published message per notification. The
// ack's messages are reused from batch to batch (Send has encoded the ack
// when it returns), so a batch costs the host no allocation per
// notification beyond its strings and what the core does.
func (h *hostService) Emit(stream pluginpb.Host_EmitServer) error {
	ctx := stream.Context()
	emitted := h.m.met.emitted.WithLabelValues(h.plugin)
	batches := h.m.met.emitBatches.WithLabelValues(h.plugin)
	var (
		f    emitFrame
		out  []*pluginpb.Published // out[len:cap] keeps spare messages for reuse
		seqs []uint64
		ids  []string
		ack  pluginpb.EmitAck
	)
	defer f.release()
	for {
		err := stream.RecvMsg(&f)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		ns := f.ns
		ack.Id, ack.Published, ack.Error, ack.Seqs, ack.Ids = f.id, nil, nil, nil, nil
		var pub []Published
		if ch, rerr := h.pol.checkEmit(ns, h.m.ownsPrefix, h.m.openChannels()); rerr != nil {
			err = rerr
			h.m.met.emitsRefused.WithLabelValues(h.plugin).Add(float64(len(ns)))
			if h.m.refusals.first(h.plugin, ch) {
				h.log.Warn("emit refused: channel outside the plugin's own (further refusals for this prefix are counted in herald_plugin_emits_refused_total, not logged)",
					"channel", ch, "notifications", len(ns))
			}
		} else {
			pub, err = h.m.opts.Core.Emit(ctx, h.plugin, ns)
		}
		clear(ns)
		f.release() // the objects' message goes back to gRPC's pool
		switch {
		case err != nil:
			ack.Error = toPBError(err)
		case len(pub) != len(ns):
			ack.Error = toPBError(rpc.Errorf(rpc.CodeInternal, "core published %d of %d notifications", len(pub), len(ns)))
		case f.columnar:
			seqs, ids = seqs[:0], ids[:0]
			for _, p := range pub {
				seqs = append(seqs, p.Seq)
				ids = append(ids, p.ID)
			}
			ack.Seqs, ack.Ids = seqs, ids
			emitted.Add(float64(len(pub)))
			batches.Inc()
		default:
			out = out[:0]
			for _, p := range pub {
				k := len(out)
				var m *pluginpb.Published
				if k < cap(out) {
					m = out[:k+1][k]
				}
				if m == nil {
					m = new(pluginpb.Published)
				}
				m.Channel, m.Seq, m.Id = p.Channel, p.Seq, p.ID
				out = append(out, m)
			}
			ack.Published = out
			emitted.Add(float64(len(pub)))
			batches.Inc()
		}
		err = stream.Send(&ack)
		for _, m := range out {
			m.Channel, m.Id = "", ""
		}
		clear(ids)
		if err != nil {
			return err
		}
	}
}

func (h *hostService) owns(what, channel string) error {
	if !h.pol.owns(channel) {
		return rpc.Errorf(rpc.CodeForbidden, "%s", confine.NotOwned(h.plugin, what, channel))
	}
	return nil
}

// reaches reports whether the plugin may act on connection connID: the
// connection is calling the plugin right now, or is subscribed to one of
// its channels. Connection ids reach every plugin with the connected
// events; they are no licence to act on a connection.
func (h *hostService) reaches(connID string) bool {
	return h.inst.inCall(connID) || h.m.opts.Core.SubscribedTo(connID, h.pol.owns)
}

func (h *hostService) unreachable(what, connID string) *rpc.Error {
	return rpc.Errorf(rpc.CodeForbidden, "plugin %q may %s only connections subscribed to one of its channels, or calling it right now; %q is neither", h.plugin, what, connID)
}

// Subscribe adds a connection to one of the plugin's channels, if the
// plugin reaches it (see reaches). Unsubscribe needs no such check: it
// removes only a subscription to one of the plugin's own channels, which a
// connection it does not reach does not have.
func (h *hostService) Subscribe(ctx context.Context, r *pluginpb.SubscriptionRequest) (*pluginpb.HostReply, error) {
	if err := h.owns("subscribe connections to", r.GetChannel()); err != nil {
		return &pluginpb.HostReply{Error: toPBError(err)}, nil
	}
	if !h.reaches(r.GetConnId()) {
		return &pluginpb.HostReply{Error: toPBError(h.unreachable("subscribe", r.GetConnId()))}, nil
	}
	if r.GetHold() || r.GetHasSince() {
		return h.subscribeWith(ctx, r), nil
	}
	return &pluginpb.HostReply{Error: toPBError(h.m.opts.Core.Subscribe(ctx, r.GetConnId(), r.GetChannel()))}, nil
}

func (h *hostService) Unsubscribe(ctx context.Context, r *pluginpb.SubscriptionRequest) (*pluginpb.HostReply, error) {
	if err := h.owns("unsubscribe connections from", r.GetChannel()); err != nil {
		return &pluginpb.HostReply{Error: toPBError(err)}, nil
	}
	tell := !h.inst.inCall(r.GetConnId())
	return &pluginpb.HostReply{Error: toPBError(h.m.opts.Core.Unsubscribe(ctx, h.plugin, r.GetConnId(), r.GetChannel(), tell))}, nil
}

func (h *hostService) Presence(ctx context.Context, r *pluginpb.PresenceRequest) (*pluginpb.PresenceReply, error) {
	if err := h.owns("read the presence of", r.GetChannel()); err != nil {
		return &pluginpb.PresenceReply{Error: toPBError(err)}, nil
	}
	p, err := h.m.opts.Core.Presence(ctx, r.GetChannel())
	if err != nil {
		return &pluginpb.PresenceReply{Error: toPBError(err)}, nil
	}
	return &pluginpb.PresenceReply{Count: int64(p.Count), Users: p.Users}, nil
}

func (h *hostService) CallClient(ctx context.Context, r *pluginpb.CallClientRequest) (*pluginpb.CallClientReply, error) {
	if !h.reaches(r.GetConnId()) {
		return &pluginpb.CallClientReply{Error: toPBError(h.unreachable("call", r.GetConnId()))}, nil
	}
	params, perr := clientParams(h.plugin, r.GetMethod(), r.GetParams())
	if perr != nil {
		return &pluginpb.CallClientReply{Error: toPBError(perr)}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, h.m.opts.CallTimeout)
	defer cancel()
	res, err := h.m.opts.Core.CallClient(ctx, r.GetConnId(), r.GetMethod(), params)
	if err != nil {
		return &pluginpb.CallClientReply{Error: toPBError(err)}, nil
	}
	return &pluginpb.CallClientReply{Result: res}, nil
}

// Follow streams one of the plugin's channels to it: the start position,
// then batches of what is published, until the plugin cancels the call
// (the follower is removed at once: this handler is its only goroutine),
// the host stops the plugin, or the follower falls behind its bounds (a
// last reply says so). All that is pending goes in one reply: the
// follower's byte bound is what one reply may carry.
func (h *hostService) Follow(r *pluginpb.FollowRequest, stream pluginpb.Host_FollowServer) error {
	ctx := stream.Context()
	ch := r.GetChannel()
	if owner, ok := h.m.Owner(ch); !ok || owner != h.plugin {
		return stream.Send(&pluginpb.FollowReply{Error: toPBError(rpc.Errorf(rpc.CodeForbidden, "%s", confine.NotOwned(h.plugin, "follow", ch)))})
	}
	var since *Position
	if r.GetHasSince() {
		since = &Position{Seq: r.GetSinceSeq(), Epoch: r.GetEpoch()}
	}
	f, err := h.m.opts.Core.Follow(ctx, ch, since, h.m.opts.MaxMessageBytes/2)
	if err != nil {
		return stream.Send(&pluginpb.FollowReply{Error: toPBError(err)})
	}
	followers := h.m.met.followers.WithLabelValues(h.plugin)
	followers.Inc()
	defer func() {
		// Dropped even when the plugin was stuck (in its own stream) and
		// never read the error: counted once, whatever the exit.
		if f.Dropped() {
			h.m.met.followersEnded.WithLabelValues(h.plugin).Inc()
		}
		f.Close()
		followers.Dec()
	}()

	pos, recovered := f.Start()
	if err := stream.Send(&pluginpb.FollowReply{Position: &pluginpb.FollowPosition{Seq: pos.Seq, Epoch: pos.Epoch, Recovered: recovered}}); err != nil {
		return err
	}
	for {
		ns, err := f.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the plugin closed the follow, or is gone
			}
			code := rpc.CodeInternal
			if errors.Is(err, ErrFollowerSlow) {
				code = rpc.CodeLimitExceeded
			}
			return stream.Send(&pluginpb.FollowReply{Error: toPBError(rpc.Errorf(code, "follow %q ended: %v", ch, err))})
		}
		reply := &pluginpb.FollowReply{Notifications: make([]*pluginpb.FollowNotification, len(ns))}
		for i, n := range ns {
			reply.Notifications[i] = &pluginpb.FollowNotification{Id: n.ID, Seq: n.Seq, Timestamp: n.Timestamp,
				Event: n.Event, ObjectType: n.ObjectType, ObjectName: n.ObjectName, Object: n.Object}
		}
		if err := stream.Send(reply); err != nil {
			return err
		}
	}
}
