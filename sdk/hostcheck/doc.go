// Package hostcheck is what Herald's plugin host checks in what a plugin
// sends it, in one place for the two sides that apply it: the host
// (core/pluginhost, core/server) and the test harness a plugin author runs
// a plugin in (sdk/sdktest). A plugin that passes its sdktest tests is then
// held to the very checks Herald holds it to, with the same codes and
// messages, not to a copy of them.
//
// It checks a call's result (Result), maps a plugin's error to the code its
// caller gets (PluginError), checks an Authorize answer (Refusals), the
// method and params of a call to a client's local interface (ClientMethod,
// ClientParams) and an emitted notification's object (EmitObject), and
// holds the bound on a method's declared timeout (MethodTimeout). For the
// plugins' HTTP routes it says which callers a route takes (RouteCaller),
// which headers reach the plugin (ForwardedHeader) and what a request no
// route serves is answered (Unrouted). It lists what Herald refuses in
// one plugin's manifest on its own (Manifest: Prefix, ExpiryKept,
// Register, CoreCollision); what plugins claim against each other is the
// host's.
//
// It must stay pure (no I/O, no state) and import nothing of Herald's core,
// so that core and the SDK may both import it; its errors carry a code of
// package codes and Herald's message, which each side wraps in its own
// error type.
package hostcheck
