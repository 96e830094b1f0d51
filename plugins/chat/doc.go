// Command chat is Herald's chat plugin: it reproduces Unichat's
// notifications (message, group, subscription and user changes, `entering`
// while someone types, `is_online`/`is_offline`) field for field.
//
// It owns the channel prefix "chat": chat:group:<group_id> (participants
// only) and chat:user:<user_id> (that user only). Backends record group
// membership (addMember, removeMember) and report object changes
// (objectChanged), which the plugin routes to the right channels. Clients
// call chat.saveDraft; presence comes from the host's connection events.
// `entering` goes to the group's channel, and is_online/is_offline to the
// channel of each group of the user: every subscriber of a group's channel
// gets them, the user's own clients included (README: Decisions).
//
// Membership, reported user objects and online status are kept in Herald's
// State (sdk.State: a file on one node, a JetStream KV bucket shared by the
// chat processes of every node in a cluster); store.go lists the keys.
// Each process knows only its own node's connections; presence.go says how
// the processes agree on who is online and who announces it.
//
// The plugin imports only sdk/: it must not know about core/.
// README.md beside this file is the user documentation, with every
// decision the Unichat source left open.
package main
