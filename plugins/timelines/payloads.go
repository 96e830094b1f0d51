package main

// The payload tables: one per channel kind, as the source lists them, with
// the decisions of DOMAINS.md applied (see README.md, "Decisions"). This is
// the only place that says which keys a payload may or must carry; the
// engine in validate.go reads nothing else.
//
// Reading a table: `event` must be one of events. Each key is refused on
// events outside `on` (nil: every event), without its `with` key present
// (comment-only keys need `parent`), and unless `when` holds; where it is
// allowed, it is required if `required` is set or the event is in
// `requiredOn`, optional otherwise. A key that is not in the table is
// refused.

var timelineEvents = []string{"bubble", "create", "delete"}

// timelineKeys are the keys of the user, group and message channels; the
// network timeline adds liker.
var timelineKeys = []key{
	{name: "message", kind: eid, required: true},
	{name: "author", kind: eid, required: true},
	{name: "parent", kind: eid},
	{name: "firstCommentByAuthor", kind: boolean, on: events("create"), with: "parent"},
	{name: "deletedBy", kind: oneOf("author", "admin"), on: events("delete"), with: "parent"},
}

var tables = map[string]table{
	"network_timeline": {
		events: events("bubble", "create", "delete", "like", "unlike"),
		keys: append([]key{
			{name: "liker", kind: eid, on: events("like", "unlike"), required: true},
		}, timelineKeys...),
	},
	"user_timeline":  {events: timelineEvents, keys: timelineKeys},
	"group_timeline": {events: timelineEvents, keys: timelineKeys},
	"message":        {events: timelineEvents, keys: timelineKeys},
	"message_readers": {
		events: events("read"),
		keys: []key{
			{name: "message", kind: eid, required: true},
			{name: "reader", kind: eid, required: true},
		},
	},
	"my_memberships": {
		events: events("create", "delete", "role_change"),
		keys: []key{
			{name: "membership", kind: eid, required: true},
			{name: "rev", kind: oneOf("group", "network"), required: true},
			{name: "group", kind: eid, when: &is{"rev", "group"}},
			{name: "role", kind: text, on: events("create", "role_change")},
			{name: "oldRole", kind: text, on: events("delete", "role_change")},
		},
	},
	"group_memberships":       {events: membershipEvents, keys: groupMembershipKeys},
	"group_admin_memberships": {events: membershipEvents, keys: groupMembershipKeys},
	"alerts": {
		events: events("create", "delete", "read"),
		keys: []key{
			{name: "alert", kind: eid, requiredOn: events("create", "delete")},
			{name: "network", kind: eid, required: true},
			{name: "category", kind: oneOf("user", "admin"), required: true},
			{name: "numUnreadAlerts", kind: integer, when: &is{"category", "user"}, required: true},
			{name: "numAdminAlerts", kind: integer, when: &is{"category", "admin"}, required: true},
		},
	},
	"messages": {
		events: events("create", "delete", "leave", "read"),
		keys: []key{
			{name: "message", kind: eid, requiredOn: events("create", "delete")},
			{name: "messageType", kind: text, requiredOn: events("create")},
			{name: "conversation", kind: eid, required: true},
			{name: "author", kind: eid, on: events("create")},
			{name: "network", kind: eid, required: true},
			{name: "numUnreadConversations", kind: integer, required: true},
		},
	},
	"news": {
		events: events("create", "publish", "delete", "read"),
		keys: []key{
			{name: "message", kind: eid, required: true},
			{name: "author", kind: eid, on: events("create", "publish")},
			{name: "network", kind: eid, required: true},
			{name: "numUnreadNewsItems", kind: integer, required: true},
		},
	},
}

var membershipEvents = events("create", "delete", "role_change")

var groupMembershipKeys = []key{
	{name: "membership", kind: eid, required: true},
	{name: "rev", kind: oneOf("group"), required: true},
	{name: "group", kind: eid, required: true},
	{name: "role", kind: text, on: events("create", "role_change")},
	{name: "oldRole", kind: text, on: events("delete", "role_change")},
}
