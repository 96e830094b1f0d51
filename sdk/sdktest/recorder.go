package sdktest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/heraldhq/herald/sdk"
	"github.com/heraldhq/herald/sdk/confine"
	"github.com/heraldhq/herald/sdk/hostcheck"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Emitted is one notification the plugin emitted, as the host numbered it.
type Emitted struct {
	Channel    string
	Event      string
	ObjectType string
	ObjectName string
	Object     json.RawMessage
	Seq        uint64 // per channel, from 1
	ID         string
	Batch      uint64 // the emit batch it arrived in
}

// ClientFunc answers a Host.CallClient request in place of a client.
type ClientFunc func(connID, method string, params json.RawMessage) (json.RawMessage, error)

type conn struct {
	userID string
	claims map[string]any
	subs   map[string]bool
}

// recorder is the harness's Host service.
type recorder struct {
	pluginpb.UnimplementedHostServer

	// plugin (its manifest's name) and rule (its prefixes and the block's
	// emit_channels, sdk/confine: Herald's own rule) are set before the
	// service is served and never change.
	plugin      string
	rule        *confine.Rule
	wantsEvents bool // the manifest's: Herald sends it subscription events
	log         hclog.Logger
	events      *eventQueue

	mu       sync.Mutex
	seq      map[string]uint64
	emitted  []Emitted
	changed  chan struct{} // closed and replaced on every emit
	conns    map[string]*conn
	calling  map[string]int // connection id -> its calls of the plugin under way
	onClient ClientFunc
	batches  int

	state *State // answers State calls; shared by harnesses of one "cluster"
}

func newRecorder(log hclog.Logger) *recorder {
	return &recorder{rule: confine.New(nil, nil), log: log, events: newEventQueue(), seq: map[string]uint64{}, changed: make(chan struct{}), conns: map[string]*conn{}, calling: map[string]int{}}
}

func (r *recorder) Emit(stream pluginpb.Host_EmitServer) error {
	for {
		b, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		// Like the host: columns when the SDK asks for them.
		ack := &pluginpb.EmitAck{Id: b.GetId()}
		if ack.Error = r.checkEmit(b.GetNotifications()); ack.Error != nil {
			r.mu.Lock()
			r.batches++
			r.mu.Unlock()
			if err := stream.Send(ack); err != nil {
				return err
			}
			continue
		}
		r.mu.Lock()
		r.batches++
		for _, n := range b.GetNotifications() {
			r.seq[n.GetChannel()]++
			s := r.seq[n.GetChannel()]
			id := n.GetChannel() + "#" + strconv.FormatUint(s, 10)
			r.emitted = append(r.emitted, Emitted{Channel: n.GetChannel(), Event: n.GetEvent(),
				ObjectType: n.GetObjectType(), ObjectName: n.GetObjectName(),
				Object: json.RawMessage(n.GetObject()), Seq: s, ID: id, Batch: b.GetId()})
			if b.GetColumnarAck() {
				ack.Seqs, ack.Ids = append(ack.Seqs, s), append(ack.Ids, id)
			} else {
				ack.Published = append(ack.Published, &pluginpb.Published{Channel: n.GetChannel(), Seq: s, Id: id})
			}
		}
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if err := stream.Send(ack); err != nil {
			return err
		}
	}
}

// checkEmit is the host's rule for an emit batch (sdk/confine, as Herald
// applies it): a batch holding any channel that is neither of the plugin's
// prefixes nor allowed by the block's emit_channels is refused whole, with
// the error Herald sends, and nothing of it is published. So is one with
// an object that is not one JSON value in UTF-8 (sdk/hostcheck.EmitObject,
// as Herald's core checks it).
func (r *recorder) checkEmit(ns []*pluginpb.Notification) *pluginpb.Error {
	for _, n := range ns {
		ch := n.GetChannel()
		if r.rule.MayEmit(ch) {
			continue
		}
		r.log.Warn("emit refused: channel outside the plugin's own (give the harness the plugin block's emit_channels with sdktest.EmitChannels if Herald's config allows it)",
			"channel", ch, "notifications", len(ns))
		data, _ := json.Marshal(map[string]string{"channel": ch})
		return &pluginpb.Error{Code: sdk.CodeForbidden, Message: confine.EmitRefusal(r.plugin, ch), Data: data}
	}
	if e := r.checkObjects(ns); e != nil {
		r.log.Warn("emit refused", "error", e.Message)
		return &pluginpb.Error{Code: int32(e.Code), Message: e.Message}
	}
	return nil
}

// checkObjects is the check Herald's core makes of the objects of a batch
// the rule let through.
func (r *recorder) checkObjects(ns []*pluginpb.Notification) *hostcheck.Error {
	for i, n := range ns {
		if obj := n.GetObject(); len(obj) > 0 {
			if e := hostcheck.EmitObject(r.plugin, i, obj, json.Valid); e != nil {
				return e
			}
		}
	}
	return nil
}

func (r *recorder) owns(channel string) bool { return r.rule.Owns(channel) }

// enterCall and exitCall bracket a call of the plugin by a connection:
// meanwhile the plugin reaches it (reachesLocked).
func (r *recorder) enterCall(connID string) {
	r.mu.Lock()
	r.calling[connID]++
	r.mu.Unlock()
}

func (r *recorder) exitCall(connID string) {
	r.mu.Lock()
	if r.calling[connID]--; r.calling[connID] <= 0 {
		delete(r.calling, connID)
	}
	r.mu.Unlock()
}

// reachesLocked is the host's rule for Subscribe and CallClient: the plugin
// may act on a connection that is calling it right now or is subscribed to
// one of its channels, not on any connection whose id it learned.
func (r *recorder) reachesLocked(c *conn, connID string) bool {
	if r.calling[connID] > 0 {
		return true
	}
	if c == nil {
		return false
	}
	for ch := range c.subs {
		if r.owns(ch) {
			return true
		}
	}
	return false
}

func unreachable(plugin, what, connID string) *pluginpb.Error {
	return pbErr(sdk.CodeForbidden, "plugin %q may %s only connections subscribed to one of its channels, or calling it right now; %q is neither", plugin, what, connID)
}

func pbErr(code int, format string, args ...any) *pluginpb.Error {
	return &pluginpb.Error{Code: int32(code), Message: fmt.Sprintf(format, args...)}
}

// notOwned is Herald's refusal of an act on a channel that is not of the
// plugin's prefixes.
func (r *recorder) notOwned(what, channel string) *pluginpb.Error {
	return pbErr(sdk.CodeForbidden, "%s", confine.NotOwned(r.plugin, what, channel))
}

func noConnection(connID string) *pluginpb.Error {
	return pbErr(sdk.CodeInvalidParams, "no connection %q on this server", connID)
}

// Subscribe is Herald's Host.Subscribe: on a channel of the plugin's, a
// connection it reaches. Call.Subscribe (hold, since) is answered with the
// channel's position, as Herald answers it.
func (r *recorder) Subscribe(_ context.Context, req *pluginpb.SubscriptionRequest) (*pluginpb.HostReply, error) {
	ch, id := req.GetChannel(), req.GetConnId()
	if !r.owns(ch) {
		return &pluginpb.HostReply{Error: r.notOwned("subscribe connections to", ch)}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.conns[id]
	if !r.reachesLocked(c, id) {
		return &pluginpb.HostReply{Error: unreachable(r.plugin, "subscribe", id)}, nil
	}
	if c == nil {
		return &pluginpb.HostReply{Error: noConnection(id)}, nil
	}
	had := c.subs[ch]
	c.subs[ch] = true
	if !had {
		r.notifyLocked(pluginpb.EventKind_EVENT_KIND_SUBSCRIBED, id, c, ch)
	}
	if !req.GetHold() && !req.GetHasSince() {
		return &pluginpb.HostReply{}, nil
	}
	rep := &pluginpb.HostReply{Seq: r.seq[ch], Epoch: Epoch}
	if !had && req.GetHasSince() {
		_, rep.Recovered = r.recoverableLocked(ch, req.GetSinceSeq(), req.GetSinceEpoch())
	}
	return rep, nil
}

// recoverableLocked says where a follower or subscriber resuming channel
// after since (seq, epoch) starts, and whether the history after since is
// there: the harness keeps every notification, so it is for any since of
// its epoch (or none) up to the channel's seq.
func (r *recorder) recoverableLocked(channel string, seq uint64, epoch string) (uint64, bool) {
	cur := r.seq[channel]
	if (epoch == "" || epoch == Epoch) && seq <= cur {
		return seq, true
	}
	return cur, false
}

func (r *recorder) Unsubscribe(_ context.Context, req *pluginpb.SubscriptionRequest) (*pluginpb.HostReply, error) {
	if !r.owns(req.GetChannel()) {
		return &pluginpb.HostReply{Error: r.notOwned("unsubscribe connections from", req.GetChannel())}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[req.GetConnId()]; ok && c.subs[req.GetChannel()] {
		delete(c.subs, req.GetChannel())
		r.notifyLocked(pluginpb.EventKind_EVENT_KIND_UNSUBSCRIBED, req.GetConnId(), c, req.GetChannel())
	}
	return &pluginpb.HostReply{}, nil
}

// notifyLocked queues the subscription event Herald sends the plugin when
// the plugin itself subscribed or unsubscribed a connection, if the plugin
// wants events (the channel is its own: it could not act on it otherwise).
func (r *recorder) notifyLocked(kind pluginpb.EventKind, connID string, c *conn, channel string) {
	if !r.wantsEvents {
		return
	}
	ev := &pluginpb.Event{Kind: kind, ConnId: connID, UserId: c.userID, Channel: channel}
	if c.claims != nil {
		ev.ClaimsJson, _ = json.Marshal(c.claims)
	}
	r.events.add(ev)
}

func (r *recorder) Presence(_ context.Context, req *pluginpb.PresenceRequest) (*pluginpb.PresenceReply, error) {
	if !r.owns(req.GetChannel()) {
		return &pluginpb.PresenceReply{Error: r.notOwned("read the presence of", req.GetChannel())}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	users := map[string]bool{}
	count := 0
	for _, c := range r.conns {
		if c.subs[req.GetChannel()] {
			count++
			if c.userID != "" {
				users[c.userID] = true
			}
		}
	}
	out := &pluginpb.PresenceReply{Count: int64(count)}
	for u := range users {
		out.Users = append(out.Users, u)
	}
	sort.Strings(out.Users)
	return out, nil
}

// CallClient is Herald's Host.CallClient: a connection the plugin reaches,
// params that are one JSON object or array or none, and a method of the
// client's local interface, which onNotificationReceived is not
// (sdk/hostcheck, as Herald checks them).
func (r *recorder) CallClient(_ context.Context, req *pluginpb.CallClientRequest) (*pluginpb.CallClientReply, error) {
	id := req.GetConnId()
	r.mu.Lock()
	f := r.onClient
	c := r.conns[id]
	reaches := r.reachesLocked(c, id)
	r.mu.Unlock()
	if !reaches {
		return &pluginpb.CallClientReply{Error: unreachable(r.plugin, "call", id)}, nil
	}
	params, perr := hostcheck.ClientParams(r.plugin, req.GetMethod(), req.GetParams())
	if perr != nil {
		return &pluginpb.CallClientReply{Error: hostErr(perr)}, nil
	}
	if c == nil {
		return &pluginpb.CallClientReply{Error: noConnection(id)}, nil
	}
	if e := hostcheck.ClientMethod(req.GetMethod()); e != nil {
		return &pluginpb.CallClientReply{Error: hostErr(e)}, nil
	}
	if f == nil {
		return &pluginpb.CallClientReply{Error: pbErr(sdk.CodeMethodNotFound, "client %q does not present %s", id, req.GetMethod())}, nil
	}
	res, err := f(id, req.GetMethod(), params)
	if err != nil {
		e := sdk.AsError(err)
		return &pluginpb.CallClientReply{Error: &pluginpb.Error{Code: int32(e.Code), Message: e.Message, Data: e.Data}}, nil
	}
	return &pluginpb.CallClientReply{Result: res}, nil
}

func hostErr(e *hostcheck.Error) *pluginpb.Error {
	return &pluginpb.Error{Code: int32(e.Code), Message: e.Message, Data: e.Data}
}

// Epoch is the epoch of every channel of the harness: its history is never
// reset.
const Epoch = "sdktest"

// Follow serves Host.Follow from the recorded notifications: those after
// since, then each new one, until the plugin closes the follow. The
// harness keeps every notification, so any since of its epoch up to the
// channel's seq is recovered.
func (r *recorder) Follow(req *pluginpb.FollowRequest, stream pluginpb.Host_FollowServer) error {
	ch := req.GetChannel()
	if !r.owns(ch) {
		return stream.Send(&pluginpb.FollowReply{Error: r.notOwned("follow", ch)})
	}
	r.mu.Lock()
	next, recovered := r.seq[ch], true
	if req.GetHasSince() {
		next, recovered = r.recoverableLocked(ch, req.GetSinceSeq(), req.GetEpoch())
	}
	r.mu.Unlock()
	if err := stream.Send(&pluginpb.FollowReply{Position: &pluginpb.FollowPosition{Seq: next, Epoch: Epoch, Recovered: recovered}}); err != nil {
		return err
	}
	for {
		r.mu.Lock()
		var out []*pluginpb.FollowNotification
		for _, e := range r.emitted {
			if e.Channel == ch && e.Seq > next {
				out = append(out, &pluginpb.FollowNotification{Id: e.ID, Seq: e.Seq, Event: e.Event,
					ObjectType: e.ObjectType, ObjectName: e.ObjectName, Object: e.Object})
				next = e.Seq
			}
		}
		changed := r.changed
		r.mu.Unlock()
		if len(out) > 0 {
			if err := stream.Send(&pluginpb.FollowReply{Notifications: out}); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}
