// Package confine is the rule of which channels a plugin may touch, in one
// place for the two sides that apply it: Herald's plugin host
// (core/pluginhost) and the test harness a plugin author runs a plugin in
// (sdk/sdktest). A plugin that passes its sdktest tests is then held to
// the very rule Herald holds it to, not to a copy of it.
//
// A Rule is a plugin's manifest prefixes and its `plugin` block's
// emit_channels: it says whether a channel is one of the plugin's own
// (Owns: subscribe, presence, follow; NotOwned is the message refusing
// another) and whether the plugin may emit to it (MayEmit). CheckEntry is
// the check Herald's config applies to one emit_channels entry, and
// EmitRefusal the message a plugin gets when an emit is refused by the
// rule.
//
// It knows nothing of what is running: whether some plugin owns a channel's
// namespace, or whether auth.open_channels is on, is the host's to check
// at the time of the emit. It must stay pure (no I/O, no state beyond the
// Rule) and import nothing of Herald, so that core and the SDK may both
// import it.
package confine
