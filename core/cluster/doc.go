// Package cluster makes the herald nodes that share a NATS server (or a
// NATS cluster) aware of each other: which nodes are alive, how many
// connections and which users are on a channel across all of them
// (presence), and whether any of them is overloaded (the config channel's
// servers_busy / servers_normal signal).
//
// It uses core NATS only (no JetStream): everything here is live state that
// a node republishes every second, never history. It knows nothing of
// connections, the hub, the broker or plugins: the server hands it a Local
// (the node's own presence and load) and a callback for busy flips. On one
// node without NATS the server does not use it.
//
// # Subjects
//
// With the default prefix "herald":
//
//	herald.nodes           heartbeats, every node publishes and subscribes
//	herald.presence        presence requests, every node subscribes
//	_INBOX.<id>.<request>  replies to one node's presence requests
//
// With NATS authorization, a node's user needs publish and subscribe
// permission on <prefix>.nodes and <prefix>.presence, and on the
// connection's inbox prefix (_INBOX.> unless set otherwise); these subjects
// do not overlap the broker's (<prefix>.ch.>, <prefix>.live.>,
// <prefix>.run.>), so one prefix serves both.
//
// # Membership
//
// Every node publishes a heartbeat on <prefix>.nodes each Heartbeat
// interval (default 1s), JSON:
//
//	{"v":1,"id":"01J…","inst":"01J…","every_ms":1000,"busy":false,
//	 "announced":false,"lead":true,"ready":true}
//
// id is the node id (unique per process; default a ULID, so ids sort by
// start time), inst is random per process (two processes with one id are
// logged as an error), every_ms the sender's interval. A node not heard for
// three of its intervals (capped at one minute) is gone. A node that starts,
// or whose NATS connection comes back, sets "hello":true and every node
// answers with its heartbeat at once, so the membership is known in one
// round trip rather than one interval (until those answers arrive, a node
// that just started knows only itself). A node that closes sends
// "bye":true and the others drop it at once. Cost: N heartbeats a second,
// each delivered to N nodes, of about 150 bytes.
//
// # Presence
//
// Presence(ctx, channel) asks every other live node at once with one
// message on <prefix>.presence, whose reply subject names the request:
//
//	version (1 byte) | uvarint len(from) | from | channel
//
// Each node answers with its own count (connections) and distinct user ids
// (not one entry per connection), binary so that thousands of ids need no
// escaping:
//
//	version (1 byte) | uvarint len(node) | node | uvarint count |
//	uvarint part | flags (1 byte, bit 0: last part) |
//	{ uvarint len(user) | user }...
//
// A node with nobody on the channel still answers, with an empty reply of
// about 30 bytes: that is how the asking node knows it is done without
// waiting for its deadline. An answer larger than the NATS max_payload
// (server setting, 1 MiB by default) is split into parts of at most that
// size; a user id that alone does not fit one is left out and logged
// (counted in Stats.UsersLeftOut). The asking node counts its own presence
// directly, adds each other node's count once (whatever the number of its
// parts or duplicates), de-duplicates users across nodes, and returns as
// soon as every node it expected has answered in full; a node that leaves
// meanwhile is no longer waited for. Presence calls for a channel that this
// node is already gathering join that request instead of sending another
// (each still bounded by its own context), so a burst of presence calls on
// a busy channel costs one round of replies, not one per call.
//
// The wait is bounded by ctx, or by PresenceTimeout (default 500ms) when
// ctx has no deadline. When it ends first, Presence returns what arrived
// with an *IncompleteError naming the nodes whose answer is missing or
// partial; the caller decides whether a partial answer is good enough. A
// node whose NATS connection is down answers for itself with
// ErrDisconnected. A node answers requests one at a time, in arrival order;
// requests beyond nats.go's pending limits of a subscription (65,536
// messages or 64 MiB by default) are dropped by nats.go, and the askers get
// an IncompleteError rather than a wait without end. A node that crashed
// without a goodbye is waited for (up to the deadline) until it expires,
// three heartbeats later.
//
// Messages a node cannot read (another wire version, garbage) are ignored
// and logged at most once a minute, with how many were ignored.
//
// Cost of one presence on N nodes: one request delivered to the N nodes
// (the asker's own copy is dropped unanswered), N-1 replies. Measured by
// BenchmarkPresence (3 nodes and nats-server in one process, 2 cores): a
// channel nobody is on costs 3 messages and about 0.15 ms; a channel of
// 10,000 subscribers (distinct users, 3,333 per node) 86 KB received with
// 12-byte user ids, 247 KB with 36-byte ids, a few ms, and about 100
// allocations (one string per reply part, users are slices of it).
//
// # Busy signal
//
// Busy() is true while any live node is busy (this one as Local.Busy says
// now, the others as their last heartbeat says). OnFlip is called when
// the cluster's state flips, on one node only: the leader, the live node
// with the smallest id whose view is complete (it has listened for three
// intervals since it started or reconnected). The leader publishes
// "announced" (the state it last announced) in its heartbeat and the others
// follow it; a node whose view is still partial also follows any node
// whose view is complete. So a node that takes the lead (the old leader
// left, or a node with a smaller id joined) continues from what was
// announced: a flip is announced once, not once per node nor again at a
// change of leader. While the NATS connection is down a node neither leads
// nor expires its view into a flip. Two flips that cancel before OnFlip ran
// are not reported. A flip whose OnFlip fails (the publish did not go
// through) is taken back and offered again a heartbeat later, as long as
// the cluster stays in that state. A flip can be announced twice only if
// the leader dies between calling OnFlip and its next heartbeat, which it
// sends at once, and a flip is late by up to three heartbeats when the
// leader crashes (until the next one takes over).
//
// # Bounds
//
// Configurable (Options): Heartbeat (1s), PresenceTimeout (500ms). Fixed
// by the protocol: a node is gone after 3 silent intervals; a peer's
// advertised interval counts for at most one minute; node ids are at most
// 128 bytes; a reply has at most 65,536 parts; reply messages never exceed
// the server's max_payload.
package cluster
