package main

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/heraldhq/herald/sdk"
)

// Presence. A user is online while they have at least one connection (tabs
// count once). On the first connection the participants of the user's
// groups get is_online, on the last close is_offline; each on their own
// chat:user:<id> channel, and only those who listen there (see README).
//
// After a Reset the host replays the connections it holds. The plugin
// rebuilds its view from the replay without announcing anything, then
// compares it with the users it had last announced online (kept in the
// store, so a killed plugin remembers them): whoever left meanwhile gets
// is_offline, whoever came gets is_online, and the others nothing.

// HandleEvent implements sdk.EventHandler.
func (c *Chat) HandleEvent(ctx context.Context, _ sdk.Host, ev sdk.Event) {
	c.presMu.Lock()
	defer c.presMu.Unlock()
	if c.closed {
		return
	}
	if ev.Kind == sdk.Reset {
		c.mu.Lock()
		c.conns, c.byUser, c.listeners = map[string]*conn{}, map[string]set{}, map[string]int{}
		c.mu.Unlock()
		c.resyncing = true
		c.armSettle()
		return
	}
	var out []sdk.Notification
	if c.resyncing && !ev.Replay {
		out = c.finishResync()
	}
	out = append(out, c.apply(ev, !c.resyncing)...)
	if c.resyncing {
		c.armSettle()
	}
	c.emit(ctx, out)
}

// armSettle (re)starts the timer that ends a replay; presMu is held.
func (c *Chat) armSettle() {
	if c.settleT != nil {
		c.settleT.Stop()
	}
	c.resyncGen++
	gen := c.resyncGen
	c.settleT = time.AfterFunc(c.settle, func() { c.settled(gen) })
}

func (c *Chat) settled(gen int) {
	c.presMu.Lock()
	defer c.presMu.Unlock()
	if c.closed || !c.resyncing || gen != c.resyncGen {
		return
	}
	out := c.finishResync()
	ctx, cancel := context.WithTimeout(context.Background(), emitTimeout)
	defer cancel()
	c.emit(ctx, out)
}

// finishResync ends a replay: it announces the difference between the users
// last announced online and those the replay showed; presMu is held.
func (c *Chat) finishResync() []sdk.Notification {
	c.resyncing = false
	if c.settleT != nil {
		c.settleT.Stop()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []sdk.Notification
	now := map[string]json.RawMessage{}
	for _, u := range sortedKeys(c.online) {
		if _, still := c.byUser[u]; still {
			now[u] = c.online[u]
			continue
		}
		out = append(out, c.presenceLocked(u, "is_offline", c.offlineObject(u))...)
	}
	for _, u := range sorted(keysOf(c.byUser)) {
		if _, was := c.online[u]; was {
			continue
		}
		obj := c.userObject(u, c.someNick(u))
		now[u] = obj
		out = append(out, c.presenceLocked(u, "is_online", obj)...)
	}
	c.online = now
	m := make(map[string][]byte, len(now))
	for k, v := range now {
		m[k] = v
	}
	if err := c.store.replace(bucketOnline, m); err != nil {
		c.log.Error("saving presence failed", "error", err)
	}
	return out
}

// apply updates the view of connections with ev and, when announce is set,
// returns the presence notifications it causes; presMu is held.
func (c *Chat) apply(ev sdk.Event, announce bool) []sdk.Notification {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Kind {
	case sdk.Connected:
		if ev.UserID == "" || !validID(ev.UserID) {
			return nil // anonymous users have no presence
		}
		if _, known := c.conns[ev.ConnID]; known {
			return nil
		}
		nick, _ := ev.Claims["nick"].(string)
		c.conns[ev.ConnID] = &conn{user: ev.UserID, nick: nick, subs: set{}}
		if c.byUser[ev.UserID] == nil {
			c.byUser[ev.UserID] = set{}
		}
		c.byUser[ev.UserID].add(ev.ConnID)
		if _, was := c.online[ev.UserID]; !announce || was {
			return nil
		}
		obj := c.userObject(ev.UserID, nick)
		c.online[ev.UserID] = obj
		if err := c.store.put(bucketOnline, ev.UserID, obj); err != nil {
			c.log.Error("saving presence failed", "error", err)
		}
		return c.presenceLocked(ev.UserID, "is_online", obj)

	case sdk.Disconnected:
		cn := c.conns[ev.ConnID]
		if cn == nil {
			return nil
		}
		for ch := range cn.subs {
			c.unlisten(ch)
		}
		delete(c.conns, ev.ConnID)
		delete(c.byUser[cn.user], ev.ConnID)
		if len(c.byUser[cn.user]) > 0 {
			return nil
		}
		delete(c.byUser, cn.user)
		if _, was := c.online[cn.user]; !announce || !was {
			return nil
		}
		obj := c.offlineObject(cn.user)
		delete(c.online, cn.user)
		if err := c.store.put(bucketOnline, cn.user, nil); err != nil {
			c.log.Error("saving presence failed", "error", err)
		}
		return c.presenceLocked(cn.user, "is_offline", obj)

	case sdk.Subscribed:
		if cn := c.conns[ev.ConnID]; cn != nil && cn.subs.add(ev.Channel) {
			if u, ok := strings.CutPrefix(ev.Channel, prefixUser); ok {
				c.listeners[u]++
			}
		}
	case sdk.Unsubscribed:
		if cn := c.conns[ev.ConnID]; cn != nil {
			if _, ok := cn.subs[ev.Channel]; ok {
				delete(cn.subs, ev.Channel)
				c.unlisten(ev.Channel)
			}
		}
	}
	return nil
}

func (c *Chat) unlisten(ch string) {
	if u, ok := strings.CutPrefix(ch, prefixUser); ok {
		if c.listeners[u]--; c.listeners[u] <= 0 {
			delete(c.listeners, u)
		}
	}
}

// presenceLocked builds event (is_online or is_offline) about user for each
// co-participant who listens on their chat:user channel; c.mu is held.
func (c *Chat) presenceLocked(user, event string, obj json.RawMessage) []sdk.Notification {
	var out []sdk.Notification
	for _, m := range c.coParticipants(user) {
		if c.listeners[m] == 0 {
			continue
		}
		out = append(out, sdk.Notification{Channel: prefixUser + m, Event: event,
			ObjectType: "user", ObjectName: "user", Object: obj})
	}
	return out
}

// userRef is the user object built when no backend reported one.
type userRef struct {
	ID   any    `json:"id"`
	Nick string `json:"nick,omitempty"`
}

// userObject is the object of is_online: the user object a backend last
// reported through objectChanged, verbatim, or else {id, nick} with the
// nick from the token's "nick" claim (omitted without one); c.mu is held.
func (c *Chat) userObject(user, nick string) json.RawMessage {
	if obj, ok := c.users[user]; ok {
		return obj
	}
	b, _ := json.Marshal(userRef{ID: jsonID(user), Nick: nick})
	return b
}

// offlineObject is the object of is_offline: the reported user object if
// any, else the one is_online announced; c.mu is held.
func (c *Chat) offlineObject(user string) json.RawMessage {
	if obj, ok := c.users[user]; ok {
		return obj
	}
	if obj, ok := c.online[user]; ok {
		return obj
	}
	return c.userObject(user, "")
}

// someNick is the nick claim of the user's first connection (by id).
func (c *Chat) someNick(user string) string {
	for _, id := range sorted(c.byUser[user]) {
		if n := c.conns[id].nick; n != "" {
			return n
		}
	}
	return ""
}

func sorted(s set) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func keysOf[V any](m map[string]V) set {
	s := make(set, len(m))
	for k := range m {
		s[k] = struct{}{}
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string { return sorted(keysOf(m)) }
