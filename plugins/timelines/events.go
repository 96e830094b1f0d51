package main

import (
	"context"
	"strings"
	"time"

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
		// A subscription authorized just before a revoke (on any node) may
		// reach the plugin after the revoke looked for holders: it is
		// recorded first, then checked again, so either the revoke's drop
		// finds it or this check sees the grant gone.
		p.dropIfRefused(ctx, h, ev.ConnID, ev.Channel, user, claims)
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

// holders lists the connections holding channel (every grant-based
// channel when channel is "") with their identity, by connection id and
// channel.
func (p *Timelines) holders(channel string) []holder {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []holder
	for id, c := range p.conns {
		for ch := range c.subs {
			if ch == channel || channel == "" && grantBased(ch) {
				out = append(out, holder{id: id, channel: ch, user: c.user, claims: c.claims})
			}
		}
	}
	return out
}

// holder is one connection holding one channel.
type holder struct {
	id, channel string
	user        string
	claims      map[string]any
}

// release takes channel out of a connection's subscriptions and says
// whether it was there: of two drops of one subscription (a revoke and the
// watch, or a late Subscribed event) only the one that releases it
// unsubscribes. The host may or may not echo an Unsubscribed event after a
// plugin's Unsubscribe.
func (p *Timelines) release(connID, channel string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.conns[connID]
	if c == nil {
		return false
	}
	if _, ok := c.subs[channel]; !ok {
		return false
	}
	delete(c.subs, channel)
	return true
}

// restore puts back a subscription whose Unsubscribe failed, if its
// connection is still there.
func (p *Timelines) restore(connID, channel string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[connID]; c != nil {
		c.subs[channel] = struct{}{}
	}
}

// dropIfRefused checks one connection's subscription again with the
// claims it subscribed with and the grants as they stand, and unsubscribes
// it when they no longer allow it; it says whether it did. A grant that
// cannot be read (the state unavailable) drops nothing: the subscription
// stays until a check that can read the grants says otherwise.
func (p *Timelines) dropIfRefused(ctx context.Context, h sdk.Host, connID, channel, user string, claims map[string]any) bool {
	r := p.check(ctx, user, claims, channel)
	if r == nil {
		return false
	}
	if r.Code == sdk.CodeInternal || r.Code == sdk.CodePluginUnavailable {
		p.log.Warn("could not check a subscription against the grants; it stays", "conn", connID, "channel", channel, "error", r.Reason)
		return false
	}
	if !p.release(connID, channel) {
		return false // dropped by another check meanwhile, or gone
	}
	if err := h.Unsubscribe(ctx, connID, channel); err != nil {
		p.log.Warn("unsubscribing a revoked subscription failed", "conn", connID, "channel", channel, "error", err)
		p.restore(connID, channel)
		return false
	}
	return true
}

// dropRevoked drops, among this node's connections holding channel (every
// grant-based channel when ""), those that stood on a revoked grant, and
// says how many.
func (p *Timelines) dropRevoked(ctx context.Context, h sdk.Host, channel string) int {
	n := 0
	for _, c := range p.holders(channel) {
		if p.dropIfRefused(ctx, h, c.id, c.channel, c.user, c.claims) {
			n++
		}
	}
	return n
}

// startRevoke and endRevoke bracket a revoke of this process (revoking).
func (p *Timelines) startRevoke(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoking[key]++
}

func (p *Timelines) endRevoke(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.revoking[key] <= 1 {
		delete(p.revoking, key)
	} else {
		p.revoking[key]--
	}
}

func (p *Timelines) revokingHere(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.revoking[key] > 0
}

// watchRetry is how long the watch of the grants waits before it starts
// again after it failed; dropTimeout bounds one drop the watch makes.
const (
	watchRetry  = time.Second
	dropTimeout = 10 * time.Second
)

// watchGrants makes a revoke on any node drop, on this one, the
// subscriptions that stood on the grant: it watches the grants and, for
// each one deleted, checks again this node's holders of the channel it
// opened. When changes may have been missed (a Reset: also the first
// change, once the watch is in place; or the watch failed) it checks every
// grant-based subscription this node holds. Ends when ctx does.
func (p *Timelines) watchGrants(ctx context.Context, st sdk.State) {
	defer close(p.watchDone)
	recheck := func(channel string) {
		dctx, cancel := context.WithTimeout(ctx, dropTimeout)
		defer cancel()
		if n := p.dropRevoked(dctx, p.host, channel); n > 0 {
			p.log.Info("dropped subscriptions after a revoke", "channel", channel, "unsubscribed", n)
		}
	}
	for {
		err := st.Watch(ctx, grantsRoot, func(c sdk.Change) {
			switch {
			case c.Reset:
				recheck("")
			case c.Deleted:
				g, ok := grantOfKey(c.Key)
				switch {
				case !ok:
					recheck("") // a hashed EID: which channel is unknown
				case !p.revokingHere(c.Key):
					recheck(g.channel())
				}
			}
		})
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("the watch of the grants ended; it starts again and checks every grant-based subscription", "error", err, "retry_in", watchRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchRetry):
		}
	}
}

// grantBased says whether channel's authorization may rest on a backend
// grant, which a revoke can take away.
func grantBased(channel string) bool {
	kind, _, _ := strings.Cut(channel, ":")
	return kind == "message_readers" || kind == "group_admin_memberships"
}
