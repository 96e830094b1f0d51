package server

import (
	"sync"
	"time"
)

// idempotency remembers the answers to publish requests by their
// Idempotency-Key for ttl, so that a retried request publishes nothing
// again. A request arriving while the first with its key is still running
// waits for that one's answer.
type idempotency struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[string]*idemEntry
	order   []idemKey // insertion order, for expiry and the size bound
}

type idemKey struct {
	key string
	at  time.Time
}

type idemEntry struct {
	done   chan struct{}
	status int
	reply  any
	at     time.Time
}

func newIdempotency(ttl time.Duration, max int) *idempotency {
	return &idempotency{ttl: ttl, max: max, entries: make(map[string]*idemEntry)}
}

// do runs f once per key within ttl and returns its answer to every caller.
// An empty key always runs f. Failed runs (status >= 500) are not kept, so
// that a retry can succeed.
func (c *idempotency) do(key string, f func() (int, any)) (int, any) {
	if key == "" || c.ttl <= 0 {
		return f()
	}
	now := time.Now()
	c.mu.Lock()
	c.expireLocked(now)
	if e, ok := c.entries[key]; ok {
		c.mu.Unlock()
		<-e.done
		return e.status, e.reply
	}
	e := &idemEntry{done: make(chan struct{}), at: now}
	c.entries[key] = e
	c.order = append(c.order, idemKey{key, now})
	c.mu.Unlock()

	e.status, e.reply = f()
	close(e.done)
	if e.status >= 500 {
		c.mu.Lock()
		if c.entries[key] == e {
			delete(c.entries, key)
		}
		c.mu.Unlock()
	}
	return e.status, e.reply
}

func (c *idempotency) expireLocked(now time.Time) {
	n := 0
	for n < len(c.order) {
		k := c.order[n]
		if now.Sub(k.at) <= c.ttl && len(c.order)-n <= c.max {
			break
		}
		if e, ok := c.entries[k.key]; ok && e.at.Equal(k.at) {
			select {
			case <-e.done:
				delete(c.entries, k.key)
			default:
				// Still running: it and what follows expire on a later pass.
				c.order = c.order[n:]
				return
			}
		}
		n++
	}
	if n > 0 {
		c.order = append(c.order[:0:0], c.order[n:]...)
	}
}
