package transport_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/core/broker"
	"github.com/heraldhq/herald/core/transport"
)

// pair is server-side Conns with loopback WebSocket clients that read and
// count what arrives.
type pair struct {
	conns   []*transport.Conn
	clients []*websocket.Conn
	frames  atomic.Int64
	notifs  atomic.Int64
	target  atomic.Int64
	mu      sync.Mutex
	cond    *sync.Cond
	wg      sync.WaitGroup
	srv     *httptest.Server
}

func newPairs(tb testing.TB, n int, opts *transport.Options) *pair {
	p := &pair{}
	p.cond = sync.NewCond(&p.mu)
	up := websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 4096, WriteBufferPool: &sync.Pool{}}
	accepted := make(chan *transport.Conn, n)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := transport.NewConn(ws, opts)
		accepted <- c
		go func() { _ = c.ReadLoop(func([]byte) {}) }()
	}))
	url := "ws" + strings.TrimPrefix(p.srv.URL, "http")
	for range n {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			tb.Fatalf("dial: %v", err)
		}
		p.clients = append(p.clients, ws)
		p.conns = append(p.conns, <-accepted)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var buf bytes.Buffer
			for {
				_, r, err := ws.NextReader()
				if err != nil {
					return
				}
				buf.Reset()
				if _, err := buf.ReadFrom(r); err != nil {
					return
				}
				p.frames.Add(1)
				if p.notifs.Add(int64(bytes.Count(buf.Bytes(), []byte(`"seq"`)))) >= p.target.Load() {
					p.mu.Lock()
					p.cond.Broadcast()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

func (p *pair) close() {
	for _, c := range p.conns {
		c.Close(websocket.CloseNormalClosure, "")
	}
	for _, ws := range p.clients {
		_ = ws.Close()
	}
	p.wg.Wait()
	p.srv.Close()
}

func (p *pair) waitFor(tb testing.TB, notifs int64) {
	p.target.Store(notifs)
	timer := time.AfterFunc(time.Minute, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(time.Minute)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.notifs.Load() < notifs {
		if time.Now().After(deadline) {
			tb.Fatalf("delivered %d of %d", p.notifs.Load(), notifs)
		}
		p.cond.Wait()
	}
}

func publication(seq uint64) *broker.Publication {
	n := broker.Notification{Channel: "bench", Event: "tick", ObjectType: "bench", Object: []byte(`{"sent_ns":1763920000000000000,"n":1}`)}
	return &broker.Publication{Channel: "bench", Seq: seq, ID: "01KBENCH", Data: broker.Encode(nil, &n, "01KBENCH", seq, 1763920000000)}
}

// BenchmarkOutbox delivers publications to real loopback connections as a
// broadcast fan-out does, each to every connection.
//
// flood delivers as fast as it can and reports how many notifications
// shared a frame: coalescing in the outbox is what keeps the writes (and
// syscalls) fewer than the deliveries when the server is loaded.
//
// round delivers one publication to every connection and waits until all
// have it: the cost of a delivery that coalesces with nothing, the worst
// case and the one a lightly loaded server meets.
func BenchmarkOutbox(b *testing.B) {
	for _, conns := range []int{1, 100, 1000} {
		for _, mode := range []string{"flood", "round"} {
			b.Run(fmt.Sprintf("%s/conns=%d", mode, conns), func(b *testing.B) {
				benchOutbox(b, conns, mode == "round")
			})
		}
	}
}

func benchOutbox(b *testing.B, conns int, round bool) {
	opts := &transport.Options{MaxBatch: 128, MaxDelay: 2 * time.Millisecond, OutboxLimit: 1 << 20, WriteTimeout: 10 * time.Second}
	if round {
		opts.MaxDelay = 0 // one publication per connection and round: nothing to wait for
	}
	p := newPairs(b, conns, opts)
	defer p.close()
	pubs := make([]*broker.Publication, 64)
	for i := range pubs {
		pubs[i] = publication(uint64(i + 1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		pub := pubs[n%len(pubs)]
		for _, c := range p.conns {
			c.Deliver(pub)
		}
		n++
		switch {
		case round:
			p.waitFor(b, int64(n*conns))
		case n%1024 == 0:
			// Stay within the outbox limit: a producer that outruns every
			// writer measures nothing but the limit.
			p.waitFor(b, int64((n-512)*conns))
		}
	}
	p.waitFor(b, int64(n*conns))
	b.StopTimer()
	b.ReportMetric(float64(n*conns)/b.Elapsed().Seconds(), "deliveries/s")
	if frames := p.frames.Load(); frames > 0 {
		b.ReportMetric(float64(p.notifs.Load())/float64(frames), "notifs/frame")
	}
}
