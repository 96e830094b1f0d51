// Package config loads and validates herald's HCL configuration file.
//
// It owns the file's schema (the blocks and keys of CONTRACT.md section 6),
// their defaults (Defaults), the env() function, and every check that can be
// made without running anything: types, ranges, required keys, unknown or
// duplicate names. Each problem is reported with its file:line:col and key
// path, all of them at once, as a Diagnostics error.
//
// It knows nothing of what the settings do: it does not listen, dial the
// broker or start plugins. A plugin's config block is handed over as plain
// Go values for the plugin to decode; only the plugin knows its schema.
// Plugin.Hash lets the code that reloads the config tell changed plugins
// from unchanged ones without knowing that schema either. An emit_channels
// entry is checked by sdk/confine, the package that also matches channels
// against it (in the plugin host and in sdktest).
package config
