// Package wsepoll reads the WebSocket frames a server sends to many
// clients with a few goroutines instead of one per client: a Poller waits
// in epoll on every client's socket, reads each ready one until it is
// drained, and parses the server's frames itself (Parse, Stream), keeping
// each client's unfinished frame until the rest arrives. Each whole data
// frame goes to that client's Client with the time the read that completed
// it returned, so nothing the poller does afterwards is hidden from a
// latency measured against it. Pings are answered; a close frame, a frame
// this package refuses and the end of the socket end the client.
//
// It exists for the load generators (cmd/herald-bench, cmd/plugin-bench),
// which share the bench machine's CPUs with the server they measure: per
// frame a poller costs one read(2) and no goroutine switch. It knows the
// WebSocket framing of RFC 6455 as a client sees it and nothing above it:
// not JSON-RPC, not Centrifugo, not how a tool counts what a frame holds,
// nor how the connection was opened (the tools dial with gorilla and hand
// over the socket). It must not be imported by herald itself: a server
// needs its peer's masked frames, extensions and a goroutine's back
// pressure, none of which this has.
//
// The parser builds everywhere; the Poller is Linux only (epoll).
package wsepoll
