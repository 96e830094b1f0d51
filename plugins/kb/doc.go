// Command kb is Herald's knowledge-box plugin: it reproduces NucliaDB's
// knowledge-box notification stream (resource_written, resource_processed,
// resource_indexed) field for field.
//
// It owns the channel prefix "kb": kb:<kbid>, open to tokens whose `kbs`
// claim lists the KB and to backends. Backends report resource operations
// (resource_written, resource_processed, resource_indexed); the plugin
// numbers them with the KB's seqid, kept in the plugin's sdk.State (on one
// node a file under Herald's `state` block, in a cluster a JetStream bucket
// shared by the plugin's processes on every node) and taken with a compare-and-set before it is announced, so a seqid
// is never handed out twice, even across kill -9 or across nodes (store.go).
// kb.waitFor is woken by a watch of that state, so a report through any
// node wakes the waiters of every node (waiters.go). Clients and backends
// wait for an operation's stage with kb.waitFor. GET
// /v1/kb/{kbid}/notifications streams the channel as NucliaDB's endpoint
// does, one base64 notification per line, resumable with ?since= (through
// the SDK's Follow, which reads the channel's history and follows it live).
//
// The plugin imports only sdk/: it must not know about core/.
// README.md beside this file is the user documentation, with every decision
// the NucliaDB source left open.
package main
