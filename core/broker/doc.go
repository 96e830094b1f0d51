// Package broker owns what happens to a notification once herald accepts it:
// it gets the next seq of its channel, is encoded once into the JSON that
// every subscriber will receive, is kept in the channel's history, and is
// handed to the node's Handler for fan-out.
//
// Broker is the seam for clustering: the memory broker serves one process; a
// NATS JetStream broker keeps seq and history in a stream so that any node
// can resume any client. Both obey the same shared test suite
// (brokertest): seq without gaps, history that resumes exactly (after
// expiry, sweeps and wrap-around), all-or-nothing publishes, and publishes
// that never land in a stream a sweep discarded.
//
// The memory broker bounds its history in bytes (MemoryOptions.MaxBytes):
// over the bound, the least recently published channels lose their history
// and get a new epoch, so that a resuming client is told to reload rather
// than given a gap.
//
// The broker knows nothing of connections or subscriptions; the hub does.
package broker
