package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"

	"github.com/heraldhq/herald/plugins/documents/filter"
	"github.com/heraldhq/herald/sdk"
)

// The document API. A write takes its document's lock, matches the
// document once against every room of its collection (the engine's
// indexed match), emits the pending notifications, writes durably, then
// emits the done ones: one emit per phase for all the channels concerned.

type docParams struct {
	where
	ID       *string         `json:"_id"`
	Body     json.RawMessage `json:"body"`
	Volatile json.RawMessage `json:"volatile"`
	// Refresh is Kuzzle's: "wait_for" answers once the write is visible
	// to searches. Herald's store is: every write is before its answer,
	// so "wait_for" and "false" are both kept without waiting.
	Refresh *string `json:"refresh"`
}

// parsed is a checked write or read request.
type parsed struct {
	docParams
	source json.RawMessage
	fields map[string]any
	req    request
}

func (d *Documents) parseDoc(c *sdk.Call, needID, needBody bool) (*parsed, error) {
	var p parsed
	if err := bind(c, &p.docParams); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if p.Refresh != nil && *p.Refresh != "wait_for" && *p.Refresh != "false" {
		return nil, badParam("refresh", `must be "wait_for" or "false", not %q`, *p.Refresh)
	}
	if p.ID != nil {
		if err := checkID(*p.ID); err != nil {
			return nil, err
		}
	} else if needID {
		return nil, badParam("_id", "is required")
	}
	if needBody {
		var err error
		if p.source, p.fields, err = documentBody(p.Body, true); err != nil {
			return nil, err
		}
	} else if len(p.Body) > 0 && string(p.Body) != "null" {
		return nil, badParam("body", "is not taken by this action")
	}
	vol, err := volatileOf(p.Volatile)
	if err != nil {
		return nil, err
	}
	p.req = requestOf(c, d.now().UnixMilli(), vol)
	return &p, nil
}

var lockSeed = maphash.MakeSeed()

func (d *Documents) lock(index, collection, id string) func() {
	var h maphash.Hash
	h.SetSeed(lockSeed)
	h.WriteString(index)
	h.WriteByte(0)
	h.WriteString(collection)
	h.WriteByte(0)
	h.WriteString(id)
	l := &d.locks[h.Sum64()%lockShards]
	l.Lock()
	return l.Unlock
}

func notFound(p *parsed, id string) error {
	return sdk.InvalidParams(fmt.Sprintf("document %q not found in %s/%s", id, p.Index, p.Collection),
		map[string]any{"status": 404, "_id": id})
}

// matchIDs returns the filter IDs a document matches in its collection.
func (d *Documents) matchIDs(index, collection string, doc []byte) []string {
	d.mu.RLock()
	c := d.colls[index+"\x00"+collection]
	d.mu.RUnlock()
	if c == nil {
		return nil
	}
	ids, err := c.engine.Match(doc)
	if err != nil {
		d.log.Warn("match failed", "index", index, "collection", collection, "error", err)
		return nil
	}
	return ids
}

// pendingAndDone builds the notifications of a create or a delete for the
// rooms of the filter IDs ids: its pending event's (none if they were sent
// already, by an earlier attempt) and its done event's, with scope "in"
// (a document created) or "out" (deleted).
func (d *Documents) pendingAndDone(p *parsed, ids []string, pending, done *event, scope string, pendingSent bool) (pns, dns []sdk.Notification) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	rooms := d.roomsOf(p.Index, p.Collection, ids)
	if !pendingSent {
		pns = appendDocNotifications(nil, rooms, pending, scope)
	}
	return pns, appendDocNotifications(nil, rooms, done, scope)
}

// roomsOf resolves filter IDs to rooms; d.mu held for reading.
func (d *Documents) roomsOf(index, collection string, ids []string) []*room {
	c := d.colls[index+"\x00"+collection]
	if c == nil || len(ids) == 0 {
		return nil
	}
	out := make([]*room, 0, len(ids))
	for _, id := range ids {
		if r := c.rooms[id]; r != nil {
			out = append(out, r)
		}
	}
	return out
}

func resultJSON(id *string, source json.RawMessage, meta *Meta) json.RawMessage {
	b, _ := json.Marshal(docResult{ID: id, Source: source, Meta: meta})
	return b
}

func newDocID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (d *Documents) create(ctx context.Context, c *sdk.Call) (any, error) {
	p, err := d.parseDoc(c, false, true)
	if err != nil {
		return nil, err
	}
	return d.createDoc(ctx, p, false)
}

func (d *Documents) createOrReplace(ctx context.Context, c *sdk.Call) (any, error) {
	p, err := d.parseDoc(c, true, true)
	if err != nil {
		return nil, err
	}
	return d.createDoc(ctx, p, true)
}

// upsertResult is createOrReplace's answer: the document, and whether it
// was created.
type upsertResult struct {
	ID      string          `json:"_id"`
	Source  json.RawMessage `json:"_source"`
	Meta    Meta            `json:"_meta"`
	Created bool            `json:"created"`
}

// createDoc creates, or with orReplace replaces an existing document.
// Between nodes, the State's Create decides which of two creates of one
// _id wins; the loser answers 409 (or, with orReplace, replaces).
func (d *Documents) createDoc(ctx context.Context, p *parsed, orReplace bool) (any, error) {
	given := p.ID
	id := newDocID()
	if given != nil {
		id = *given
	}
	defer d.lock(p.Index, p.Collection, id)()
	pendingSent := false
	for range maxAttempts {
		old, rev, err := d.store.Get(ctx, p.Index, p.Collection, id)
		if err != nil {
			return nil, sdk.Internal(err.Error())
		}
		if old != nil {
			if !orReplace {
				return nil, sdk.InvalidParams(fmt.Sprintf("document %q already exists in %s/%s", id, p.Index, p.Collection),
					map[string]any{"status": 409, "_id": id})
			}
			res, err := d.replaceLocked(ctx, p, old, rev, "replace", nil)
			if errors.Is(err, errChanged) {
				continue
			}
			if err != nil {
				return nil, err
			}
			return upsertResult{ID: res.ID, Source: res.Source, Meta: res.Meta, Created: false}, nil
		}
		doc := &Doc{ID: id, Source: p.source, Meta: Meta{Author: p.req.author, CreatedAt: p.req.timestamp, Active: true}}
		ids := d.matchIDs(p.Index, p.Collection, withID(id, p.source))
		pending := &event{controller: "document", action: "create", state: "pending", req: p.req, result: resultJSON(given, p.source, nil)}
		done := &event{controller: "document", action: "create", state: "done", req: p.req, result: resultJSON(&doc.ID, doc.Source, &doc.Meta)}
		pns, dns := d.pendingAndDone(p, ids, pending, done, "in", pendingSent)
		d.emit(ctx, pns)
		pendingSent = true
		err = d.store.Create(ctx, p.Index, p.Collection, doc)
		if errors.Is(err, errChanged) {
			continue // another node created it first: read it again
		}
		if err != nil {
			return nil, sdk.Internal(err.Error())
		}
		d.emit(ctx, dns)
		if orReplace {
			return upsertResult{ID: doc.ID, Source: doc.Source, Meta: doc.Meta, Created: true}, nil
		}
		return docResult{ID: &doc.ID, Source: doc.Source, Meta: &doc.Meta}, nil
	}
	return nil, busy(p, id)
}

// busy: other nodes kept writing the document while this write retried.
func busy(p *parsed, id string) error {
	return sdk.Internal(fmt.Sprintf("document %q in %s/%s kept changing under this write (other nodes writing it); try again", id, p.Index, p.Collection))
}

func (d *Documents) replace(ctx context.Context, c *sdk.Call) (any, error) {
	p, err := d.parseDoc(c, true, true)
	if err != nil {
		return nil, err
	}
	defer d.lock(p.Index, p.Collection, *p.ID)()
	for range maxAttempts {
		old, rev, err := d.store.Get(ctx, p.Index, p.Collection, *p.ID)
		if err != nil {
			return nil, sdk.Internal(err.Error())
		}
		if old == nil {
			return nil, notFound(p, *p.ID)
		}
		res, err := d.replaceLocked(ctx, p, old, rev, "replace", nil)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return docResult{ID: &res.ID, Source: res.Source, Meta: &res.Meta}, nil
	}
	return nil, busy(p, *p.ID)
}

func (d *Documents) update(ctx context.Context, c *sdk.Call) (any, error) {
	p, err := d.parseDoc(c, true, true)
	if err != nil {
		return nil, err
	}
	defer d.lock(p.Index, p.Collection, *p.ID)()
	for range maxAttempts {
		old, rev, err := d.store.Get(ctx, p.Index, p.Collection, *p.ID)
		if err != nil {
			return nil, sdk.Internal(err.Error())
		}
		if old == nil {
			return nil, notFound(p, *p.ID)
		}
		dec := json.NewDecoder(bytes.NewReader(old.Source))
		dec.UseNumber()
		var cur map[string]any
		if err := dec.Decode(&cur); err != nil || cur == nil {
			cur = map[string]any{}
		}
		merged, err := json.Marshal(merge(cur, p.fields))
		if err != nil {
			return nil, sdk.Internal("merge: " + err.Error())
		}
		res, err := d.replaceLocked(ctx, p, old, rev, "update", merged)
		if errors.Is(err, errChanged) {
			continue // written by another node meanwhile: merge into that
		}
		if err != nil {
			return nil, err
		}
		return docResult{ID: &res.ID, Source: res.Source, Meta: &res.Meta}, nil
	}
	return nil, busy(p, *p.ID)
}

// replaceLocked writes source (p.source when nil) over old, read at
// revision rev (its lock held), and notifies the rooms the document enters
// (scope in: it matches after, whether or not it did before) and leaves
// (scope out: it matched before, not after). errChanged: old is no longer
// the stored document; nothing was written or sent.
func (d *Documents) replaceLocked(ctx context.Context, p *parsed, old *Doc, rev uint64, action string, source json.RawMessage) (*Doc, error) {
	if source == nil {
		source = p.source
	}
	meta := old.Meta
	ts := p.req.timestamp
	meta.UpdatedAt, meta.Updater = &ts, p.req.author
	doc := &Doc{ID: old.ID, Source: source, Meta: meta}
	before := d.matchIDs(p.Index, p.Collection, withID(old.ID, old.Source))
	after := d.matchIDs(p.Index, p.Collection, withID(doc.ID, doc.Source))
	var left []string
	if len(before) > 0 {
		in := make(map[string]struct{}, len(after))
		for _, id := range after {
			in[id] = struct{}{}
		}
		for _, id := range before {
			if _, ok := in[id]; !ok {
				left = append(left, id)
			}
		}
	}
	if err := d.store.Replace(ctx, p.Index, p.Collection, doc, rev); err != nil {
		if errors.Is(err, errChanged) {
			return nil, err
		}
		return nil, sdk.Internal(err.Error())
	}
	done := &event{controller: "document", action: action, state: "done", req: p.req, result: resultJSON(&doc.ID, doc.Source, &doc.Meta)}
	d.mu.RLock()
	ns := appendDocNotifications(nil, d.roomsOf(p.Index, p.Collection, after), done, "in")
	ns = appendDocNotifications(ns, d.roomsOf(p.Index, p.Collection, left), done, "out")
	d.mu.RUnlock()
	d.emit(ctx, ns)
	return doc, nil
}

// delete sends pending, deletes at the revision read, sends done. When
// another node wrote the document in between, it reads it again and
// deletes that (its pending already sent); when another node deleted it,
// the answer is 404.
func (d *Documents) delete(ctx context.Context, c *sdk.Call) (any, error) {
	p, err := d.parseDoc(c, true, false)
	if err != nil {
		return nil, err
	}
	id := *p.ID
	defer d.lock(p.Index, p.Collection, id)()
	pendingSent := false
	for range maxAttempts {
		old, rev, err := d.store.Get(ctx, p.Index, p.Collection, id)
		if err != nil {
			return nil, sdk.Internal(err.Error())
		}
		if old == nil {
			return nil, notFound(p, id)
		}
		ids := d.matchIDs(p.Index, p.Collection, withID(id, old.Source))
		gone := old.Meta
		ts := p.req.timestamp
		gone.Active, gone.DeletedAt, gone.UpdatedAt, gone.Updater = false, &ts, &ts, p.req.author
		pending := &event{controller: "document", action: "delete", state: "pending", req: p.req, result: resultJSON(&id, nil, &old.Meta)}
		done := &event{controller: "document", action: "delete", state: "done", req: p.req, result: resultJSON(&id, nil, &gone)}
		pns, dns := d.pendingAndDone(p, ids, pending, done, "out", pendingSent)
		d.emit(ctx, pns)
		pendingSent = true
		err = d.store.Delete(ctx, p.Index, p.Collection, id, rev)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			return nil, sdk.Internal(err.Error())
		}
		d.emit(ctx, dns)
		return map[string]any{"_id": id}, nil
	}
	return nil, busy(p, id)
}

func (d *Documents) get(ctx context.Context, c *sdk.Call) (any, error) {
	p, err := d.parseDoc(c, true, false)
	if err != nil {
		return nil, err
	}
	doc, _, err := d.store.Get(ctx, p.Index, p.Collection, *p.ID)
	if err != nil {
		return nil, sdk.Internal(err.Error())
	}
	if doc == nil {
		return nil, notFound(p, *p.ID)
	}
	return docResult{ID: &doc.ID, Source: doc.Source, Meta: &doc.Meta}, nil
}

type countParams struct {
	where
	RoomID *string         `json:"roomId"`
	Body   json.RawMessage `json:"body"`
}

// count counts a room's subscribers (roomId) or a collection's documents,
// optionally those matching a filter (body).
func (d *Documents) count(ctx context.Context, c *sdk.Call) (any, error) {
	var p countParams
	if err := bind(c, &p); err != nil {
		return nil, err
	}
	if p.RoomID == nil && p.Index == "" && p.Collection == "" && len(p.Body) > 0 {
		// Kuzzle's realtime:count: {"body": {"roomId": "..."}}.
		var b map[string]json.RawMessage
		if json.Unmarshal(p.Body, &b) == nil && len(b) == 1 && b["roomId"] != nil {
			var id string
			if err := json.Unmarshal(b["roomId"], &id); err != nil {
				return nil, badParam("body.roomId", "must be a string")
			}
			p.RoomID, p.Body = &id, nil
		}
	}
	if p.RoomID != nil {
		if p.Index != "" || p.Collection != "" || len(p.Body) > 0 {
			return nil, badParam("roomId", "counts a room's subscribers: give either roomId, or index and collection (and a body filter) to count documents")
		}
		d.mu.RLock()
		defer d.mu.RUnlock()
		r := d.rooms[*p.RoomID]
		if r == nil {
			return nil, roomNotFound(*p.RoomID)
		}
		return userCount{Count: r.count()}, nil
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	var e *filter.Engine
	if len(p.Body) > 0 && string(p.Body) != "null" {
		body, err := filterBody(p.Body)
		if err != nil {
			return nil, err
		}
		e = filter.New(filter.Options{})
		if _, err := e.Register(body); err != nil {
			return nil, filterError(err)
		}
	}
	n := 0
	err := d.store.Each(ctx, p.Index, p.Collection, func(doc *Doc) bool {
		if e == nil {
			n++
			return true
		}
		if ids, err := e.Match(withID(doc.ID, doc.Source)); err == nil && len(ids) > 0 {
			n++
		}
		return true
	})
	if err != nil {
		return nil, sdk.Internal(err.Error())
	}
	return userCount{Count: n}, nil
}
