// Command kb is Herald's knowledge-box plugin: it reproduces NucliaDB's
// knowledge-box notification stream (resource_written, resource_processed,
// resource_indexed) field for field.
//
// It owns the channel prefix "kb": kb:<kbid>, open to tokens whose `kbs`
// claim lists the KB and to backends. Backends report resource operations
// (resource_written, resource_processed, resource_indexed); the plugin
// numbers them with the KB's seqid, kept in a bbolt file under the
// `data_dir` of its config block and written before it is announced, so a
// seqid is never handed out twice, even across kill -9. Clients and backends
// wait for an operation's stage with kb.waitFor. GET
// /v1/kb/{kbid}/notifications streams the channel as NucliaDB's endpoint
// does, one base64 notification per line, resumable with ?since= (through
// the SDK's Follow, which reads the channel's history and follows it live).
//
// The plugin imports only sdk/ (and bbolt): it must not know about core/.
// README.md beside this file is the user documentation, with every decision
// the NucliaDB source left open.
package main
