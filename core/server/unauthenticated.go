package server

import (
	"github.com/heraldhq/herald/core/config"
	"github.com/heraldhq/herald/core/rpc"
)

// A connection that has not authenticated yet (no token at connect, none
// sent since, and auth.anonymous off) can do nothing but say hello,
// authenticate, or subscribe with a token in the call (Speakap's
// accessToken), so it gets a much smaller budget until it does: anyone
// who can reach the port can open one. The budget is derived from the
// keys that bound an authenticated connection, documented in
// docs/configuration.md ("Before authentication"):
//
//   - outbox: delivery.outbox_bytes / 16 (64 KiB by default);
//   - calls per second: limits.calls_per_second / 5, at least 1 (10);
//   - entries of one batch: limits.max_batch_calls / 10, at least 1 (10).
//
// A connection with auth.anonymous on is never unauthenticated, and one
// whose token expired keeps the budget it had: it proved who it is once, and
// its refresh must not be refused by the budget meant for strangers.

func preAuthOutboxBytes(cfg *config.Config) int { return cfg.Delivery.OutboxBytes / 16 }

// preAuthCallsPerSecond is the budget before authentication of a
// connection opened with limits.calls_per_second = callsPerSecond.
func preAuthCallsPerSecond(callsPerSecond float64) float64 { return max(1, callsPerSecond/5) }

func preAuthBatchCalls(cfg *config.Config) int { return max(1, cfg.Limits.MaxBatchCalls/10) }

// maxBatchCalls is the bound on one batch's entries for this connection now.
func (s *session) maxBatchCalls() int {
	if s.identified() {
		return s.srv.live().Limits.MaxBatchCalls
	}
	return preAuthBatchCalls(s.srv.live())
}

// rateLimit takes one call (or one invalid batch entry) from the
// connection's budget, or says why it cannot.
func (s *session) rateLimit() *rpc.Error {
	now := monoNow()
	s.mu.Lock()
	cps := s.callsPerSecond
	pre := preAuthCallsPerSecond(cps)
	preOK := s.identifiedLocked() || s.preAuth.allow(now, pre)
	ok := preOK && s.budget.allow(now, cps)
	s.mu.Unlock()
	switch {
	case !preOK:
		return rpc.Errorf(rpc.CodeRateLimited, "rate limited: at most %g calls per second before the connection authenticates (limits.calls_per_second / 5); authenticate, or slow down and retry", pre)
	case !ok:
		return rpc.Errorf(rpc.CodeRateLimited, "rate limited: at most %g calls per second per connection (limits.calls_per_second); slow down and retry", cps)
	}
	return nil
}
