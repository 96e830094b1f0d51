package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

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
// The Create decides between concurrent calls on any nodes: one answers
// added: true.
func (c *Chat) addMember(ctx context.Context, call *sdk.Call) (any, error) {
	g, u, err := memberParams(call)
	if err != nil {
		return nil, err
	}
	key := memberKey(g, u)
	rev, err := c.st.Create(ctx, key, mustJSON(membership{Group: g, User: u}))
	added := err == nil
	if err != nil && !isConflict(err) {
		return nil, stateError("saving the membership failed: ", err)
	}
	if added {
		c.cmu.Lock()
		c.memb.put(key, rev, membership{Group: g, User: u})
		c.cmu.Unlock()
	}
	return memberResult{GroupID: jsonID(g), UserID: jsonID(u), Added: &added}, nil
}

// removeMember {group_id, user_id} ends a participation, and the user's
// subscriptions to the group's channel with it: a former participant must
// not go on reading the group. This node's connections are unsubscribed
// before the answer (and counted in it); the other nodes' chat processes
// see the deletion through their Watch and unsubscribe theirs.
func (c *Chat) removeMember(ctx context.Context, call *sdk.Call) (any, error) {
	g, u, err := memberParams(call)
	if err != nil {
		return nil, err
	}
	ch, key := prefixGroup+g, memberKey(g, u)
	// While this call unsubscribes this node's connections, the worker
	// leaves them alone (its check would race the count).
	c.mu.Lock()
	c.removing[key]++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if c.removing[key]--; c.removing[key] <= 0 {
			delete(c.removing, key)
		}
		c.mu.Unlock()
	}()
	had := false
	for {
		e, err := c.st.Get(ctx, key)
		if isNotFound(err) {
			break
		}
		if err != nil {
			return nil, stateError("reading the membership failed: ", err)
		}
		err = c.st.Delete(ctx, key, e.Revision)
		if isConflict(err) {
			continue // re-created or removed meanwhile: look again
		}
		if err != nil {
			return nil, stateError("saving the membership failed: ", err)
		}
		had = true
		c.cmu.Lock()
		c.memb.deleted(key, e.Revision, true)
		c.cmu.Unlock()
		break
	}
	if !had {
		// Gone already; a cache that still holds it learns it now.
		c.cmu.Lock()
		if r, ok := c.memb.revs[key]; ok && !r.gone {
			c.memb.deleted(key, r.rev, true)
		}
		c.cmu.Unlock()
	}
	c.mu.Lock()
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

// members {group_id} lists a group's participants, from the State itself:
// a backend that just called addMember through another node finds them.
func (c *Chat) members(ctx context.Context, call *sdk.Call) (any, error) {
	o, err := decodeObject(call.Params, "", "group_id")
	if err != nil {
		return nil, err
	}
	g, err := o.id("", "group_id")
	if err != nil {
		return nil, err
	}
	es, err := c.st.List(ctx, groupPrefix(g))
	if err != nil {
		return nil, stateError("reading the members failed: ", err)
	}
	ids := set{}
	for _, e := range es {
		var m membership
		if err := json.Unmarshal(e.Value, &m); err != nil || m.Group != g {
			continue // a bad record, or another group's that hashed alike
		}
		ids.add(m.User)
	}
	users := make([]any, 0, len(ids))
	for _, id := range sorted(ids) {
		users = append(users, jsonID(id))
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
	if string(o["changes"]) == "null" {
		// null is absent: a backend's serializer may write the form it
		// does not use as "changes": null.
		delete(o, "changes")
	}
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

	// User objects are saved before the notifications go out, so that an
	// is_online after this call carries the new object.
	var ns []sdk.Notification
	for _, ch := range changes {
		for _, channel := range c.route(ch) {
			ns = append(ns, sdk.Notification{Channel: channel, Event: ch.event, ObjectType: ch.objectType, Object: ch.object})
		}
		if ch.objectType != "user" {
			continue
		}
		var err error
		if ch.event == "deleted" {
			err = c.st.Delete(ctx, userKey(ch.key), 0)
		} else {
			_, err = c.st.Put(ctx, userKey(ch.key), ch.object)
		}
		if err != nil {
			return nil, stateError("saving the user object failed: ", err)
		}
	}
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
	if ch.objectType == "user" && len(ch.object) > sdk.MaxStateValue {
		// It is kept (for is_online) in the State, whose values are bounded.
		return ch, fieldError(join(path, "object"), "a user object may be at most %d bytes, got %d", sdk.MaxStateValue, len(ch.object))
	}
	return ch, nil
}

// route names the channels of a change.
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

// maxEnteringKeys bounds this process's map of recent entering marks (a
// cache of the entering/ keys: a miss only costs a read).
const maxEnteringKeys = 4096

// saveDraft {group_id, text} tells the group that the caller is typing, at
// most once per entering_window: one `entering` on chat:group:<group_id>,
// which every subscriber of the group's channel gets (the typist's own
// client too: it knows itself by the object's user_id). A backend names the
// typist with user_id. The answer, {entering}, says whether one went out.
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

	member, err := c.isMember(ctx, g, user)
	if err != nil {
		return nil, stateError("checking the membership failed: ", err)
	}
	if !member {
		return nil, sdk.Forbidden(fmt.Sprintf("user %s is not a participant of group %s", user, g))
	}
	// An emptied draft is not typing.
	if strings.TrimSpace(text) == "" {
		return draftResult{Entering: false}, nil
	}
	won, err := c.enteringDue(ctx, g, user)
	if err != nil {
		return nil, stateError("recording the entering mark failed: ", err)
	}
	if !won {
		return draftResult{Entering: false}, nil
	}
	obj, _ := json.Marshal(enteringRef{UserID: jsonID(user), GroupID: jsonID(g)})
	if _, err := call.Host.Emit(ctx, sdk.Notification{Channel: prefixGroup + g, Event: "entering",
		ObjectType: "draft", ObjectName: "no matter", Object: json.RawMessage(obj)}); err != nil {
		return nil, err
	}
	return draftResult{Entering: true}, nil
}

// draftResult answers saveDraft: whether an `entering` went out (false
// inside the window, or for an emptied draft).
type draftResult struct {
	Entering bool `json:"entering"`
}

// enteringDue says whether an `entering` for user in group is due now, and
// if so records it, once across every node: the mark entering/<g>/<u>
// holds the time of the last one, and of two processes that find it due at
// once only the one whose Create or Update lands emits. This process's own
// last marks spare a read inside the window.
func (c *Chat) enteringDue(ctx context.Context, group, user string) (bool, error) {
	window := c.cfg.EnteringWindow
	if window == 0 {
		return true, nil
	}
	local, now := group+"\x00"+user, c.now()
	c.mu.Lock()
	last, ok := c.entering[local]
	c.mu.Unlock()
	if ok && now.Sub(last) < window {
		return false, nil
	}
	key := enteringKey(group, user)
	var mark enteringMark
	rev, found, err := getJSON(ctx, c.st, key, &mark)
	if err != nil && !found {
		return false, err
	}
	if found && err == nil && now.Sub(time.Unix(0, mark.At)) < window {
		c.remember(local, time.Unix(0, mark.At), now)
		return false, nil
	}
	// The mark's TTL only sweeps it away after the window (a TTL is at
	// least a second); the time inside decides.
	val, ttl := mustJSON(enteringMark{At: now.UnixNano()}), sdk.WithTTL(window+time.Second)
	if found {
		_, err = c.st.Update(ctx, key, val, rev, ttl)
	} else {
		_, err = c.st.Create(ctx, key, val, ttl)
	}
	if isConflict(err) || isNotFound(err) {
		return false, nil // another process emitted just now
	}
	if err != nil {
		return false, err
	}
	c.remember(local, now, now)
	return true, nil
}

// remember notes the last entering of a (group, user) in this process's
// map, which is swept of entries older than the window when it is full.
func (c *Chat) remember(local string, at, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entering) >= maxEnteringKeys {
		for k, t := range c.entering {
			if now.Sub(t) >= c.cfg.EnteringWindow {
				delete(c.entering, k)
			}
		}
	}
	if len(c.entering) < maxEnteringKeys {
		c.entering[local] = at
	}
}
