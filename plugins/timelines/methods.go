package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/heraldhq/herald/sdk"
)

// Backend methods (POST /v1/plugins/timelines/<method>). Bodies are checked
// strictly: an unknown key, a missing key or a value of the wrong kind is an
// InvalidParams error (HTTP 400) whose message and data name the field, and
// nothing of the request is applied or delivered.

// paramError is the InvalidParams error for one field of the body.
func paramError(field string, data map[string]string, format string, args ...any) error {
	if data == nil {
		data = map[string]string{}
	}
	data["field"] = field
	return sdk.InvalidParams("params."+field+": "+fmt.Sprintf(format, args...), data)
}

// params decodes the body, a JSON object whose keys are all in allowed.
func params(raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, sdk.InvalidParams("params: must be a JSON object", nil)
	}
	o, ferr := members(raw)
	if ferr != nil {
		if ferr.field == "" {
			return nil, sdk.InvalidParams("params: "+ferr.reason, nil)
		}
		return nil, paramError(ferr.field, nil, "%s", ferr.reason)
	}
	var unknown []string
	for k := range o {
		if !contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, paramError(unknown[0], nil, "unknown field (allowed: %s)", strings.Join(allowed, ", "))
	}
	return o, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// emit {channel, payload} or {channels: [...], payload} delivers the
// payload, verbatim, to each channel in one publish, after checking it
// against each channel's table.
func (p *Timelines) emit(ctx context.Context, call *sdk.Call) (any, error) {
	o, err := params(call.Params, "channel", "channels", "payload")
	if err != nil {
		return nil, err
	}
	var names []string
	field := func(i int) string { return fmt.Sprintf("channels[%d]", i) }
	// null is absent: a backend's serializer may write the form it does
	// not use as "channels": null.
	for _, k := range []string{"channel", "channels"} {
		if string(o[k]) == "null" {
			delete(o, k)
		}
	}
	switch rawOne, rawMany := o["channel"], o["channels"]; {
	case rawOne != nil && rawMany != nil:
		return nil, paramError("channels", nil, "give either channel or channels, not both")
	case rawOne != nil:
		s, ok := str(rawOne)
		if !ok {
			return nil, paramError("channel", nil, "must be a string, got %s", clip(rawOne))
		}
		names = []string{s}
		field = func(int) string { return "channel" }
	case rawMany != nil:
		if err := json.Unmarshal(rawMany, &names); err != nil || len(names) == 0 {
			return nil, paramError("channels", nil, "must be a non-empty array of channel names")
		}
		if len(names) > p.cfg.MaxEmitChannels {
			return nil, paramError("channels", nil, "at most %d channels per emit (max_emit_channels), got %d", p.cfg.MaxEmitChannels, len(names))
		}
	default:
		return nil, paramError("channel", nil, "is required (or channels, a list)")
	}
	payload, ok := o["payload"]
	if !ok {
		return nil, paramError("payload", nil, "is required")
	}

	ns := make([]sdk.Notification, 0, len(names))
	seen := map[string]bool{}
	for i, name := range names {
		ch, err := parseChannel(name)
		if err != nil {
			return nil, paramError(field(i), map[string]string{"channel": name}, "%v", err)
		}
		if seen[name] {
			return nil, paramError(field(i), map[string]string{"channel": name}, "%s is listed twice", name)
		}
		seen[name] = true
		ev, ferr := validate(ch.kind.name, payload)
		if ferr != nil {
			f := "payload"
			if ferr.field != "" {
				f += "." + ferr.field
			}
			return nil, paramError(f, map[string]string{"channel": name}, "%s, on channel %s", ferr.reason, name)
		}
		ns = append(ns, sdk.Notification{Channel: name, Event: ev, ObjectType: ch.kind.name, Object: payload})
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
	for i, pub := range pubs {
		results[i] = result{pub.Channel, pub.Seq, pub.ID}
	}
	return map[string]any{"results": results}, nil
}

// grantParams reads {network, user, message, permission: "view_readers"} or
// {network, user, group, role: "admin"}.
func grantParams(raw json.RawMessage) (grant, error) {
	o, err := params(raw, "network", "user", "message", "permission", "group", "role")
	if err != nil {
		return grant{}, err
	}
	var g grant
	eidField := func(k string) (string, error) {
		v, ok := o[k]
		if !ok {
			return "", paramError(k, nil, "is required")
		}
		s, ok := str(v)
		if !ok || !validEID(s) {
			return "", paramError(k, nil, "must be %s, got %s", eid.name, clip(v))
		}
		return s, nil
	}
	if g.Network, err = eidField("network"); err != nil {
		return g, err
	}
	if g.User, err = eidField("user"); err != nil {
		return g, err
	}
	_, perm := o["permission"]
	_, role := o["role"]
	switch {
	case perm && role:
		return g, paramError("role", nil, "give either permission (with message) or role (with group), not both")
	case perm:
		if _, ok := o["group"]; ok {
			return g, paramError("group", nil, "a permission is granted on a message: give message, not group")
		}
		if v, _ := str(o["permission"]); v != rightViewReaders {
			return g, paramError("permission", nil, "must be %q, got %s", rightViewReaders, clip(o["permission"]))
		}
		g.Right = rightViewReaders
		g.Object, err = eidField("message")
	case role:
		if _, ok := o["message"]; ok {
			return g, paramError("message", nil, "a role is granted in a group: give group, not message")
		}
		if v, _ := str(o["role"]); v != rightAdmin {
			return g, paramError("role", nil, "must be %q, got %s", rightAdmin, clip(o["role"]))
		}
		g.Right = rightAdmin
		g.Object, err = eidField("group")
	default:
		return g, paramError("permission", nil, `is required: {"permission": "view_readers", "message": ...} or {"role": "admin", "group": ...}`)
	}
	return g, err
}

// grantResult answers grant and revoke.
type grantResult struct {
	Network      string `json:"network"`
	User         string `json:"user"`
	Message      string `json:"message,omitempty"`
	Permission   string `json:"permission,omitempty"`
	Group        string `json:"group,omitempty"`
	Role         string `json:"role,omitempty"`
	Granted      *bool  `json:"granted,omitempty"`
	Revoked      *bool  `json:"revoked,omitempty"`
	Unsubscribed *int   `json:"unsubscribed,omitempty"`
}

func resultOf(g grant) grantResult {
	r := grantResult{Network: g.Network, User: g.User}
	if g.Right == rightViewReaders {
		r.Message, r.Permission = g.Object, g.Right
	} else {
		r.Group, r.Role = g.Object, g.Right
	}
	return r
}

// grant records a view_readers permission on a message or the admin role
// of a group; granted says whether it is new.
func (p *Timelines) grant(ctx context.Context, call *sdk.Call) (any, error) {
	g, err := grantParams(call.Params)
	if err != nil {
		return nil, err
	}
	changed, err := p.grants.Set(ctx, g, true)
	if err != nil {
		return nil, stateError(err)
	}
	r := resultOf(g)
	r.Granted = &changed
	return r, nil
}

// revoke removes a grant and drops the live subscriptions that stood on it:
// each connection of this node holding the channel the grant opened
// (message_readers or group_admin_memberships) is checked again with the
// claims it subscribed with, and unsubscribed unless its token alone still
// allows it; unsubscribed counts them. The other nodes do the same with
// their connections when their watch of the grants sees the deletion.
func (p *Timelines) revoke(ctx context.Context, call *sdk.Call) (any, error) {
	g, err := grantParams(call.Params)
	if err != nil {
		return nil, err
	}
	// The watch leaves this deletion to this call, which counts what it
	// drops; a subscription recorded after the drop is checked by its
	// Subscribed event.
	p.startRevoke(g.key())
	defer p.endRevoke(g.key())
	revoked, err := p.grants.Set(ctx, g, false)
	if err != nil {
		return nil, stateError(err)
	}
	n := p.dropRevoked(ctx, call.Host, g.channel())
	r := resultOf(g)
	r.Revoked, r.Unsubscribed = &revoked, &n
	return r, nil
}

// stateError answers a grant or revoke whose state write failed: a coded
// error as is (the plugin stopping); -32050, "retry later" (HTTP 503), when
// the state cannot be reached (in a cluster, NATS); else an internal error
// that says what failed.
func stateError(err error) error {
	var e *sdk.Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, sdk.ErrStateUnavailable) {
		return sdk.Errorf(sdk.CodePluginUnavailable, "%v: retry later", err)
	}
	return sdk.Internal(err.Error())
}
