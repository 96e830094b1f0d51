package sdktest

import (
	"bytes"
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
	plugin string
	rule   *confine.Rule
	log    hclog.Logger

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
	return &recorder{rule: confine.New(nil, nil), log: log, seq: map[string]uint64{}, changed: make(chan struct{}), conns: map[string]*conn{}, calling: map[string]int{}}
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
// the error Herald sends, and nothing of it is published.
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
	for ch := range c.subs {
		if r.owns(ch) {
			return true
		}
	}
	return false
}

func unreachable(what, connID string) *pluginpb.Error {
	return pbErr(sdk.CodeForbidden, "the plugin may %s only connections subscribed to one of its channels, or calling it right now; %q is neither", what, connID)
}

func pbErr(code int, format string, args ...any) *pluginpb.Error {
	return &pluginpb.Error{Code: int32(code), Message: fmt.Sprintf(format, args...)}
}

func (r *recorder) Subscribe(_ context.Context, req *pluginpb.SubscriptionRequest) (*pluginpb.HostReply, error) {
	if !r.owns(req.GetChannel()) {
		return &pluginpb.HostReply{Error: pbErr(sdk.CodeForbidden, "channel %q is not the plugin's", req.GetChannel())}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.conns[req.GetConnId()]
	if !ok {
		return &pluginpb.HostReply{Error: pbErr(sdk.CodeInvalidParams, "no connection %q", req.GetConnId())}, nil
	}
	if !r.reachesLocked(c, req.GetConnId()) {
		return &pluginpb.HostReply{Error: unreachable("subscribe", req.GetConnId())}, nil
	}
	c.subs[req.GetChannel()] = true
	return &pluginpb.HostReply{}, nil
}

func (r *recorder) Unsubscribe(_ context.Context, req *pluginpb.SubscriptionRequest) (*pluginpb.HostReply, error) {
	if !r.owns(req.GetChannel()) {
		return &pluginpb.HostReply{Error: pbErr(sdk.CodeForbidden, "channel %q is not the plugin's", req.GetChannel())}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[req.GetConnId()]; ok {
		delete(c.subs, req.GetChannel())
	}
	return &pluginpb.HostReply{}, nil
}

func (r *recorder) Presence(_ context.Context, req *pluginpb.PresenceRequest) (*pluginpb.PresenceReply, error) {
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

func (r *recorder) CallClient(_ context.Context, req *pluginpb.CallClientRequest) (*pluginpb.CallClientReply, error) {
	r.mu.Lock()
	f := r.onClient
	c, known := r.conns[req.GetConnId()]
	reaches := known && r.reachesLocked(c, req.GetConnId())
	r.mu.Unlock()
	if !known {
		return &pluginpb.CallClientReply{Error: pbErr(sdk.CodeInvalidParams, "no connection %q", req.GetConnId())}, nil
	}
	if !reaches {
		return &pluginpb.CallClientReply{Error: unreachable("call", req.GetConnId())}, nil
	}
	if p := bytes.TrimSpace(req.GetParams()); len(p) > 0 && string(p) != "null" && ((p[0] != '{' && p[0] != '[') || !json.Valid(p)) {
		return &pluginpb.CallClientReply{Error: pbErr(sdk.CodeInvalidParams, "the params of %s must be one JSON object or array (JSON-RPC 2.0 params), or none", req.GetMethod())}, nil
	}
	if f == nil {
		return &pluginpb.CallClientReply{Error: pbErr(sdk.CodeMethodNotFound, "client %q does not present %s", req.GetConnId(), req.GetMethod())}, nil
	}
	res, err := f(req.GetConnId(), req.GetMethod(), req.GetParams())
	if err != nil {
		e := sdk.AsError(err)
		return &pluginpb.CallClientReply{Error: &pluginpb.Error{Code: int32(e.Code), Message: e.Message, Data: e.Data}}, nil
	}
	return &pluginpb.CallClientReply{Result: res}, nil
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
		return stream.Send(&pluginpb.FollowReply{Error: pbErr(sdk.CodeForbidden, "channel %q is not the plugin's", ch)})
	}
	r.mu.Lock()
	cur := r.seq[ch]
	r.mu.Unlock()
	next, recovered := cur, true
	if req.GetHasSince() {
		if (req.GetEpoch() == "" || req.GetEpoch() == Epoch) && req.GetSinceSeq() <= cur {
			next = req.GetSinceSeq()
		} else {
			recovered = false
		}
	}
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
