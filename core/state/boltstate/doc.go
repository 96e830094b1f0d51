// Package boltstate keeps one plugin's state (state.Store) in a bbolt file,
// <data_dir>/state.db, on one node.
//
// Every write is one fsynced bbolt transaction and takes the next value of
// one counter kept in the file, so revisions grow per key and across keys
// and go on growing after a reopen. An entry written with a TTL carries its
// expiry and an index entry ordered by expiry: reads, Create and Update
// treat an expired entry as absent at once, and a sweep goroutine (owned by
// the Store, ended by Close) removes it when due, as a write of its own
// that watchers see as Deleted.
//
// MaxBytes counts the keys and values held; expired entries not yet swept
// are swept before a write is refused for room.
//
// Watch is an in-process fan-out of committed changes, in commit order. A
// watcher has a bounded queue (Options.WatchBuffer); one that falls behind
// gets a Reset instead of the changes it missed, and never holds up a
// writer.
//
// The package knows nothing of plugins, the host's RPCs or NATS; the
// caller validates keys (state.ValidKey) and owns the file's directory.
package boltstate
