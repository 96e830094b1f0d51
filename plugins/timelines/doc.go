// Command timelines is Herald's timelines plugin: it reproduces Speakap's
// change notifications (timelines, messages, readers, memberships, alerts,
// private messages, news) channel for channel and field for field.
//
// It owns one channel prefix per kind of the source: network_timeline,
// user_timeline, group_timeline, message, message_readers, my_memberships,
// group_memberships, group_admin_memberships, alerts, messages and news
// (channels.go). Subscriptions are checked at subscribe time against the
// token's claims and the grants a backend recorded (authorize.go), and kept
// across token expiry as the source says (sdk.ExpiryKeeper). Backends emit
// payloads, which are checked against one table per kind (payloads.go,
// applied by validate.go) and delivered verbatim, and record grants and
// roles (grant, revoke), kept behind the grants interface in the plugin's
// sdk.State, which the timelines processes of every node of a cluster share
// (grants.go); a watch of the grants makes a revoke on one node drop the
// subscriptions that stood on it on every node (events.go).
//
// The plugin imports only sdk/: it must not know about core/.
// README.md beside this file is the user documentation, with every decision
// the Speakap source left open.
package main
