package main

import (
	"encoding/json"

	"github.com/heraldhq/herald/sdk"
)

const (
	protoWS   = "websocket"
	protoHTTP = "http"
)

// request is what a notification takes from the request that caused it.
type request struct {
	protocol  string
	timestamp int64 // epoch ms
	volatile  json.RawMessage
	author    *string // the caller's user id; nil for backends and anonymous callers
}

func requestOf(c *sdk.Call, now int64, volatile json.RawMessage) request {
	r := request{protocol: protoWS, timestamp: now, volatile: volatile}
	if c.Caller.Backend {
		r.protocol = protoHTTP
	}
	if c.Caller.UserID != "" && !c.Caller.Backend {
		u := c.Caller.UserID
		r.author = &u
	}
	return r
}

// docNotification is Kuzzle's document notification: the union of the
// source's table and its example, in the example's order.
type docNotification struct {
	Status     int             `json:"status"`
	Index      string          `json:"index"`
	Collection string          `json:"collection"`
	Controller string          `json:"controller"`
	Action     string          `json:"action"`
	Protocol   string          `json:"protocol"`
	Timestamp  int64           `json:"timestamp"`
	Volatile   json.RawMessage `json:"volatile"`
	Scope      string          `json:"scope"`
	State      string          `json:"state"`
	Result     json.RawMessage `json:"result"`
	Room       string          `json:"room"`
	Type       string          `json:"type"`
}

// userNotification is Kuzzle's subscription notification.
type userNotification struct {
	Status     int             `json:"status"`
	Error      *struct{}       `json:"error"`
	Index      string          `json:"index"`
	Collection string          `json:"collection"`
	Controller string          `json:"controller"`
	Action     string          `json:"action"`
	Protocol   string          `json:"protocol"`
	Timestamp  int64           `json:"timestamp"`
	Volatile   json.RawMessage `json:"volatile"`
	User       string          `json:"user"`
	Result     userCount       `json:"result"`
	Room       string          `json:"room"`
	Type       string          `json:"type"`
}

type userCount struct {
	Count int `json:"count"`
}

// docResult is a notification's or an answer's result: _source is absent
// on deletes (Kuzzle: "Undefined if the notification is about a document
// deletion").
type docResult struct {
	ID     *string         `json:"_id"`
	Source json.RawMessage `json:"_source,omitempty"`
	Meta   *Meta           `json:"_meta"`
}

// event is one document event to notify: which rooms see it with which
// scope.
type event struct {
	controller, action, state string
	req                       request
	result                    json.RawMessage
}

// wants says whether a channel asks for a document notification.
func (ch *channel) wants(scope, state string) bool {
	return (ch.scope == "all" || ch.scope == scope) && (ch.state == "all" || ch.state == state)
}

// appendDocNotifications adds, for every channel of rooms that wants it,
// the notification of ev with scope; d.mu held for reading.
func appendDocNotifications(ns []sdk.Notification, rooms []*room, ev *event, scope string) []sdk.Notification {
	for _, r := range rooms {
		for _, ch := range r.channels {
			if !ch.wants(scope, ev.state) {
				continue
			}
			obj, _ := json.Marshal(docNotification{
				Status: 200, Index: r.coll.index, Collection: r.coll.name, Controller: ev.controller, Action: ev.action,
				Protocol: ev.req.protocol, Timestamp: ev.req.timestamp, Volatile: ev.req.volatile,
				Scope: scope, State: ev.state, Result: ev.result, Room: ch.name, Type: "document",
			})
			ns = append(ns, sdk.Notification{Channel: ch.name, Event: ev.action, ObjectType: "document", Object: json.RawMessage(obj)})
		}
	}
	return ns
}

// userNotifications tells the room's channels that ask for it that a
// connection came in or went out; d.mu held.
func (d *Documents) userNotifications(r *room, user string, req request) []sdk.Notification {
	action := "subscribe"
	if user == "out" {
		action = "unsubscribe"
	}
	var ns []sdk.Notification
	for _, ch := range r.channels {
		if ch.users != "all" && ch.users != user {
			continue
		}
		obj, _ := json.Marshal(userNotification{
			Status: 200, Index: r.coll.index, Collection: r.coll.name, Controller: "realtime", Action: action,
			Protocol: req.protocol, Timestamp: req.timestamp, Volatile: req.volatile, User: user,
			Result: userCount{Count: r.count()}, Room: ch.name, Type: "user",
		})
		ns = append(ns, sdk.Notification{Channel: ch.name, Event: action, ObjectType: "user", Object: json.RawMessage(obj)})
	}
	return ns
}
