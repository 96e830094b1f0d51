// Package hub knows who is subscribed to what on this node, fans each
// publication out to the channel's subscribers, keeps presence counts, and
// joins a channel's history to its live stream when a client subscribes, so
// that a resuming client sees every publication once, in order. A
// subscriber with a bounded queue (Pager) gets its missed publications a
// page at a time as it drains; the live ones buffered for it meanwhile are
// bounded (SetRecoveryLimit) and read again from the history past that
// bound; one whose gap the history no longer covers is told (Resyncer), as
// is every subscriber of a channel whose run changed (RunChanged: a NATS
// channel whose history aged out and starts again from seq 1 in a new
// epoch), before the new run's first publication.
//
// It does not know about WebSockets (a Subscriber only queues) nor where
// publications come from (the broker calls HandlePublication).
package hub
