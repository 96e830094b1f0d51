// Package transport carries herald's JSON-RPC frames over WebSocket. A Conn
// owns one socket: a reader loop that hands each frame to its handler, and
// an outbox that batches publications into onNotificationReceived calls
// (oldest first, at most MaxBatch per call, after at most MaxDelay) and
// keeps replies, server calls and control frames in order with them.
//
// Writing is shared: every connection belongs to one of a few writer shards
// (Options.Writers), each a queue of ready connections and at most one
// goroutine, which exists only while the queue has work. A connection's
// turn writes all its pending frames with one non-blocking send; a writer
// takes up to 256 ready connections at a time, and on Linux hands four or
// more of them to the kernel with one io_uring submission
// (uring_linux.go; Options.NoURing, or a kernel that refuses io_uring,
// keeps one write(2) each). A
// socket that cannot take them (a slow reader) gets a goroutine of its own,
// bounded by WriteTimeout, until it has caught up. So a broadcast to 10k
// connections is a handful of goroutines, not 10k, and a connection that
// falls behind gets larger frames rather than more of them. See
// docs/performance.md for the measurements behind this.
//
// Idle connections are cheap: no writer, no timer, no write buffer, no
// read buffer, and on Linux no reader goroutine either. Serve registers a
// connection with one epoll set for the process (readiness_linux.go); its
// input starts a short-lived goroutine that handles frames while input
// waits, then re-arms the registration and ends. gorilla reads through a
// framer (framer.go) that hands it one frame at most per read, so that its
// buffer is empty whenever it returned a message, and that takes pings and
// pongs itself: "does more input wait?" is then answered without blocking.
// Elsewhere (other platforms, TLS, sockets without a descriptor) a reader
// goroutine per connection (ReadLoop) parks with a small stack, frames
// being handled on short-lived goroutines. A connection whose outbox passes its bounds (OutboxLimit items,
// OutboxBytes bytes, replies included) and whose socket takes no more of it
// is a slow consumer and is closed with 4008 so that it cannot hold memory
// or slow others down. A publisher that finds an outbox full first writes
// it out itself, without blocking: a connection that reads is never taken
// for a slow one because the writers had not got to it yet.
//
// Replies, control frames and close frames never wait for a batch: a
// connection waiting for its batching delay is queued again for now.
//
// Delivery is measured without cost to fan-out: a publication carries its
// accept time, and the Observer is told once per completed write the age
// of the oldest live publication in it (DeliverMissed marks those a resume
// hands over, whose age is not a latency); slow-consumer closes carry their
// reason (SlowReason).
//
// Every write to the socket goes through this writer, gorilla's own close
// frames included (Upgrade), so that nothing lands inside a frame.
//
// It knows nothing of sessions, channels or authentication.
package transport
