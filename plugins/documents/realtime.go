package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/heraldhq/herald/plugins/documents/filter"
	"github.com/heraldhq/herald/sdk"
)

// The realtime API: rooms, their channels, and who is in them.

// since resumes a channel received from an earlier subscribe or join.
type since struct {
	Channel string `json:"channel"`
	Seq     uint64 `json:"seq"`
	Epoch   string `json:"epoch"`
}

// options are subscribe's and join's notification options.
type options struct {
	Scope    *string         `json:"scope"`
	State    *string         `json:"state"`
	Users    *string         `json:"users"`
	Volatile json.RawMessage `json:"volatile"`
	Since    *since          `json:"since"`
}

type subscribeParams struct {
	where
	Body json.RawMessage `json:"body"`
	options
}

type joinParams struct {
	RoomID string          `json:"roomId"`
	Body   json.RawMessage `json:"body"`
	options
}

// roomInBody reads Kuzzle's form of join, unsubscribe and count, whose
// roomId travels in the body: {"body": {"roomId": "..."}}.
func roomInBody(id string, body json.RawMessage) (string, error) {
	if len(body) == 0 || string(body) == "null" {
		return id, nil
	}
	var b struct {
		RoomID string `json:"roomId"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.RoomID == "" {
		return "", badParam("body", "must be {\"roomId\": \"...\"} (Kuzzle's form), or give roomId at the top")
	}
	if id != "" && id != b.RoomID {
		return "", badParam("roomId", "differs from body.roomId")
	}
	return b.RoomID, nil
}

// choice checks an option against its accepted values.
func choice(field string, v *string, def string, allowed ...string) (string, error) {
	if v == nil {
		return def, nil
	}
	if slices.Contains(allowed, *v) {
		return *v, nil
	}
	return "", badParam(field, "must be one of %v, got %q", allowed, *v)
}

type checkedOptions struct {
	scope, state, users string
	volatile            json.RawMessage
	since               *since
}

func (o *options) check() (checkedOptions, error) {
	var c checkedOptions
	var err error
	if c.scope, err = choice("scope", o.Scope, "all", "all", "in", "out", "none"); err != nil {
		return c, err
	}
	if c.state, err = choice("state", o.State, "done", "all", "pending", "done"); err != nil {
		return c, err
	}
	if c.users, err = choice("users", o.Users, "none", "all", "in", "out", "none"); err != nil {
		return c, err
	}
	if c.volatile, err = volatileOf(o.Volatile); err != nil {
		return c, err
	}
	if o.Since != nil && o.Since.Channel == "" {
		return c, badParam("since.channel", "is required: the channel of the earlier answer")
	}
	c.since = o.Since
	return c, nil
}

// filterError is a bad filter as -32602, naming the offending clause.
func filterError(err error) error {
	var pe *filter.ParseError
	if errors.As(err, &pe) {
		field := "body"
		if pe.Path != "" {
			field += "." + pe.Path
		}
		return sdk.InvalidParams(fmt.Sprintf("params.%s: %s", field, pe.Msg), map[string]string{"field": field})
	}
	if errors.Is(err, filter.ErrTooComplex) {
		return sdk.InvalidParams("params.body: "+err.Error(), map[string]string{"field": "body"})
	}
	return sdk.InvalidParams("params.body: "+err.Error(), map[string]string{"field": "body"})
}

func roomNotFound(id string) error {
	return sdk.InvalidParams(fmt.Sprintf("room %q not found (it has no subscriber left, or never existed)", id), map[string]any{"status": 404, "roomId": id})
}

func noHTTP(action string) error {
	return sdk.InvalidParams(fmt.Sprintf("documents.%s needs a WebSocket connection: HTTP cannot receive notifications", action), map[string]any{"status": 400})
}

func (d *Documents) subscribe(ctx context.Context, c *sdk.Call) (any, error) {
	if c.Caller.Backend || c.Caller.ConnID == "" {
		return nil, noHTTP("subscribe")
	}
	var p subscribeParams
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	if err := p.where.check(); err != nil {
		return nil, err
	}
	opts, err := p.options.check()
	if err != nil {
		return nil, err
	}
	body, err := filterBody(p.Body)
	if err != nil {
		return nil, err
	}
	n, err := filter.Normalize(body, filter.Options{})
	if err != nil {
		return nil, filterError(err)
	}
	id := roomID(p.Index, p.Collection, n.ID)
	spec := &roomRecord{ID: id, Index: p.Index, Collection: p.Collection, Filter: append(json.RawMessage(nil), body...)}
	return d.enter(ctx, c, id, spec, opts)
}

func (d *Documents) join(ctx context.Context, c *sdk.Call) (any, error) {
	if c.Caller.Backend || c.Caller.ConnID == "" {
		return nil, noHTTP("join")
	}
	var p joinParams
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	var err error
	if p.RoomID, err = roomInBody(p.RoomID, p.Body); err != nil {
		return nil, err
	}
	if p.RoomID == "" {
		return nil, badParam("roomId", "is required")
	}
	opts, err := p.options.check()
	if err != nil {
		return nil, err
	}
	return d.enter(ctx, c, p.RoomID, nil, opts)
}

// enter subscribes the caller to the channel of room id for o; spec, from
// subscribe, lets it create the room (join's room must exist). The member
// record naming the channel is written before the room is read fresh and
// the channel made live in it (rooms.go says why). The subscription is held
// until the reply is written, so the answer naming the channel reaches the
// client before the channel's first notification (its own "in" user
// notification included).
func (d *Documents) enter(ctx context.Context, c *sdk.Call, id string, spec *roomRecord, o checkedOptions) (any, error) {
	conn := c.Caller.ConnID
	d.mu.RLock()
	closed := d.closed
	r := d.rooms[id]
	var gen uint64
	if r != nil {
		gen = r.generation
	}
	d.mu.RUnlock()
	if closed {
		return nil, sdk.Errorf(sdk.CodePluginUnavailable, "the documents plugin is stopping")
	}
	if r == nil {
		// Not in this process's cache: created on another node a moment
		// ago, or not at all.
		rec, _, err := d.getRoom(ctx, id)
		switch {
		case err == nil:
			gen = rec.Generation
		case !errors.Is(err, sdk.ErrNotFound):
			return nil, sdk.Internal(err.Error())
		case spec == nil:
			return nil, roomNotFound(id)
		default:
			gen = newGeneration()
		}
	}
	var name string
	var joined bool
	err := func() error {
		defer d.memberLock(id, conn)()
		for range maxAttempts {
			name = channelName(id, gen, o.scope, o.state, o.users)
			if err := d.writeMember(ctx, id, conn, name, o.volatile); err != nil {
				return sdk.Internal(err.Error())
			}
			rec, rev, err := d.ensureChannel(ctx, id, gen, spec, o)
			if errors.Is(err, errRoomGone) {
				return roomNotFound(id)
			}
			if err != nil {
				return sdk.AsError(err) // max_rooms keeps its code
			}
			if rec.Generation != gen {
				gen = rec.Generation // made again meanwhile: name its channel again
				continue
			}
			now := d.now()
			d.mu.Lock()
			delete(d.roomTomb, id)
			d.applyRoom(rec, rev, now)
			ch := d.channels[name]
			if ch != nil {
				joined = d.addSub(conn, ch, o.volatile)
			}
			d.mu.Unlock()
			if ch != nil {
				return nil
			}
		}
		return sdk.Internal(fmt.Sprintf("room %s: other nodes kept changing it; try again", id))
	}()
	if err == nil {
		// The record written above named the channel before this
		// process's memory did; write it as memory has it now.
		err = d.flushMember(ctx, id, conn)
		if err != nil {
			err = sdk.Internal(err.Error())
		}
	}
	fail := func(err error) (any, error) {
		d.mu.Lock()
		if ch := d.channels[name]; ch != nil {
			d.removeSub(conn, ch, d.now())
		}
		d.mu.Unlock()
		if ferr := d.flushMember(ctx, id, conn); ferr != nil {
			d.log.Warn("state: member record of a failed subscribe not written", "room", id, "conn", conn, "error", ferr)
			d.mu.Lock()
			d.markDirty(id, conn)
			d.mu.Unlock()
			d.kickJanitor()
		}
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	var so sdk.SubscribeOptions
	if o.since != nil && o.since.Channel == name {
		so.Since = &sdk.Position{Seq: o.since.Seq, Epoch: o.since.Epoch}
	}
	sub, err := c.Subscribe(ctx, name, so)
	if err != nil {
		var coded *sdk.Error
		if errors.As(err, &coded) {
			return fail(coded)
		}
		return fail(sdk.Internal(fmt.Sprintf("subscribe to %s: %v", name, err)))
	}
	if joined {
		d.mu.RLock()
		var ns []sdk.Notification
		if r := d.rooms[id]; r != nil {
			ns = d.userNotifications(r, "in", requestOf(c, d.now().UnixMilli(), o.volatile))
		}
		d.mu.RUnlock()
		d.emit(ctx, ns)
	}
	res := map[string]any{"roomId": id, "channel": name, "seq": sub.Position.Seq, "epoch": sub.Position.Epoch}
	if o.since != nil {
		res["recovered"] = so.Since != nil && sub.Recovered
	}
	return res, nil
}

type unsubscribeParams struct {
	RoomID   string          `json:"roomId"`
	Body     json.RawMessage `json:"body"`
	Volatile json.RawMessage `json:"volatile"`
}

// unsubscribe takes the caller out of a room (all its channels there).
func (d *Documents) unsubscribe(ctx context.Context, c *sdk.Call) (any, error) {
	if c.Caller.Backend || c.Caller.ConnID == "" {
		return nil, noHTTP("unsubscribe")
	}
	var p unsubscribeParams
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	var err error
	if p.RoomID, err = roomInBody(p.RoomID, p.Body); err != nil {
		return nil, err
	}
	if p.RoomID == "" {
		return nil, badParam("roomId", "is required")
	}
	vol, err := volatileOf(p.Volatile)
	if err != nil {
		return nil, err
	}
	conn := c.Caller.ConnID
	d.mu.Lock()
	r := d.rooms[p.RoomID]
	var m *member
	if r != nil {
		m = r.members[conn]
	}
	if m == nil {
		d.mu.Unlock()
		return nil, sdk.InvalidParams(fmt.Sprintf("this connection is not subscribed to room %q", p.RoomID), map[string]any{"status": 404, "roomId": p.RoomID})
	}
	now := d.now()
	var names []string
	for name := range m.channels {
		names = append(names, name)
	}
	for _, name := range names {
		d.removeSub(conn, d.channels[name], now)
		d.markDirty(r.id, conn)
		ex := d.expectUnsub[conn]
		if ex == nil {
			ex = map[string]int{}
			d.expectUnsub[conn] = ex
		}
		ex[name]++
	}
	if vol == nil {
		vol = m.volatile
	}
	ns := d.userNotifications(r, "out", requestOf(c, now.UnixMilli(), vol))
	d.mu.Unlock()
	for _, name := range names {
		if err := d.host.Unsubscribe(ctx, conn, name); err != nil {
			d.log.Warn("unsubscribe", "conn", conn, "channel", name, "error", err)
		}
	}
	d.emit(ctx, ns)
	d.afterLeave(ctx)
	return map[string]any{"roomId": p.RoomID}, nil
}

type publishParams struct {
	where
	Body     json.RawMessage `json:"body"`
	Volatile json.RawMessage `json:"volatile"`
}

// publish sends a realtime message to the rooms it matches; nothing is
// stored.
func (d *Documents) publish(ctx context.Context, c *sdk.Call) (any, error) {
	var p publishParams
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	source, _, err := documentBody(p.Body, true)
	if err != nil {
		return nil, err
	}
	vol, err := volatileOf(p.Volatile)
	if err != nil {
		return nil, err
	}
	req := requestOf(c, d.now().UnixMilli(), vol)
	meta := &Meta{Author: req.author, CreatedAt: req.timestamp, Active: true}
	ev := &event{controller: "realtime", action: "publish", state: "done", req: req, result: resultJSON(nil, source, meta)}
	ids := d.matchIDs(p.Index, p.Collection, source)
	d.mu.RLock()
	ns := appendDocNotifications(nil, d.roomsOf(p.Index, p.Collection, ids), ev, "in")
	d.mu.RUnlock()
	if len(ns) > 0 {
		if _, err := d.host.Emit(ctx, ns...); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	return map[string]any{"published": true}, nil
}

// list answers Kuzzle's {index: {collection: {roomId: subscribers}}}.
func (d *Documents) list(_ context.Context, c *sdk.Call) (any, error) {
	var p struct{}
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := map[string]map[string]map[string]int{}
	for _, r := range d.rooms {
		idx := out[r.coll.index]
		if idx == nil {
			idx = map[string]map[string]int{}
			out[r.coll.index] = idx
		}
		col := idx[r.coll.name]
		if col == nil {
			col = map[string]int{}
			idx[r.coll.name] = col
		}
		col[r.id] = r.count()
	}
	return out, nil
}

type validateParams struct {
	Index      string          `json:"index"`
	Collection string          `json:"collection"`
	Body       json.RawMessage `json:"body"`
}

// validate checks a filter without subscribing.
func (d *Documents) validate(_ context.Context, c *sdk.Call) (any, error) {
	var p validateParams
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	body, err := filterBody(p.Body)
	if err == nil {
		_, err = filter.Normalize(body, filter.Options{})
		if err != nil {
			err = filterError(err)
		}
	}
	if err != nil {
		e := sdk.AsError(err)
		return map[string]any{"valid": false, "details": []string{e.Message}, "description": "the filter is not valid"}, nil
	}
	return map[string]any{"valid": true, "details": []string{}, "description": "the filter is valid"}, nil
}
