package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
)

// Plugin subscriptions held until the reply of the call that made them is
// written (pluginhost/held.go says why). A held subscription is in the hub
// at a known position, buffering what is published; releasing it delivers
// that buffer and makes it live. A hold nobody releases (the plugin died
// before answering) is released after limits.call_timeout, which no call
// outlives.

var _ pluginhost.HeldSubscriber = (*Server)(nil)

// heldCaller is the plugin host's optional CallHeld (pluginhost.Manager).
type heldCaller interface {
	CallHeld(ctx context.Context, plugin, method string, caller pluginhost.Caller, params json.RawMessage) (json.RawMessage, []string, error)
}

type heldSub struct {
	connID string
	join   *hub.Join
	timer  *time.Timer
}

// heldSubs are the holds not released yet; the zero value is ready.
type heldSubs struct {
	mu sync.Mutex
	m  map[string]*heldSub
}

func (h *heldSubs) put(token string, hs *heldSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]*heldSub)
	}
	h.m[token] = hs
}

// take removes and returns the hold, if connID's ("" matches any).
func (h *heldSubs) take(connID, token string) *heldSub {
	h.mu.Lock()
	defer h.mu.Unlock()
	hs := h.m[token]
	if hs == nil || (connID != "" && hs.connID != connID) {
		return nil
	}
	delete(h.m, token)
	return hs
}

// SubscribeWith implements pluginhost.HeldSubscriber.
func (s *Server) SubscribeWith(ctx context.Context, connID, channel string, opts pluginhost.SubscribeOptions) (pluginhost.SubscribeResult, error) {
	var res pluginhost.SubscribeResult
	ss, err := s.mustSession(connID)
	if err != nil {
		return res, err
	}
	if err := validChannel(channel); err != nil {
		return res, rpc.Errorf(rpc.CodeInvalidParams, "%v", err)
	}
	current := func() (pluginhost.SubscribeResult, error) {
		pos, err := s.broker.Position(ctx, channel)
		if err != nil {
			return res, rpc.Errorf(rpc.CodeInternal, "position of %q: %v", channel, err)
		}
		return pluginhost.SubscribeResult{Position: pluginhost.Position{Seq: pos.Seq, Epoch: pos.Epoch}}, nil
	}
	ss.mu.Lock()
	had := ss.subs.has(channel)
	n := ss.subs.len()
	ss.mu.Unlock()
	if had {
		return current()
	}
	if n >= s.live().Limits.MaxSubscriptions {
		return res, rpc.Errorf(rpc.CodeLimitExceeded, "connection %s holds %d subscriptions, the limit (limits.max_subscriptions)", connID, n)
	}
	var since *broker.Position
	if opts.Since != nil {
		since = &broker.Position{Seq: opts.Since.Seq, Epoch: opts.Since.Epoch}
	}
	j, err := s.hub.Subscribe(ctx, ss, channel, since)
	if errors.Is(err, hub.ErrAlreadySubscribed) {
		return current()
	}
	if err != nil {
		return res, rpc.Errorf(rpc.CodeInternal, "subscribe %s to %q: %v", connID, channel, err)
	}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		j.Cancel()
		return res, rpc.Errorf(rpc.CodeInvalidParams, "connection %s closed", connID)
	}
	ss.subs.add(channel)
	ss.mu.Unlock()
	res = pluginhost.SubscribeResult{Position: pluginhost.Position{Seq: j.Position.Seq, Epoch: j.Position.Epoch}, Recovered: since != nil && j.Recovered}
	if opts.Hold {
		res.Hold = newID()
		token := res.Hold
		hs := &heldSub{connID: connID, join: j}
		hs.timer = time.AfterFunc(s.callTimeout, func() { s.releaseHold("", token) })
		s.held.put(token, hs)
	} else {
		j.Activate()
	}
	s.metrics.subscriptions.Inc()
	c := ss.caller()
	s.plugins.Notify(pluginhost.Event{Kind: pluginhost.Subscribed, ConnID: connID, UserID: c.UserID, Claims: c.Claims, Channel: channel})
	return res, nil
}

// ReleaseHolds implements pluginhost.HeldSubscriber.
func (s *Server) ReleaseHolds(connID string, holds []string) {
	for _, h := range holds {
		s.releaseHold(connID, h)
	}
}

func (s *Server) releaseHold(connID, token string) {
	hs := s.held.take(connID, token)
	if hs == nil {
		return
	}
	hs.timer.Stop()
	hs.join.Activate() // a no-op when the connection left the channel meanwhile
}

// pluginCallHeld is pluginCall through CallHeld when the plugin host has it:
// the holds come back for the caller to release after writing the reply.
func (s *session) pluginCallHeld(method string, params json.RawMessage) ([]byte, []string, *rpc.Error) {
	hc, ok := s.srv.plugins.(heldCaller)
	if !ok {
		res, err := s.pluginCall(method, params)
		return res, nil, err
	}
	var holds []string
	res, err := s.pluginCallWith(method, params, func(ctx context.Context, plugin, m string, c pluginhost.Caller, p json.RawMessage) (json.RawMessage, error) {
		var err error
		var res json.RawMessage
		res, holds, err = hc.CallHeld(ctx, plugin, m, c, p)
		return res, err
	})
	return res, holds, err
}
