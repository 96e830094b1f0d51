// Command documents is Herald's realtime documents plugin: Kuzzle's
// document API (create, createOrReplace, replace, update, delete, get,
// count) and realtime API (subscribe, join, unsubscribe, publish, count,
// list, validate), with Kuzzle's notifications field for field, on the
// filter engine in ./filter (Koncorde's language).
//
// It owns the channel prefix "documents": every room configuration (room,
// scope, state, users) is a channel documents:<roomId>-<hash> that the
// plugin creates and subscribes the caller to in documents.subscribe and
// documents.join; clients never subscribe to it directly. Documents (behind
// the small Store interface, store.go), rooms and who is in them are kept in
// the plugin's sdk.State: one file on one node, a JetStream bucket shared by
// the plugin's processes on every node of a cluster. rooms.go says how the
// processes share rooms, counts and cleanup without transactions; keys.go
// lists the keys.
//
// The plugin imports only sdk/ (and its filter engine): it must not know
// about core/. README.md beside this file is the user
// documentation, with every decision the Kuzzle sources left open.
package main
