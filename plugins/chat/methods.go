package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// memberResult answers addMember and removeMember.
type memberResult struct {
	GroupID      any   `json:"group_id"`
	UserID       any   `json:"user_id"`
	Added        *bool `json:"added,omitempty"`
	Removed      *bool `json:"removed,omitempty"`
	Unsubscribed *int  `json:"unsubscribed,omitempty"`
}

func memberParams(call *sdk.Call) (group, user string, err error) {
	o, err := decodeObject(call.Params, "", "group_id", "user_id")
	if err != nil {
		return "", "", err
	}
	if group, err = o.id("", "group_id"); err != nil {
		return "", "", err
	}
	if user, err = o.id("", "user_id"); err != nil {
		return "", "", err
	}
	return group, user, nil
}

// addMember {group_id, user_id} makes the user a participant of the group.
func (c *Chat) addMember(_ context.Context, call *sdk.Call) (any, error) {
	g, u, err := memberParams(call)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, had := c.groups[g][u]
	if !had {
		if err := c.store.setMember(g, u, true); err != nil {
			return nil, sdk.Internal("saving the membership failed: " + err.Error())
		}
		c.addMemberLocked(g, u)
	}
	added := !had
	return memberResult{GroupID: jsonID(g), UserID: jsonID(u), Added: &added}, nil
}

// removeMember {group_id, user_id} ends a participation, and the user's
// subscriptions to the group's channel with it: a former participant must
// not go on reading the group.
func (c *Chat) removeMember(ctx context.Context, call *sdk.Call) (any, error) {
	g, u, err := memberParams(call)
	if err != nil {
		return nil, err
	}
	ch := prefixGroup + g
	c.mu.Lock()
	_, had := c.groups[g][u]
	if had {
		if err := c.store.setMember(g, u, false); err != nil {
			c.mu.Unlock()
			return nil, sdk.Internal("saving the membership failed: " + err.Error())
		}
		c.removeMemberLocked(g, u)
	}
	var subscribed []string
	for id := range c.byUser[u] {
		if _, ok := c.conns[id].subs[ch]; ok {
			subscribed = append(subscribed, id)
		}
	}
	c.mu.Unlock()
	n := 0
	for _, id := range subscribed {
		if err := call.Host.Unsubscribe(ctx, id, ch); err != nil {
			c.log.Warn("unsubscribing a removed participant failed", "conn", id, "channel", ch, "error", err)
			continue
		}
		// The host may or may not echo an Unsubscribed event; forget it now.
		c.mu.Lock()
		if cn := c.conns[id]; cn != nil {
			delete(cn.subs, ch)
		}
		c.mu.Unlock()
		n++
	}
	return memberResult{GroupID: jsonID(g), UserID: jsonID(u), Removed: &had, Unsubscribed: &n}, nil
}

// members {group_id} lists a group's participants.
func (c *Chat) members(_ context.Context, call *sdk.Call) (any, error) {
	o, err := decodeObject(call.Params, "", "group_id")
	if err != nil {
		return nil, err
	}
	g, err := o.id("", "group_id")
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	ids := sorted(c.groups[g])
	c.mu.Unlock()
	users := make([]any, len(ids))
	for i, id := range ids {
		users[i] = jsonID(id)
	}
	return map[string]any{"group_id": jsonID(g), "user_ids": users}, nil
}

// change is one validated objectChanged entry.
type change struct {
	event, objectType string
	object            json.RawMessage // compacted, otherwise as given
	key               string          // the id that routes it (see route)
}

const maxChanges = 1000

var (
	changeEvents = []string{"new", "changed", "deleted"}
	// routeKey is, per object_type, the object's field that routes it.
	routeKey    = map[string]string{"message": "group_id", "group": "id", "subscription": "user_id", "user": "id"}
	objectTypes = []string{"message", "group", "subscription", "user"}
)

// objectChanged {event, object_type, object} or {changes: [...]} reports
// object changes; they go out in the order given, in one emit, so a client
// gets them oldest first in one batch.
func (c *Chat) objectChanged(ctx context.Context, call *sdk.Call) (any, error) {
	o, err := decodeObject(call.Params, "", "event", "object_type", "object", "changes")
	if err != nil {
		return nil, err
	}
	var changes []change
	if raw, ok := o["changes"]; ok {
		for k := range o {
			if k != "changes" {
				return nil, fieldError(k, "give either changes or one change (event, object_type, object), not both")
			}
		}
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil || len(list) == 0 {
			return nil, fieldError("changes", "must be a non-empty array of {event, object_type, object}")
		}
		if len(list) > maxChanges {
			return nil, fieldError("changes", "at most %d changes per call, got %d", maxChanges, len(list))
		}
		for i, raw := range list {
			path := fmt.Sprintf("changes[%d]", i)
			co, err := decodeObject(raw, path, "event", "object_type", "object")
			if err != nil {
				return nil, err
			}
			ch, err := parseChange(co, path)
			if err != nil {
				return nil, err
			}
			changes = append(changes, ch)
		}
	} else {
		ch, err := parseChange(o, "")
		if err != nil {
			return nil, err
		}
		changes = []change{ch}
	}

	c.mu.Lock()
	var ns []sdk.Notification
	for _, ch := range changes {
		for _, channel := range c.route(ch) {
			ns = append(ns, sdk.Notification{Channel: channel, Event: ch.event, ObjectType: ch.objectType, Object: ch.object})
		}
		if ch.objectType == "user" {
			var v []byte
			if ch.event != "deleted" {
				v = ch.object
			}
			if err := c.store.put(bucketUsers, ch.key, v); err != nil {
				c.mu.Unlock()
				return nil, sdk.Internal("saving the user object failed: " + err.Error())
			}
			if v == nil {
				delete(c.users, ch.key)
			} else {
				c.users[ch.key] = v
			}
		}
	}
	c.mu.Unlock()
	pubs, err := call.Host.Emit(ctx, ns...)
	if err != nil {
		return nil, err
	}
	// The same shape, in the same order, as POST /v1/publish answers.
	type result struct {
		Channel string `json:"channel"`
		Seq     uint64 `json:"seq"`
		ID      string `json:"id"`
	}
	results := make([]result, len(pubs))
	for i, p := range pubs {
		results[i] = result{p.Channel, p.Seq, p.ID}
	}
	return map[string]any{"results": results}, nil
}

func parseChange(o object, path string) (change, error) {
	var ch change
	var err error
	if ch.event, err = o.str(path, "event"); err != nil {
		return ch, err
	}
	if !contains(changeEvents, ch.event) {
		return ch, fieldError(join(path, "event"), "must be one of %s, got %q", strings.Join(changeEvents, ", "), ch.event)
	}
	if ch.objectType, err = o.str(path, "object_type"); err != nil {
		return ch, err
	}
	key, ok := routeKey[ch.objectType]
	if !ok {
		return ch, fieldError(join(path, "object_type"), "must be one of %s, got %q", strings.Join(objectTypes, ", "), ch.objectType)
	}
	raw, ok := o["object"]
	if !ok {
		return ch, fieldError(join(path, "object"), "is required")
	}
	obj, err := decodeObject(raw, join(path, "object"))
	if err != nil {
		return ch, err
	}
	if ch.key, err = obj.id(join(path, "object"), key); err != nil {
		return ch, err
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, raw) // valid: decodeObject parsed it
	ch.object = buf.Bytes()
	return ch, nil
}

// route names the channels of a change; c.mu is held.
//
//   - message: the group's channel (object.group_id);
//   - group: the group's channel (object.id);
//   - subscription: its user's channel (object.user_id): a subscription is
//     one user's participation (draft, unread counters), nobody else's;
//   - user: the user's own channel and that of each participant who shares
//     a group with them, so that nicks and avatars stay current everywhere.
func (c *Chat) route(ch change) []string {
	switch ch.objectType {
	case "message", "group":
		return []string{prefixGroup + ch.key}
	case "subscription":
		return []string{prefixUser + ch.key}
	}
	out := []string{prefixUser + ch.key}
	for _, m := range c.coParticipants(ch.key) {
		out = append(out, prefixUser+m)
	}
	return out
}

// enteringRef is the object of `entering`, in the source's field order.
type enteringRef struct {
	UserID  any `json:"user_id"`
	GroupID any `json:"group_id"`
}

// maxEnteringKeys bounds the debounce map before it is swept of entries
// older than the window (it can only hold current memberships anyway).
const maxEnteringKeys = 4096

// saveDraft {group_id, text} tells the group's other participants that the
// caller is typing, at most once per entering_window. A backend names the
// typist with user_id.
func (c *Chat) saveDraft(ctx context.Context, call *sdk.Call) (any, error) {
	o, err := decodeObject(call.Params, "", "group_id", "text", "user_id")
	if err != nil {
		return nil, err
	}
	g, err := o.id("", "group_id")
	if err != nil {
		return nil, err
	}
	text, err := o.str("", "text")
	if err != nil {
		return nil, err
	}
	user := call.Caller.UserID
	if call.Caller.Backend {
		if user, err = o.id("", "user_id"); err != nil {
			return nil, err
		}
	} else if _, ok := o["user_id"]; ok {
		return nil, fieldError("user_id", "only a backend may name the typist; a client types as the user of its token")
	} else if user == "" {
		return nil, sdk.Unauthenticated("chat.saveDraft needs a signed-in user")
	}

	c.mu.Lock()
	if _, ok := c.groups[g][user]; !ok {
		c.mu.Unlock()
		return nil, sdk.Forbidden(fmt.Sprintf("user %s is not a participant of group %s", user, g))
	}
	// An emptied draft is not typing.
	if strings.TrimSpace(text) == "" {
		c.mu.Unlock()
		return map[string]any{"entering": false, "notified": 0}, nil
	}
	key, now := g+"\x00"+user, c.now()
	if last, ok := c.entering[key]; ok && c.cfg.EnteringWindow > 0 && now.Sub(last) < c.cfg.EnteringWindow {
		c.mu.Unlock()
		return map[string]any{"entering": false, "notified": 0}, nil
	}
	if len(c.entering) >= maxEnteringKeys {
		for k, t := range c.entering {
			if now.Sub(t) >= c.cfg.EnteringWindow {
				delete(c.entering, k)
			}
		}
	}
	c.entering[key] = now
	obj, _ := json.Marshal(enteringRef{UserID: jsonID(user), GroupID: jsonID(g)})
	var ns []sdk.Notification
	for _, m := range sorted(c.groups[g]) {
		if m == user || c.listeners[m] == 0 {
			continue
		}
		ns = append(ns, sdk.Notification{Channel: prefixUser + m, Event: "entering",
			ObjectType: "draft", ObjectName: "no matter", Object: json.RawMessage(obj)})
	}
	c.mu.Unlock()
	if _, err := call.Host.Emit(ctx, ns...); err != nil {
		return nil, err
	}
	return map[string]any{"entering": true, "notified": len(ns)}, nil
}
