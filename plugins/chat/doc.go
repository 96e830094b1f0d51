// Command chat is Herald's chat plugin: it reproduces Unichat's
// notifications (message, group, subscription and user changes, `entering`
// while someone types, `is_online`/`is_offline`) field for field.
//
// It owns the channel prefix "chat": chat:group:<group_id> (participants
// only) and chat:user:<user_id> (that user only). Backends record group
// membership (addMember, removeMember), which is kept in a bbolt file under
// the `data_dir` of the plugin's config block, and report object changes
// (objectChanged), which the plugin routes to the right channels. Clients
// call chat.saveDraft; presence comes from the host's connection events.
//
// The plugin imports only sdk/ (and bbolt): it must not know about core/.
// README.md beside this file is the user documentation, with every
// decision the Unichat source left open.
package main
