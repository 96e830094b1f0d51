package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/heraldhq/herald/core/auth"
	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/hub"
	"github.com/heraldhq/herald/core/pluginhost"
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/hostcheck"
)

// The Server is the plugin host's Core: what plugins may ask of herald.
var _ pluginhost.Core = (*Server)(nil)

// Emit implements pluginhost.Core: it publishes like the HTTP API does.
func (s *Server) Emit(ctx context.Context, plugin string, ns []pluginhost.Notification) ([]pluginhost.Published, error) {
	accepted := time.Now()
	in := make([]broker.Notification, len(ns))
	for i, n := range ns {
		if err := validChannel(n.Channel); err != nil {
			return nil, rpc.Errorf(rpc.CodeInvalidParams, "plugin %s: notification %d: %v", plugin, i, err)
		}
		if n.Channel == ServerChannel {
			return nil, rpc.Errorf(rpc.CodeInvalidParams, "plugin %s: notification %d: channel %q is Herald's own", plugin, i, n.Channel)
		}
		if n.Event == "" || n.ObjectType == "" {
			return nil, rpc.Errorf(rpc.CodeInvalidParams, "plugin %s: notification %d: event and object_type are required", plugin, i)
		}
		obj := n.Object
		if len(obj) == 0 {
			obj = json.RawMessage("null")
		} else if e := hostcheck.EmitObject(plugin, i, obj, validJSON); e != nil {
			// One JSON value in UTF-8, delivered in WebSocket text frames
			// (the check sdktest applies too).
			return nil, &rpc.Error{Code: e.Code, Message: e.Message}
		}
		in[i] = broker.Notification{Channel: n.Channel, Event: n.Event, ObjectType: n.ObjectType, ObjectName: n.ObjectName, Object: obj}
	}
	res, err := s.publishFrom(ctx, sourcePlugin, accepted, in)
	out := make([]pluginhost.Published, len(res))
	for i, r := range res {
		out[i] = pluginhost.Published{Channel: r.Channel, Seq: r.Seq, ID: r.ID}
	}
	if errors.Is(err, broker.ErrUnavailable) {
		return out, brokerError(err)
	}
	return out, err
}

func (s *Server) mustSession(connID string) (*session, error) {
	ss := s.session(connID)
	if ss == nil {
		return nil, rpc.Errorf(rpc.CodeInvalidParams, "no connection %q on this server", connID)
	}
	return ss, nil
}

// Subscribe implements pluginhost.Core: the plugin subscribes a connection
// to a channel it created; the owner is not asked again.
func (s *Server) Subscribe(ctx context.Context, connID, channel string) error {
	ss, err := s.mustSession(connID)
	if err != nil {
		return err
	}
	if err := validChannel(channel); err != nil {
		return rpc.Errorf(rpc.CodeInvalidParams, "%v", err)
	}
	ss.mu.Lock()
	had := ss.subs.has(channel)
	n := ss.subs.len()
	ss.mu.Unlock()
	if had {
		return nil
	}
	if n >= s.live().Limits.MaxSubscriptions {
		return rpc.Errorf(rpc.CodeLimitExceeded, "connection %s holds %d subscriptions, the limit (limits.max_subscriptions)", connID, n)
	}
	j, err := s.hub.Subscribe(ctx, ss, channel, nil)
	if errors.Is(err, hub.ErrAlreadySubscribed) {
		return nil
	}
	if err != nil {
		return err
	}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		j.Cancel()
		return rpc.Errorf(rpc.CodeInvalidParams, "connection %s closed", connID)
	}
	ss.subs.add(channel)
	ss.mu.Unlock()
	j.Activate()
	s.metrics.subscriptions.Inc()
	c := ss.caller()
	s.plugins.Notify(pluginhost.Event{Kind: pluginhost.Subscribed, ConnID: connID, UserID: c.UserID, Claims: c.Claims, Channel: channel})
	return nil
}

// Unsubscribe implements pluginhost.Core: with tell, the client is told
// with a $server unsubscribed naming the plugin (session.drop).
func (s *Server) Unsubscribe(ctx context.Context, plugin, connID, channel string, tell bool) error {
	ss, err := s.mustSession(connID)
	if err != nil {
		return err
	}
	if !tell {
		ss.unsubscribe([]string{channel})
		return nil
	}
	ss.drop([]string{channel}, "ended by plugin "+plugin)
	return nil
}

// PluginRemoved implements pluginhost.Core: each connection of this node
// subscribed to channels of the removed plugin's prefixes loses them and
// is told with one $server unsubscribed listing them (session.drop, which
// queues it after what was already queued for them).
func (s *Server) PluginRemoved(plugin string, prefixes []string) {
	s.endPrefixes(prefixes, removedReason(plugin))
}

// PrefixesDropped implements pluginhost.Core, as PluginRemoved with a
// reason of its own.
func (s *Server) PrefixesDropped(plugin string, prefixes []string) {
	s.endPrefixes(prefixes, "plugin "+plugin+" no longer claims the prefix of this channel after a reload")
}

// endPrefixes ends, on each connection of this node, the subscriptions to
// channels of prefixes, with one $server unsubscribed giving reason.
func (s *Server) endPrefixes(prefixes []string, reason string) {
	owned := make(map[string]bool, len(prefixes))
	for _, p := range prefixes {
		owned[p] = true
	}
	s.eachSession(func(ss *session) {
		var drop []string
		ss.mu.Lock()
		for ch := range ss.subs.all() {
			if ns := namespace(ch); ns != "" && owned[ns] {
				drop = append(drop, ch)
			}
		}
		ss.mu.Unlock()
		if len(drop) > 0 {
			sort.Strings(drop)
			ss.drop(drop, reason)
		}
	})
}

// removedReason is the reason a $server unsubscribed gives for the
// channels of a plugin that a reload removed.
func removedReason(plugin string) string { return "plugin " + plugin + " was removed from the config" }

// Presence implements pluginhost.Core.
func (s *Server) Presence(ctx context.Context, channel string) (pluginhost.PresenceInfo, error) {
	count, users, err := s.presence(ctx, channel)
	if err != nil {
		return pluginhost.PresenceInfo{}, brokerError(err)
	}
	return pluginhost.PresenceInfo{Count: count, Users: users}, nil
}

// CallClient implements pluginhost.Core.
func (s *Server) CallClient(ctx context.Context, connID, method string, params json.RawMessage) (json.RawMessage, error) {
	ss, err := s.mustSession(connID)
	if err != nil {
		return nil, err
	}
	return ss.serverCall(ctx, method, params)
}

// SubscribedTo implements pluginhost.Core.
func (s *Server) SubscribedTo(connID string, match func(channel string) bool) bool {
	ss := s.session(connID)
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for ch := range ss.subs.all() {
		if match(ch) {
			return true
		}
	}
	return false
}

// Connections implements pluginhost.Core.
func (s *Server) Connections() []pluginhost.Connection {
	s.sessionsMu.RLock()
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	s.sessionsMu.RUnlock()
	out := make([]pluginhost.Connection, 0, len(all))
	for _, ss := range all {
		ss.mu.Lock()
		if !ss.announced || ss.closed {
			ss.mu.Unlock()
			continue
		}
		c := pluginhost.Connection{ConnID: ss.id, Volatile: ss.volatile, Channels: make([]string, 0, ss.subs.len())}
		if ss.ident != nil && !ss.expired {
			c.UserID, c.Claims = ss.ident.UserID, ss.ident.Claims
		}
		for ch := range ss.subs.all() {
			c.Channels = append(c.Channels, ch)
		}
		ss.mu.Unlock()
		out = append(out, c)
	}
	return out
}

// AuthenticateHTTP implements pluginhost.Core: an API key makes a backend
// caller; a client token (query or header) makes a user caller.
func (s *Server) AuthenticateHTTP(r *http.Request) (pluginhost.Caller, error) {
	bearer := auth.BearerToken(r)
	if bearer != "" && s.apiKeys.Load().Valid(bearer) {
		return pluginhost.Caller{Backend: true}, nil
	}
	token := r.URL.Query().Get("token")
	if token == "" {
		token = bearer
	}
	if token == "" {
		if s.cfg.Auth.Anonymous {
			return pluginhost.Caller{}, nil
		}
		return pluginhost.Caller{}, rpc.Errorf(rpc.CodeUnauthenticated, "authentication required: send a token (?token= or Authorization: Bearer) or an API key")
	}
	id, err := s.tokens.Load().Verify(token)
	if err != nil {
		if token == bearer && strings.Count(bearer, ".") != 2 {
			// Not shaped as a JWT: most likely a backend's mistyped key.
			return pluginhost.Caller{}, rpc.Errorf(rpc.CodeUnauthenticated, "authentication failed: the Authorization bearer is not an API key of this server (auth.api_keys), nor a token")
		}
		return pluginhost.Caller{}, rpc.Errorf(rpc.CodeUnauthenticated, "authentication failed: %v", err)
	}
	c := pluginhost.Caller{UserID: id.UserID, Claims: id.Claims, Token: id.Token}
	if !id.ExpiresAt.IsZero() {
		c.Until = id.ExpiresAt.Add(s.live().Auth.ExpiryGrace)
	}
	return c, nil
}
