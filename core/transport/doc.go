// Package transport carries herald's JSON-RPC frames over WebSocket. A Conn
// owns one socket: a reader loop that hands each frame to its handler, and
// an outbox that batches publications into onNotificationReceived calls
// (oldest first, at most MaxBatch per call, after at most MaxDelay) and
// keeps replies, server calls and control frames in order with them.
//
// Writing is shared: every connection belongs to one of a few writer shards
// (Options.Writers), each a queue of ready connections and at most one
// goroutine, which exists only while the queue has work. A connection's
// turn writes all its pending frames with one non-blocking syscall; a
// socket that cannot take them (a slow reader) gets a goroutine of its own,
// bounded by WriteTimeout, until it has caught up. So a broadcast to 10k
// connections is a handful of goroutines, not 10k, and a connection that
// falls behind gets larger frames rather than more of them. See
// docs/performance.md for the measurements behind this.
//
// Idle connections are cheap: a parked reader with a small stack (frames
// are handled on a short-lived goroutine), no writer, no timer, no write
// buffer. A connection whose outbox passes its limit is a slow consumer and
// is closed with 4008 so that it cannot hold memory or slow others down.
//
// It knows nothing of sessions, channels or authentication.
package transport
