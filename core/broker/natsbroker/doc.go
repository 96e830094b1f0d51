// Package natsbroker is a broker.Broker on NATS JetStream, shared by every
// herald node of a cluster: any node places a notification in its channel
// with the next seq, keeps the channel's history, and feeds the
// publications of the channels it has subscribers on to its hub. Clients
// see the same seq, id and data on every node, and resume on any node.
//
// The package owns the stream layout, the per-channel seq, the epochs and
// the delivery of live publications to a node. It knows nothing of
// connections, subscriptions or HTTP: the hub tells it which channels to
// watch (broker.Interest), the server owns the NATS connection (and its
// options) and the config. It imports core/broker only.
//
// # Streams and subjects
//
// Two streams, both created by New (or updated: every node calls New with
// the same options; New sets only the fields it governs, and keeps the
// operator's other settings such as max_msg_size or placement):
//
//   - HERALD (Options.Stream) holds the notifications, on subjects
//     <prefix>.ch.<token>, one subject per channel. Limits retention:
//     MaxMsgsPerSubject = history.size (at least 1, so that the last seq
//     survives; History then answers nothing when history.size is 0),
//     MaxAge = history.ttl, MaxBytes with DiscardNew (a full stream refuses
//     new publications, ErrFull, rather than silently dropping a channel's
//     history), Duplicates = the de-duplication window (history.ttl),
//     AllowDirect (reads served by every replica), AllowAtomicPublish, and
//     RePublish <prefix>.ch.> to <prefix>.live.>.
//   - HERALD_RUNS holds one run record per channel that ever had a
//     publication, on <prefix>.run.<token>: no age limit, one message per
//     subject (see Epochs).
//
// A channel's token is its name with '%', '.', '*', '>' (and any byte
// outside '!'..'~', which herald's channel names never have) written %XX,
// so that any name is one subject token; FuzzToken checks the round trip.
//
// A stored message is one notification. Its data is the notification as
// clients receive it (broker.Encode: id, channel, seq, timestamp, event,
// object), so that no node decodes or encodes it again; its headers carry
// Herald-Seq, Herald-Epoch, Herald-Id, Herald-Accepted (for the delivery
// latency metric) and Herald-More (the publication is not its publish's
// last), and Nats-Msg-Id when the publish is idempotent.
//
// # Per-channel seq
//
// A notification's seq is the seq of its channel's last message plus one,
// and the publish carries Nats-Expected-Last-Subject-Sequence: the stream
// sequence of that last message. JetStream stores it only if the channel
// has not moved meanwhile, so two nodes can never both take a seq: the
// loser gets "wrong last sequence", reads the channel's last message
// (one direct get) and retries. Seqs therefore never fork nor skip,
// whichever nodes publish. Each node remembers where the channels it
// published to stand (Options.CacheChannels of them), so that an
// uncontended publish is one round trip; this node's own publishers to one
// channel wait for each other (a mutex per channel) rather than race at
// the server. A publish gives up after Options.PublishTimeout.
//
// The alternative, one owner node per channel that assigns seqs, needs
// ownership, hand-over on failure and forwarding: a second consensus next
// to JetStream's. The expected sequence uses JetStream's own.
//
// Cost (this repository's 2-core test machine, one nats-server in process,
// R1, loopback; BenchmarkPublish, BenchmarkPublishContended,
// BenchmarkWatchToDelivery; the machine was shared, so the ranges are of
// several runs): a publish is one round trip, 145-215µs (the memory
// broker's, in the same runs, 17µs); two nodes with two publishers each on
// one channel place one notification per 170-245µs together, with 0.05 to
// 0.12 retries per publish; a publication reaches another node's Handler
// 85-100µs (p50) after Publish was called, p99 0.5-4ms. A channel's
// throughput is bounded by one round trip per publication (its publishers
// are serialized by the expected sequence); channels are independent.
//
// # Publishes of several notifications
//
// One notification is a plain JetStream publish. Several are one atomic
// batch (Nats-Batch-Id, Nats-Batch-Sequence, Nats-Batch-Commit on the
// last): stored all together, consecutively, or not at all; the
// acknowledgement names the last one's stream sequence. What the server
// (v2.15.2, jetstream_batching.go, stream.go) allows in a batch, and what
// the broker does about it:
//
//   - Nats-Expected-Last-Subject-Sequence is refused on a subject the batch
//     already wrote (WrongLastSequenceConstant, 10164). Only a channel's
//     first notification in the batch carries it; the later ones cannot be
//     raced, the batch being applied at once.
//   - A Nats-Msg-Id seen within the window fails the whole batch (10201)
//     without saying where the original is. The broker then probes the
//     first notification's MsgID with a plain publish that also carries a
//     Nats-Expected-Last-Msg-Id that cannot match: JetStream checks
//     duplicates first, so a duplicate is answered with the original's
//     stream sequence and anything else is refused (nothing is stored).
//     The original batch is read from there (it is consecutive) and
//     returned. A batch whose MsgIDs were partly published before under
//     another grouping is an error (and, on a replicated stream, the probe
//     of a MsgID that was not published may leave JetStream treating it as
//     in flight for the window: such a MsgID is refused meanwhile).
//   - Nats-Expected-Last-Msg-Id is refused in a batch (10177); not used.
//   - A batch holds at most 1000 messages (the server's max_batch_size):
//     Publish refuses more. At most 50 batches per stream are in flight
//     (10210): the publish waits a moment and retries.
//   - A notification over NATS's max_payload is refused before anything is
//     sent; one the stream refuses in the middle (its max_msg_size) makes
//     the commit fail as incomplete (10176): nothing is stored.
//
// A publish whose acknowledgement does not come (timeout, or the caller's
// context ends after the commit was sent) may have been stored: the broker
// reads the channel after its expected sequence and answers success if its
// first notification is there (the batch being all or nothing), else an
// error wrapping broker.ErrUnavailable.
//
// # Idempotency
//
// Notification.MsgID becomes Nats-Msg-Id; the stream's Duplicates window
// is Options.DuplicateWindow (history.ttl). With a HistoryTTL of 0 (no age
// limit) it is JetStream's default of two minutes, not unlimited: JetStream
// keeps every id of its window in memory, with no bound on their number. A duplicate is answered with
// the original publication, read by its stream sequence, so a retry
// through any node gets the same seq and id. A retry's expected sequence is
// stale (the original moved the channel): a standalone server checks it
// before duplicates and answers "wrong last sequence"; the broker reads the
// channel again, retries with a current expectation, and the duplicate
// check then answers. A clustered stream checks duplicates first.
//
// # Epochs
//
// A channel's epoch must be the same on every node and change only when its
// history is really lost. The base is the stream's creation time (every
// node reads the same; a stream deleted and created again gives every
// channel a new epoch; Ready notices it and forgets what the node
// remembered). A channel that never had a publication is at {0, base}:
// asking costs a direct get, and nothing is stored for it.
//
// A channel's history is lost when all of its messages aged out. Its next
// publication must not reuse the old seqs in the same epoch, or a client
// holding a position of the old run would be "recovered" with
// publications of the new one. Each run of a channel (its publications
// from seq 1) has a number; its epoch is the base for run 1 and base.n for
// run n. A run's number is kept in the runs stream, written (with an
// expected last subject sequence, so that two nodes cannot both start run
// n) before the run's first publication: the position of a channel with no
// message is {0, epoch of its next run}, and stays valid when that run
// starts. Between a run's record and its first publication (one round
// trip, or for ever if the publish failed) the channel has no message and
// a record n: if the record is younger than half the history TTL (or
// nothing ages out), run n cannot have had a publication that aged out,
// so it is the run to join (position {0, epoch n}) and a publisher starts
// it without a new record; an older record means run n is over and n+1 is
// next. Half, so that the clocks of a node and of the NATS server may
// differ by up to half the TTL. Run records have no age limit: one small message per channel
// that ever had a publication (channels never published to keep nothing).
//
// JetStream's subject delete markers (SubjectDeleteMarkerTTL) were the
// first design, and do not do it: a marker is itself removed by the
// stream's MaxAge, and a message TTL is raised to at least the marker TTL,
// so a marker outlives its channel's last message by about history.ttl
// only; a client away longer would be resumed into a new run with the same
// epoch. The records are in a stream of their own because the age expiry
// of a stream walks its old messages on every pass, and records never
// expire.
//
// While a channel keeps messages, its run goes on (like the memory
// broker's, a publication after its predecessors expired continues the
// seq).
//
// A node that watches a channel when it starts a new run has subscribers
// holding positions of the old one, which seq 1 of the new run does not
// continue. Before the dispatcher hands over a publication of another
// epoch than the Handler's last (the new run's first), or when a marker
// opens a run, it tells a Handler that implements broker.RunHandler
// (found once, by SetHandler) with the new run's position, {0, new
// epoch}: the hub sends a $server resync to the subscribers of the old
// run. Every node watching the channel notices it in its own live stream
// and tells its own Handler; a node that began watching after the old run
// was over has a baseline in the new epoch and is not told. The check is
// the epoch comparison the dispatcher makes anyway. History applies history.ttl itself too: JetStream's expiry runs a
// moment late, and a message older than the ttl is not offered.
//
// Residual: purging the whole stream (not deleting it) empties every
// channel and every run record without changing the base: run 1 of each
// channel would come again. Delete the streams instead; purging one
// channel's subject is fine (its record survives).
//
// # History and Position
//
// Position is one direct get of the channel's last message, answered by
// any replica, and one of its run record sent at the same time (needed
// when the channel has no message: a channel never published to, the
// most common subscription, then costs one round trip, not two).
// Positions answers for many channels with one multi-last request per 256
// of them, for a subscribe to many channels. History reads the last message and, when the client missed
// something that history.size can hold, every message the channel keeps
// in one batched direct get (at most history.size messages); with a
// history of at most 64 it reads everything in one round trip. A direct
// get while no replica serves them (a stream being created, a leader
// being elected) is asked again until Options.PublishTimeout.
//
// Direct gets are served by followers too, which may lag the leader a
// little (a follower serves them once nearly synchronized): a read right
// after another node's publish may not show it yet. Nothing relies on
// such a read being current: a stale read in Publish costs a retry (after
// two lost races in a row, the channels are read from the stream's leader
// through the JetStream API, which is current), and the live delivery
// below fills gaps from what it receives.
//
// # Delivery to the node
//
// The stream republishes each stored message to <prefix>.live.<token>, in
// stream order: only stored messages reach nodes. Watch subscribes to the
// channel's live subject (a SUB on the connection, no round trip: the hub
// calls it under its locks); every watched subject delivers into one
// shared Go channel (Options.LiveBuffer), drained by one router goroutine
// that passes each message to its channel's dispatcher goroutine
// (Options.Dispatchers, sharded by channel). A node therefore receives and
// processes only the channels it has subscribers on: adding nodes adds
// fan-out capacity. With one dispatcher (the default) publications are
// handed over in stream order across channels, as the contract asks
// ("across channels in the order Herald accepted them"); more dispatchers
// fan out in parallel and keep the order per channel only.
//
// Per watched channel the dispatcher keeps the last message handed over
// (stream sequence, seq, epoch). The baseline is the first History or
// Position answer after Watch (the hub's read of the channel's history):
// live messages that arrive before it wait for it. Later History and
// Position answers for a watched channel are ones its Handler has reached:
// they read the stream, then wait (at most PublishTimeout) until the live
// delivery has handed over what they read, else answer where the Handler
// stands. The stream is ahead of the live delivery by a republish, and
// the hub skips by seq only what it buffered while a subscriber joined:
// a second subscriber told a position the Handler had not reached would
// get the publications in between twice (TestNATSHubJoinWhileAnotherNode
// Publishes found it). A message dealt with
// already is dropped; a message that does not follow (core NATS dropped
// some, or they were placed before the interest reached the stream's
// server) makes the dispatcher read the channel from the stream after what
// it has and hand everything over in order first. If that read fails or
// comes from a replica that does not have the message yet, the message
// waits for the next tail check, which reads it again.
//
// Interest reaches the other NATS servers asynchronously, so what is placed
// right after the hub's read may not be republished to this node. A tail
// check runs Options.TailCheckDelay after a Watch: it reads the last
// message of every channel watched meanwhile (one multi-last direct get
// per 256 channels) and hands over what the Handler misses. Its answer
// goes through the shared Go channel, behind the live messages received
// before it: on one server those are the messages it found, and filling
// them from the stream ahead of the queue would hand one channel's
// publications before another's that were placed first. After a
// reconnect (the connection's reconnect handler, chained to the caller's)
// every watched channel's tail is checked the same way, three more times
// at intervals, because a replica that is catching up may answer before it
// has the tail; and after a slow consumer error (the shared channel was
// full, the connection's error handler) the channel's tail is checked.
//
// # Failures
//
// A node may start while NATS is unreachable (its connection made with
// nats.RetryOnFailedConnect): New returns a broker that answers
// ErrUnavailable, and Ready says why, until it has set its streams up,
// which it tries every ReadyCache; then it checks the tail of every
// channel watched meanwhile.
//
// Publish checks the connection first and fails at once, wrapping
// broker.ErrUnavailable, while NATS is unreachable (the caller's
// connection must not buffer: nats.ReconnectBufSize(-1)); while JetStream
// has no quorum or no stream leader it fails within PublishTimeout (no
// responders or a timeout), also with ErrUnavailable. A publication that
// timed out may still be placed: a leader that had lost its quorum
// without knowing it yet keeps it in its log, and places it if it is
// elected again when the others are back (a retry with the same MsgID is
// not placed twice). Ready (broker.Checker, for /readyz) says whether a publish can
// succeed now, cached for Options.ReadyCache: the connection is up and each
// stream (the notifications' and the runs') has a leader with a majority
// of its servers current and not offline, read from the stream's info.
// That the info answers is not enough: without a quorum it still does,
// from a leader that has not noticed yet (for about twenty seconds), then
// from any server left, naming no leader. A full stream answers ErrFull,
// which wraps ErrUnavailable; Ready does not look at how full it is.
//
// Close unsubscribes every watched channel and stops the broker's
// goroutines; it does not close the connection.
package natsbroker
