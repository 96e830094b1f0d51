package main

import (
	"context"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// HandleEvent keeps track of which connection holds which timelines
// channel, so that a revoke can drop the subscriptions it affects. After a
// Reset the host replays the current state.
func (p *Timelines) HandleEvent(ctx context.Context, h sdk.Host, ev sdk.Event) {
	if ev.Kind == sdk.Subscribed && grantBased(ev.Channel) {
		p.mu.Lock()
		c := p.connLocked(ev)
		c.subs[ev.Channel] = struct{}{}
		user, claims := c.user, c.claims
		p.mu.Unlock()
		// A subscription authorized just before a revoke may reach the
		// plugin after the revoke looked for holders: check it again.
		if p.check(user, claims, ev.Channel) != nil {
			if err := h.Unsubscribe(ctx, ev.ConnID, ev.Channel); err != nil {
				p.log.Warn("unsubscribing a revoked subscription failed", "conn", ev.ConnID, "channel", ev.Channel, "error", err)
				return
			}
			p.forget(ev.ConnID, ev.Channel)
		}
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Kind {
	case sdk.Reset:
		p.conns = map[string]*conn{}
	case sdk.Connected:
		p.connLocked(ev)
	case sdk.Subscribed:
		p.connLocked(ev).subs[ev.Channel] = struct{}{}
	case sdk.Unsubscribed:
		if c := p.conns[ev.ConnID]; c != nil {
			delete(c.subs, ev.Channel)
		}
	case sdk.Disconnected:
		delete(p.conns, ev.ConnID)
	}
}

// connLocked returns the connection of ev, known or new; p.mu is held. A
// connection keeps the identity it was first seen with: after its token
// expires, events carry none, while its subscriptions stand on the token
// they were checked with.
func (p *Timelines) connLocked(ev sdk.Event) *conn {
	c := p.conns[ev.ConnID]
	if c == nil {
		c = &conn{subs: map[string]struct{}{}}
		p.conns[ev.ConnID] = c
	}
	if c.user == "" && ev.UserID != "" {
		c.user, c.claims = ev.UserID, ev.Claims
	}
	return c
}

// holders lists the connections holding channel with their identity.
func (p *Timelines) holders(channel string) map[string]*conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]*conn{}
	for id, c := range p.conns {
		if _, ok := c.subs[channel]; ok {
			out[id] = &conn{user: c.user, claims: c.claims}
		}
	}
	return out
}

// forget removes channel from a connection's subscriptions (the host may or
// may not echo an Unsubscribed event after a plugin's Unsubscribe).
func (p *Timelines) forget(connID, channel string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[connID]; c != nil {
		delete(c.subs, channel)
	}
}

// grantBased says whether channel's authorization may rest on a backend
// grant, which a revoke can take away.
func grantBased(channel string) bool {
	kind, _, _ := strings.Cut(channel, ":")
	return kind == "message_readers" || kind == "group_admin_memberships"
}
