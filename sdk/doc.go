// Package sdk is what a Herald plugin imports. A plugin is a separate
// process that Herald starts, supervises and talks to over gRPC (through
// hashicorp/go-plugin, which the author never sees).
//
// A plugin implements Plugin (its Manifest: name, version, owned channel
// prefixes, methods, HTTP routes) and only the optional hooks it needs, each
// a small interface the SDK discovers by type assertion:
//
//   - Configurer: receive the `config` block (Config.Decode, which reports
//     every problem, each naming its key path so that Herald reports it at
//     the key's line) and
//     the Host; in a dry run (Config.DryRun, `herald validate`) only check
//     the config and open nothing;
//   - Authorizer: accept or refuse subscriptions to its channels;
//   - EventHandler: learn of connections and subscriptions;
//   - Drainer: finish work before being stopped;
//   - ExpiryKeeper: keep subscriptions to some prefixes across token expiry.
//
// The Host handle emits notifications (acknowledged: Emit returns once they
// are in channel history), subscribes connections to the plugin's channels,
// reads presence and calls methods of a client's local interface;
// FollowChannel reads one of the plugin's channels from a position and
// follows it live (to stream it over HTTP, or to rebuild state from it).
// Inside a method, Call.Subscribe subscribes the caller in step with the
// reply: the client reads the answer before the channel's first
// notification.
// main is one line: sdk.Serve(p). Package sdktest runs a plugin in-process
// over the real protocol for unit tests.
//
// This package speaks plain Go types; the protocol (sdk/proto) is the
// host's and the SDK's business. It must not import anything under core/.
package sdk
