package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// pool is the soak's WebSocket clients: each subscribes to one open
// channel and one of the plugin's, and reads (counting notifications) until
// it is closed.
type pool struct {
	url      string
	channels int
	cnt      *counters

	mu      sync.Mutex
	clients []*websocket.Conn
	readers sync.WaitGroup
}

func newPool(url string, channels int, cnt *counters) *pool {
	return &pool{url: url, channels: channels, cnt: cnt}
}

func (p *pool) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

// dial opens one client, subscribes it and starts its reader.
func (p *pool) dial(ctx context.Context) error {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.DialContext(ctx, p.url, nil)
	if err != nil {
		p.cnt.add(func(c *counters) { c.dialFailed++ })
		return fmt.Errorf("dial %s: %w", p.url, err)
	}
	k := rand.IntN(p.channels)
	sub := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"channels":["soak-%d","tester:ok-%d"]}}`, k, k)
	if err := ws.WriteMessage(websocket.TextMessage, []byte(sub)); err != nil {
		ws.Close()
		p.cnt.add(func(c *counters) { c.dialFailed++ })
		return fmt.Errorf("subscribe: %w", err)
	}
	p.mu.Lock()
	p.clients = append(p.clients, ws)
	p.mu.Unlock()
	p.readers.Add(1)
	go p.read(ws)
	return nil
}

var seqKey = []byte(`"seq":`)

func (p *pool) read(ws *websocket.Conn) {
	defer p.readers.Done()
	defer p.remove(ws)
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
		if n := bytes.Count(buf.Bytes(), seqKey); n > 0 && bytes.Contains(buf.Bytes(), []byte("onNotificationReceived")) {
			p.cnt.add(func(c *counters) { c.received += n })
		}
	}
}

func (p *pool) remove(ws *websocket.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.clients {
		if c == ws {
			p.clients[i] = p.clients[len(p.clients)-1]
			p.clients = p.clients[:len(p.clients)-1]
			break
		}
	}
	_ = ws.Close()
}

// fill opens clients until n are open, 32 dials at a time.
func (p *pool) fill(ctx context.Context, n int) error {
	for ctx.Err() == nil {
		missing := n - p.open()
		if missing <= 0 {
			return nil
		}
		var wg sync.WaitGroup
		errs := make(chan error, missing)
		sem := make(chan struct{}, 32)
		for range missing {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := p.dial(ctx); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err, failed := <-errs; failed && p.open() == 0 {
			return err
		}
	}
	return ctx.Err()
}

// churn closes k random clients and opens k new ones.
func (p *pool) churn(ctx context.Context, k int) {
	p.mu.Lock()
	// k distinct ones: a partial shuffle of a copy.
	all := append([]*websocket.Conn(nil), p.clients...)
	p.mu.Unlock()
	k = min(k, len(all))
	for i := range k {
		j := i + rand.IntN(len(all)-i)
		all[i], all[j] = all[j], all[i]
	}
	victims := all[:k]
	for _, ws := range victims {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		_ = ws.Close() // its reader removes it
	}
	for range len(victims) {
		if p.dial(ctx) == nil {
			p.cnt.add(func(c *counters) { c.churned++ })
		}
	}
}

func (p *pool) closeAll() {
	p.mu.Lock()
	all := append([]*websocket.Conn(nil), p.clients...)
	p.mu.Unlock()
	for _, ws := range all {
		_ = ws.Close()
	}
	p.readers.Wait()
}
