// Package state keeps the plugins' State capability (sdk.State) on the
// host's side: one namespace per plugin, in a bbolt file on one node
// (boltstate) or in a JetStream key-value bucket in a cluster (jsstate).
// Both pass one conformance suite (statetest), so a plugin sees the same
// semantics on one node and on many.
//
// The package holds the Store interface, its errors and the key rules
// (ValidKey, ValidPrefix, MinTTL); it knows nothing of plugins, RPCs, bbolt
// or NATS. The host validates keys and prefixes before they reach a Store
// and maps the errors to the SDK's.
package state
