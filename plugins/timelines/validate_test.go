package main

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// validPayloads has, for every kind, one valid payload per allowed event
// (and the comment forms): the integration test delivers each of them.
var validPayloads = map[string][]string{
	"network_timeline": {
		`{"event":"bubble","message":"m1","author":"u1"}`,
		`{"event":"create","message":"m2","author":"u1"}`,
		`{"event":"create","message":"c1","author":"u2","parent":"m1","firstCommentByAuthor":true}`,
		`{"event":"delete","message":"m2","author":"u1"}`,
		`{"event":"delete","message":"c1","author":"u2","parent":"m1","deletedBy":"admin"}`,
		`{"event":"like","liker":"u3","message":"m1","author":"u1"}`,
		`{"event":"unlike","liker":"u3","message":"m1","author":"u1"}`,
	},
	"user_timeline": {
		`{"event":"bubble","message":"m1","author":"u1"}`,
		`{"event":"create","message":"c1","author":"u2","parent":"m1","firstCommentByAuthor":false}`,
		`{"event":"delete","message":"c1","author":"u2","parent":"m1","deletedBy":"author"}`,
	},
	"group_timeline": {
		`{"event":"bubble","message":"m1","author":"u1"}`,
		`{"event":"create","message":"m1","author":"u1"}`,
		`{"event":"delete","message":"m1","author":"u1"}`,
	},
	"message": {
		`{"event":"bubble","message":"m1","author":"u1"}`,
		`{"event":"create","message":"c1","author":"u2","parent":"m1"}`,
		`{"event":"delete","message":"c1","author":"u2","parent":"m1","deletedBy":"admin"}`,
	},
	"message_readers": {
		`{"event":"read","message":"m1","reader":"u4"}`,
	},
	"my_memberships": {
		`{"event":"create","membership":"ms1","rev":"group","group":"g1","role":"member"}`,
		`{"event":"delete","membership":"ms1","rev":"network","oldRole":"member"}`,
		`{"event":"role_change","membership":"ms1","rev":"group","group":"g1","role":"admin","oldRole":"member"}`,
	},
	"group_memberships": {
		`{"event":"create","membership":"ms1","rev":"group","group":"g1","role":"member"}`,
		`{"event":"delete","membership":"ms1","rev":"group","group":"g1","oldRole":"member"}`,
		`{"event":"role_change","membership":"ms1","rev":"group","group":"g1","role":"admin","oldRole":"member"}`,
	},
	"group_admin_memberships": {
		`{"event":"create","membership":"ms2","rev":"group","group":"g1","role":"invited"}`,
		`{"event":"delete","membership":"ms2","rev":"group","group":"g1"}`,
		`{"event":"role_change","membership":"ms2","rev":"group","group":"g1","role":"member","oldRole":"requested"}`,
	},
	"alerts": {
		`{"event":"create","alert":"a1","network":"n1","category":"user","numUnreadAlerts":3}`,
		`{"event":"delete","alert":"a1","network":"n1","category":"admin","numAdminAlerts":0}`,
		`{"event":"read","network":"n1","category":"user","numUnreadAlerts":0}`,
	},
	"messages": {
		`{"event":"create","message":"pm1","messageType":"text","conversation":"cv1","author":"u2","network":"n1","numUnreadConversations":1}`,
		`{"event":"delete","message":"pm1","conversation":"cv1","network":"n1","numUnreadConversations":0}`,
		`{"event":"leave","conversation":"cv1","network":"n1","numUnreadConversations":0}`,
		`{"event":"read","conversation":"cv1","network":"n1","messageType":"text","numUnreadConversations":0}`,
	},
	"news": {
		`{"event":"create","message":"ni1","author":"u1","network":"n1","numUnreadNewsItems":1}`,
		`{"event":"publish","message":"ni1","author":"u1","network":"n1","numUnreadNewsItems":2}`,
		`{"event":"delete","message":"ni1","network":"n1","numUnreadNewsItems":1}`,
		`{"event":"read","message":"ni1","network":"n1","numUnreadNewsItems":0}`,
	},
}

func TestEveryKindAndEventHasAValidPayload(t *testing.T) {
	for _, k := range kinds {
		var seen []string
		for _, p := range validPayloads[k.name] {
			ev, err := validate(k.name, json.RawMessage(p))
			require.Nil(t, err, "%s %s", k.name, p)
			seen = append(seen, ev)
		}
		for _, ev := range tables[k.name].events {
			require.Contains(t, seen, ev, "%s: no valid payload for event %q", k.name, ev)
		}
	}
}

// Each kind of failure, named by the field at fault.
func TestValidationFailuresNameTheField(t *testing.T) {
	for _, tc := range []struct {
		kind, payload, field, reason string
	}{
		// not an object / no event / unknown event
		{"network_timeline", `[1]`, "", "must be a JSON object"},
		{"network_timeline", `{"message":"m1","author":"u1"}`, "event", "is required"},
		{"network_timeline", `{"event":"posted","message":"m1","author":"u1"}`, "event", "must be one of"},
		{"user_timeline", `{"event":"like","liker":"u3","message":"m1","author":"u1"}`, "event", "must be one of"},
		{"messages", `{"event":"publish","conversation":"cv1","network":"n1","numUnreadConversations":0}`, "event", "must be one of"},
		{"news", `{"event":"leave","message":"ni1","network":"n1","numUnreadNewsItems":0}`, "event", "must be one of"},
		{"network_timeline", `{"event":7}`, "event", "must be one of"},
		// missing required keys
		{"network_timeline", `{"event":"create","author":"u1"}`, "message", "is required"},
		{"network_timeline", `{"event":"like","message":"m1","author":"u1"}`, "liker", "is required"},
		{"message_readers", `{"event":"read","message":"m1"}`, "reader", "is required"},
		{"alerts", `{"event":"create","network":"n1","category":"user","numUnreadAlerts":1}`, "alert", "is required"},
		{"alerts", `{"event":"read","network":"n1","category":"user"}`, "numUnreadAlerts", "is required"},
		{"alerts", `{"event":"read","network":"n1","category":"admin"}`, "numAdminAlerts", "is required"},
		{"messages", `{"event":"create","message":"pm1","conversation":"cv1","network":"n1","numUnreadConversations":1}`, "messageType", "is required"},
		{"messages", `{"event":"delete","conversation":"cv1","network":"n1","numUnreadConversations":1}`, "message", "is required"},
		{"group_memberships", `{"event":"create","membership":"ms1","rev":"group"}`, "group", "is required"},
		{"news", `{"event":"read","message":"ni1","network":"n1"}`, "numUnreadNewsItems", "is required"},
		// keys not allowed on that channel, that event, or without their condition
		{"group_timeline", `{"event":"create","message":"m1","author":"u1","liker":"u3"}`, "liker", "is not a key of group_timeline"},
		{"network_timeline", `{"event":"create","liker":"u3","message":"m1","author":"u1"}`, "liker", `on "create" events`},
		{"network_timeline", `{"event":"create","message":"m1","author":"u1","firstCommentByAuthor":true}`, "firstCommentByAuthor", `without "parent"`},
		{"network_timeline", `{"event":"delete","message":"m1","author":"u1","parent":"m0","firstCommentByAuthor":true}`, "firstCommentByAuthor", `on "delete" events`},
		{"message", `{"event":"delete","message":"m1","author":"u1","deletedBy":"admin"}`, "deletedBy", `without "parent"`},
		{"message", `{"event":"create","message":"c1","author":"u1","parent":"m1","deletedBy":"admin"}`, "deletedBy", `on "create" events`},
		{"my_memberships", `{"event":"create","membership":"ms1","rev":"network","group":"g1"}`, "group", `unless rev is "group"`},
		{"my_memberships", `{"event":"delete","membership":"ms1","rev":"network","role":"member"}`, "role", `on "delete" events`},
		{"group_memberships", `{"event":"create","membership":"ms1","rev":"group","group":"g1","oldRole":"member"}`, "oldRole", `on "create" events`},
		{"alerts", `{"event":"create","alert":"a1","network":"n1","category":"user","numUnreadAlerts":1,"numAdminAlerts":1}`, "numAdminAlerts", `unless category is "admin"`},
		{"messages", `{"event":"delete","message":"pm1","conversation":"cv1","author":"u1","network":"n1","numUnreadConversations":1}`, "author", `on "delete" events`},
		{"news", `{"event":"read","message":"ni1","author":"u1","network":"n1","numUnreadNewsItems":0}`, "author", `on "read" events`},
		{"news", `{"event":"read","message":"ni1","network":"n1","numUnreadNewsItems":0,"extra":1}`, "extra", "is not a key of news"},
		// wrong types
		{"network_timeline", `{"event":"create","message":42,"author":"u1"}`, "message", "must be an EID"},
		{"network_timeline", `{"event":"create","message":"","author":"u1"}`, "message", "must be an EID"},
		{"network_timeline", `{"event":"create","message":"a:b","author":"u1"}`, "message", "must be an EID"},
		{"network_timeline", `{"event":"create","message":"a b","author":"u1"}`, "message", "must be an EID"},
		{"network_timeline", `{"event":"create","message":null,"author":"u1"}`, "message", "must be an EID"},
		{"network_timeline", `{"event":"create","message":"c1","author":"u1","parent":"m1","firstCommentByAuthor":"yes"}`, "firstCommentByAuthor", "must be a boolean"},
		{"user_timeline", `{"event":"delete","message":"c1","author":"u1","parent":"m1","deletedBy":"moderator"}`, "deletedBy", `must be one of "author", "admin"`},
		{"my_memberships", `{"event":"create","membership":"ms1","rev":"user"}`, "rev", `must be one of "group", "network"`},
		{"group_admin_memberships", `{"event":"create","membership":"ms1","rev":"network","group":"g1"}`, "rev", `must be one of "group"`},
		{"my_memberships", `{"event":"create","membership":"ms1","rev":"network","role":5}`, "role", "must be a string"},
		{"alerts", `{"event":"read","network":"n1","category":"user","numUnreadAlerts":1.5}`, "numUnreadAlerts", "must be a non-negative integer"},
		{"alerts", `{"event":"read","network":"n1","category":"user","numUnreadAlerts":-1}`, "numUnreadAlerts", "must be a non-negative integer"},
		{"alerts", `{"event":"read","network":"n1","category":"user","numUnreadAlerts":"3"}`, "numUnreadAlerts", "must be a non-negative integer"},
		{"alerts", `{"event":"read","network":"n1","category":"bell","numUnreadAlerts":1}`, "category", `must be one of "user", "admin"`},
		{"messages", `{"event":"create","message":"pm1","messageType":1,"conversation":"cv1","network":"n1","numUnreadConversations":1}`, "messageType", "must be a string"},
		// a key given twice
		{"message_readers", `{"event":"read","message":"m1","reader":"u4","reader":"u5"}`, "reader", "appears twice"},
	} {
		_, err := validate(tc.kind, json.RawMessage(tc.payload))
		require.NotNil(t, err, "%s %s", tc.kind, tc.payload)
		require.Equal(t, tc.field, err.field, "%s %s: %v", tc.kind, tc.payload, err)
		require.Contains(t, err.reason, tc.reason, "%s %s", tc.kind, tc.payload)
	}
}

func TestParseChannel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    string
		ids     []string
		network string
		bad     string
	}{
		{name: "network_timeline:n1", kind: "network_timeline", ids: []string{"n1"}, network: "n1"},
		{name: "group_admin_memberships:g1:n1", kind: "group_admin_memberships", ids: []string{"g1", "n1"}, network: "n1"},
		{name: "alerts:gu1", kind: "alerts", ids: []string{"gu1"}},
		{name: "message:m1", bad: "does not have the form message:<messageEID>:<networkEID>"},
		{name: "network_timeline:n1:x", bad: "does not have the form"},
		{name: "user_timeline::n1", bad: "userEID must not be empty"},
		{name: "timeline:n1", bad: "is not a timelines channel"},
	} {
		ch, err := parseChannel(tc.name)
		if tc.bad != "" {
			require.ErrorContains(t, err, tc.bad, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.kind, ch.kind.name)
		require.Equal(t, tc.ids, ch.ids)
		require.Equal(t, tc.network, ch.network)
	}
}

// FuzzValidate: whatever the bytes, validate does not panic, and what it
// accepts is what the table allows: a JSON object with a listed event,
// only table keys, each of its kind.
func FuzzValidate(f *testing.F) {
	for _, ps := range validPayloads {
		for _, p := range ps {
			f.Add(p)
		}
	}
	f.Add(`{"event":"create","message":"m1","author":"u1","parent":"m0","deletedBy":"admin"}`)
	f.Add(`{"event":"read","network":"n1","category":"admin","numAdminAlerts":1e3}`)
	f.Add(`{"event":"read"} {}`)
	f.Fuzz(func(t *testing.T, payload string) {
		for _, k := range kinds {
			ev, ferr := validate(k.name, json.RawMessage(payload))
			if ferr != nil {
				continue
			}
			tbl := tables[k.name]
			require.Contains(t, tbl.events, ev)
			var obj map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(payload), &obj), "accepted %q", payload)
			for name, raw := range obj {
				if name == "event" {
					continue
				}
				i := slices.IndexFunc(tbl.keys, func(x key) bool { return x.name == name })
				require.GreaterOrEqual(t, i, 0, "%s accepted unknown key %q", k.name, name)
				require.True(t, tbl.keys[i].kind.check(raw), "%s accepted %s=%s", k.name, name, raw)
				require.Empty(t, tbl.keys[i].refusedBecause(obj, ev), "%s accepted %s on %s", k.name, name, ev)
			}
		}
	})
}
