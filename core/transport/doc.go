// Package transport carries herald's JSON-RPC frames over WebSocket. A Conn
// owns one socket: a reader loop that hands each frame to its handler, and
// an outbox that batches publications into onNotificationReceived calls
// (oldest first, at most MaxBatch per call, after at most MaxDelay) and
// keeps replies and server calls in order with them.
//
// Idle connections are cheap: no writer goroutine exists until something is
// queued, and write buffers come from a shared pool. A connection whose
// outbox passes its limit is a slow consumer and is closed with 4008 so that
// it cannot hold memory or slow others down.
//
// It knows nothing of sessions, channels or authentication.
package transport
