// Package hub knows who is subscribed to what on this node, fans each
// publication out to the channel's subscribers, keeps presence counts, and
// joins a channel's history to its live stream when a client subscribes, so
// that a resuming client sees every publication once, in order. A
// subscriber with a bounded queue (Pager) gets its missed publications a
// page at a time as it drains; the live ones buffered for it meanwhile are
// bounded (SetRecoveryLimit) and read again from the history past that
// bound; one whose gap the history no longer covers is told (Resyncer).
//
// It does not know about WebSockets (a Subscriber only queues) nor where
// publications come from (the broker calls HandlePublication).
package hub
