package server

import (
	"encoding/json"
	"sync"
	"time"
)

// maxIdempotencyKey bounds an Idempotency-Key header, in bytes.
const maxIdempotencyKey = 255

// idemOverhead is what a remembered answer costs beyond its key and its
// JSON: the entry, its map slot and its place in the order.
const idemOverhead = 160

// idempotency remembers the answers to publish requests by their
// Idempotency-Key for ttl (history.ttl; 0 or less: with no time limit, as
// the history then is), so that a retried request publishes nothing
// again. Keys are scoped by the API key that sent them: two backends that
// happen to use the same key never see each other's answers. The memory it
// holds is bounded by maxBytes: over it, the oldest answers are forgotten
// first. A request arriving while the first with its key is still running
// waits for that one's answer.
//
// A run that failed (status >= 500) is not kept, so that a retry can
// succeed; this is safe because a publish is all or nothing
// (broker.Broker.Publish): a failed one published nothing, so its retry
// duplicates nothing.
type idempotency struct {
	ttl      time.Duration
	maxBytes int64

	mu      sync.Mutex
	entries map[string]*idemEntry
	order   []*idemEntry // insertion order, for expiry and the byte bound
	bytes   int64
}

type idemEntry struct {
	key    string // scope and key
	done   chan struct{}
	status int
	reply  []byte
	at     time.Time
	cost   int64
}

func newIdempotency(ttl time.Duration, maxBytes int64) *idempotency {
	return &idempotency{ttl: ttl, maxBytes: maxBytes, entries: make(map[string]*idemEntry)}
}

// do runs f once per scope and key within ttl and returns its answer, as
// JSON, to every caller. An empty key always runs f.
func (c *idempotency) do(scope, key string, f func() (int, any)) (int, []byte) {
	if key == "" {
		return encodeReply(f())
	}
	full := scope + "\x00" + key
	now := time.Now()
	c.mu.Lock()
	c.expireLocked(now)
	if e, ok := c.entries[full]; ok {
		c.mu.Unlock()
		<-e.done
		return e.status, e.reply
	}
	e := &idemEntry{key: full, done: make(chan struct{}), at: now, cost: int64(len(full)) + idemOverhead}
	c.entries[full] = e
	c.order = append(c.order, e)
	c.bytes += e.cost
	c.mu.Unlock()

	status, reply := encodeReply(f())
	c.mu.Lock()
	e.status, e.reply = status, reply
	close(e.done)
	if c.entries[full] == e {
		if status >= 500 {
			delete(c.entries, full)
			c.bytes -= e.cost
			e.cost = 0
		} else {
			e.cost += int64(len(reply))
			c.bytes += int64(len(reply))
		}
	}
	c.expireLocked(now)
	c.mu.Unlock()
	return status, reply
}

// expireLocked forgets answers older than ttl (none for age when ttl is 0
// or less), and the oldest answers while the table is over its byte bound. A run still going is never forgotten
// (its waiters need it): it and what follows wait for a later pass.
func (c *idempotency) expireLocked(now time.Time) {
	n := 0
	for n < len(c.order) {
		e := c.order[n]
		if (c.ttl <= 0 || now.Sub(e.at) <= c.ttl) && c.bytes <= c.maxBytes {
			break
		}
		if c.entries[e.key] == e {
			select {
			case <-e.done:
				delete(c.entries, e.key)
				c.bytes -= e.cost
			default:
				c.order = append(c.order[:0:0], c.order[n:]...)
				return
			}
		}
		c.order[n] = nil
		n++
	}
	if n > 0 {
		c.order = append(c.order[:0:0], c.order[n:]...)
	}
}

// size reports the remembered answers and their bytes (for tests).
func (c *idempotency) size() (entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

func encodeReply(status int, reply any) (int, []byte) {
	b, err := json.Marshal(reply)
	if err != nil {
		return 500, []byte(`{"error":{"code":-32603,"message":"internal error: encoding the reply failed"}}`)
	}
	return status, append(b, '\n')
}
