// Package state keeps the plugins' State capability (sdk.State) on the
// host's side: one namespace per plugin, in a bbolt file on one node or in
// a JetStream key-value bucket in a cluster.
package state
