// Package jsstate keeps one plugin's state (state.Store) in a JetStream
// key-value bucket, shared by the plugin's processes on every node of a
// cluster.
//
// The bucket (Options.Bucket, "herald_state_<plugin>" from the host) keeps
// one message per key (History 1), on Options.Replicas, bounded by
// Options.MaxBytes, with LimitMarkerTTL set so that per-key TTLs work and
// expiries leave markers watchers see. It needs nats-server 2.11 or later;
// Open says so on an older one.
//
// Revisions are the stream's sequence numbers: they grow per key and across
// keys, on every node alike. Create is the KV create (one winner among
// nodes, also over a deleted or expired key); Update and Delete with a
// revision are JetStream's expected-last-subject-sequence; a TTL is the
// message's Nats-TTL (whole seconds, rounded up), sent on the same message
// the KV API sends, since nats.go offers a per-key TTL only on Create.
// Delete is a purge whose marker lives Options.MarkerTTL, so deleted keys do
// not hold room for ever. The server removes an expired key on its expiry
// timer: until then a read may still see it, briefly; the removal is
// the Deleted change. Update and Delete read the key first: a revision
// taken from a Deleted change is that of a marker, and must not revive the
// key.
//
// Keys: a state key's "/" become the KV key's "." token separators; inside
// a segment the bytes [-_=a-zA-Z0-9] stand for themselves and every other
// byte is "/" and two upper-case hex digits ("a/b.c:d" is "a.b/2Ec/3Ad").
// A prefix "a/b/" is the filter "a.b.>". Escaping does not keep byte order,
// so List sorts the keys it decodes. The longest key (1024 bytes) becomes
// at most 3072 bytes of subject.
//
// Values: a value of state.MaxValueBytes needs a NATS max_payload above
// 1 MiB (the server's default is exactly 1 MiB); with a smaller one such a
// write is ErrTooLarge naming max_payload.
//
// Failures: while the connection is not up every operation fails at once
// with an error wrapping state.ErrUnavailable; otherwise one operation
// waits at most Options.Timeout. Watch runs an ordered consumer of every
// message of the bucket from the sequence after the stream's last (read
// before the consumer is made), filtering keys by prefix itself: the bucket
// keeps one message per key, so a consumer that is behind never gets the
// messages of keys written again or deleted meanwhile, and only a hole in
// the sequence shows it; Watch then gives f a Reset. When the connection
// comes back it starts a new consumer and gives f a Reset; when the
// connection is closed for good it ends with ErrUnavailable.
//
// The package knows nothing of plugins or the host's RPCs; the caller owns
// the NATS connection and validates keys (state.ValidKey).
package jsstate
