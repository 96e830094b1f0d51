// Command documents-bench measures the documents plugin end to end: real
// WebSocket clients subscribe to many rooms with mixed filters, writers
// stream document writes through the client API (documents.createOrReplace),
// and every notification's latency is measured from the write's send time,
// carried in the document. It prints writes/s, notifications/s and the
// write→notification latency p50/p99, then a one-line JSON summary.
//
// cmd/documents-bench/bench.sh starts a herald with the documents plugin
// and runs it (`make bench-documents`, part of `make bench`).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/heraldhq/herald/internal/rlimit"
)

type options struct {
	url, secret string
	clients     int
	rooms       int
	writers     int
	docs        int
	duration    time.Duration
	drain       time.Duration
	concurrency int
	action      string
}

func main() {
	var o options
	flag.StringVar(&o.url, "url", "ws://127.0.0.1:7512/ws", "herald's WebSocket URL")
	flag.StringVar(&o.secret, "secret", os.Getenv("HERALD_TOKEN_SECRET"), "auth.token_secret, to mint tokens")
	flag.IntVar(&o.clients, "clients", 1000, "subscribed connections")
	flag.IntVar(&o.rooms, "rooms", 10000, "rooms (distinct filters), spread over the clients")
	flag.IntVar(&o.writers, "writers", 8, "writer connections, each with one write in flight")
	flag.IntVar(&o.docs, "docs", 1000, "distinct documents the writers rewrite")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "how long to write")
	flag.DurationVar(&o.drain, "drain", 5*time.Second, "longest wait for notifications after the last write")
	flag.IntVar(&o.concurrency, "subscribe-concurrency", 32, "clients subscribing at once")
	flag.StringVar(&o.action, "action", "createOrReplace", "the write: createOrReplace (stored, fsynced) or publish (a realtime message, not stored)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "documents-bench:", err)
		os.Exit(1)
	}
}

// conn is one JSON-RPC connection: calls wait for their reply; every
// notification's latency is recorded.
type conn struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	next    int
	replies map[int]chan reply
	done    chan struct{}
	lat     *latencies
}

type reply struct {
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

type frame struct {
	ID     *int            `json:"id"`
	Method string          `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	Params struct {
		Notifications []struct {
			Object struct {
				Result struct {
					Source struct {
						T int64 `json:"t"`
					} `json:"_source"`
				} `json:"result"`
			} `json:"object"`
		} `json:"notifications"`
	} `json:"params"`
}

func dial(ctx context.Context, o options, user string, lat *latencies) (*conn, error) {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(o.secret))
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, o.url+"?token="+url.QueryEscape(tok), nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.url, err)
	}
	c := &conn{ws: ws, replies: map[int]chan reply{}, done: make(chan struct{}), lat: lat}
	go c.read()
	return c, nil
}

func (c *conn) read() {
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		var fs []frame
		if len(b) > 0 && b[0] == '[' {
			if json.Unmarshal(b, &fs) != nil {
				continue
			}
		} else {
			var f frame
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			fs = []frame{f}
		}
		for _, f := range fs {
			if f.Method == "onNotificationReceived" {
				for _, n := range f.Params.Notifications {
					if t := n.Object.Result.Source.T; t > 0 {
						c.lat.add(now - t)
					}
				}
				continue
			}
			if f.ID == nil {
				continue
			}
			c.mu.Lock()
			ch := c.replies[*f.ID]
			delete(c.replies, *f.ID)
			c.mu.Unlock()
			if ch != nil {
				ch <- reply{Result: f.Result, Error: f.Error}
			}
		}
	}
}

func (c *conn) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	c.mu.Lock()
	c.next++
	id := c.next
	ch := make(chan reply, 1)
	c.replies[id] = ch
	c.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	c.wmu.Lock()
	err := c.ws.WriteMessage(websocket.TextMessage, b)
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if len(r.Error) > 0 && string(r.Error) != "null" {
			return nil, fmt.Errorf("%s: %s", method, r.Error)
		}
		return r.Result, nil
	case <-c.done:
		return nil, errors.New("connection closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// latencies keeps every latency in ns; the run is bounded, so is the slice.
type latencies struct {
	mu sync.Mutex
	ns []int64
	n  atomic.Int64
}

func (l *latencies) add(ns int64) {
	l.n.Add(1)
	l.mu.Lock()
	l.ns = append(l.ns, ns)
	l.mu.Unlock()
}

// filterOf is room i's filter: a mix of equality, ranges, in, and and-ed
// equality with a range, all distinct.
func filterOf(i int) map[string]any {
	switch i % 4 {
	case 0:
		return map[string]any{"equals": map[string]any{"cat": fmt.Sprintf("c%d", i/4%2500)}}
	case 1:
		lo := i / 4 % 2500
		return map[string]any{"range": map[string]any{"price": map[string]any{"gte": lo * 4, "lt": lo*4 + 3}}}
	case 2:
		return map[string]any{"in": map[string]any{"tag": []string{fmt.Sprintf("t%d", i/4%2500), fmt.Sprintf("t%d", (i/4+1)%2500)}}}
	default:
		return map[string]any{"and": []any{
			map[string]any{"equals": map[string]any{"cat": fmt.Sprintf("c%d", i/4%2500)}},
			map[string]any{"range": map[string]any{"price": map[string]any{"lt": 5000}}},
		}}
	}
}

func run(o options) error {
	if o.secret == "" {
		return errors.New("-secret (or HERALD_TOKEN_SECRET) is required")
	}
	if _, err := rlimit.RaiseOpenFiles(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lat := &latencies{}

	// Subscribers: rooms spread round-robin over the clients.
	start := time.Now()
	subs := make([]*conn, o.clients)
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range subs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(ctx, o, fmt.Sprintf("sub%d", i), lat)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			subs[i] = c
			for r := i; r < o.rooms; r += o.clients {
				_, err := c.call(ctx, "documents.subscribe", map[string]any{"index": "bench", "collection": "docs", "body": filterOf(r)})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	fmt.Printf("subscribed %d rooms over %d connections in %v\n", o.rooms, o.clients, time.Since(start).Round(time.Millisecond))

	// Writers: createOrReplace of random documents, one in flight each.
	writers := make([]*conn, o.writers)
	for i := range writers {
		c, err := dial(ctx, o, fmt.Sprintf("writer%d", i), &latencies{})
		if err != nil {
			return err
		}
		writers[i] = c
	}
	var writes atomic.Int64
	before := lat.n.Load()
	wstart := time.Now()
	stopAt := wstart.Add(o.duration)
	for i, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for time.Now().Before(stopAt) {
				k := rng.IntN(2500)
				body := map[string]any{"cat": fmt.Sprintf("c%d", k), "price": rng.IntN(10000), "tag": fmt.Sprintf("t%d", rng.IntN(2500)), "t": time.Now().UnixNano()}
				params := map[string]any{"index": "bench", "collection": "docs", "body": body}
				if o.action != "publish" {
					params["_id"] = fmt.Sprintf("d%d", rng.IntN(o.docs))
				}
				_, err := w.call(ctx, "documents."+o.action, params)
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				writes.Add(1)
			}
		}()
	}
	wg.Wait()
	wdur := time.Since(wstart)
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	// Let the last notifications arrive: until none came for 500ms, or drain.
	deadline := time.Now().Add(o.drain)
	last := lat.n.Load()
	for time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		n := lat.n.Load()
		if n == last {
			break
		}
		last = n
	}
	notified := lat.n.Load() - before
	for _, c := range append(subs, writers...) {
		_ = c.ws.Close()
	}

	lat.mu.Lock()
	ns := slices.Clone(lat.ns)
	lat.mu.Unlock()
	slices.Sort(ns)
	pct := func(p float64) float64 {
		if len(ns) == 0 {
			return 0
		}
		return float64(ns[min(len(ns)-1, int(p*float64(len(ns))))]) / 1e6
	}
	sum := map[string]any{
		"scenario": "documents", "action": o.action, "rooms": o.rooms, "clients": o.clients, "writers": o.writers,
		"writes": writes.Load(), "writes_per_s": float64(writes.Load()) / wdur.Seconds(),
		"notifications": notified, "notifications_per_s": float64(notified) / wdur.Seconds(),
		"notifications_per_write": float64(notified) / float64(max(1, writes.Load())),
		"p50_ms":                  pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1),
	}
	fmt.Printf("writes %d (%.0f/s), notifications %d (%.0f/s, %.1f per write), write→notification p50 %.2f ms p99 %.2f ms max %.2f ms\n",
		writes.Load(), sum["writes_per_s"], notified, sum["notifications_per_s"], sum["notifications_per_write"], pct(0.5), pct(0.99), pct(1))
	b, _ := json.Marshal(sum)
	fmt.Println(strings.TrimSpace(string(b)))
	return nil
}
