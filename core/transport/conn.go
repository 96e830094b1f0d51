package transport

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/core/broker"
)

// Close codes of CONTRACT.md section 3.
const (
	CloseGoingAway    = websocket.CloseGoingAway     // 1001 server shutdown
	CloseTooBig       = websocket.CloseMessageTooBig // 1009
	CloseAuthFailed   = 4001
	CloseSlowConsumer = 4008
)

// Options bound one connection's outbox.
type Options struct {
	MaxBatch     int           // notifications per onNotificationReceived call
	MaxDelay     time.Duration // how long a notification may wait for others
	OutboxLimit  int           // queued items before the connection is a slow consumer
	WriteTimeout time.Duration // a write that takes longer fails the connection
	// Observer, if set, learns of batches and slow consumers (metrics).
	Observer Observer
}

// Observer receives delivery events for metrics. Methods must be cheap.
type Observer interface {
	BatchSent(notifications int)
	SlowConsumer()
}

var batchPrefix = []byte(`{"jsonrpc":"2.0","method":"onNotificationReceived","params":{"notifications":[`)
var batchSuffix = []byte(`]}}`)

type item struct {
	pub *broker.Publication
	raw []byte
}

// Conn is one WebSocket connection.
type Conn struct {
	ws   *websocket.Conn
	opts *Options

	mu       sync.Mutex
	items    []item
	flushing bool
	closing  bool // no more items are accepted
	closeMsg []byte

	done      chan struct{}
	closeOnce sync.Once
	closeCode atomic.Int32
}

// NewConn wraps an upgraded WebSocket. opts is shared, not copied: one
// Options serves every connection of a server.
func NewConn(ws *websocket.Conn, opts *Options) *Conn {
	return &Conn{ws: ws, opts: opts, done: make(chan struct{})}
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// Done is closed when the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Deliver queues a publication. It never blocks; a connection over its
// outbox limit is closed as a slow consumer.
func (c *Conn) Deliver(p *broker.Publication) { c.enqueue(item{pub: p}) }

// Send queues a raw JSON-RPC message (a reply or a server call) after what
// is already queued.
func (c *Conn) Send(raw []byte) { c.enqueue(item{raw: raw}) }

func (c *Conn) enqueue(it item) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.items) >= c.opts.OutboxLimit {
		c.closing = true
		c.items = nil
		c.mu.Unlock()
		if c.opts.Observer != nil {
			c.opts.Observer.SlowConsumer()
		}
		go c.abort(CloseSlowConsumer, "slow consumer: outbox limit exceeded")
		return
	}
	c.items = append(c.items, it)
	if !c.flushing {
		c.flushing = true
		c.mu.Unlock()
		go c.flush()
		return
	}
	c.mu.Unlock()
}

// Queued is the number of items waiting in the outbox.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// flush is the connection's writer. It exists only while there is something
// to write: it waits MaxDelay so that publications arriving together leave
// together, then drains the outbox and ends.
func (c *Conn) flush() {
	c.mu.Lock()
	wait := c.opts.MaxDelay > 0 && len(c.items) > 0 && c.items[0].raw == nil && len(c.items) < c.opts.MaxBatch
	c.mu.Unlock()
	if wait {
		t := time.NewTimer(c.opts.MaxDelay)
		select {
		case <-t.C:
		case <-c.done:
			t.Stop()
		}
	}
	buf := getBuffer()
	defer putBuffer(buf)
	for {
		c.mu.Lock()
		if len(c.items) == 0 {
			msg := c.closeMsg
			c.closeMsg = nil
			c.flushing = false
			c.mu.Unlock()
			if msg != nil {
				c.finishClose(msg)
			}
			return
		}
		var frame []byte
		n := 0
		if c.items[0].raw != nil {
			frame = c.items[0].raw
			c.items[0] = item{}
			c.items = c.items[1:]
		} else {
			*buf = append((*buf)[:0], batchPrefix...)
			for n < len(c.items) && n < c.opts.MaxBatch && c.items[n].raw == nil {
				if n > 0 {
					*buf = append(*buf, ',')
				}
				*buf = append(*buf, c.items[n].pub.Data...)
				c.items[n] = item{}
				n++
			}
			*buf = append(*buf, batchSuffix...)
			c.items = c.items[n:]
			frame = *buf
		}
		if len(c.items) == 0 {
			c.items = nil // let a burst's backing array go
		}
		c.mu.Unlock()

		if err := c.write(frame); err != nil {
			c.mu.Lock()
			c.closing = true
			c.items = nil
			c.flushing = false
			c.mu.Unlock()
			c.terminate()
			return
		}
		if n > 0 && c.opts.Observer != nil {
			c.opts.Observer.BatchSent(n)
		}
	}
}

func (c *Conn) write(frame []byte) error {
	if c.opts.WriteTimeout > 0 {
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
	}
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// Close sends what is queued, then a close frame with code and text, and
// ends the connection once the peer answers or after a second.
func (c *Conn) Close(code int, text string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeCode.Store(int32(code))
	msg := websocket.FormatCloseMessage(code, text)
	if c.flushing {
		c.closeMsg = msg // the writer sends it after the queue
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.finishClose(msg)
}

func (c *Conn) finishClose(msg []byte) {
	_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
	// The reader sees the peer's close reply and ends; if the peer never
	// answers, the deadline ends it.
	_ = c.ws.SetReadDeadline(time.Now().Add(time.Second))
}

// abort closes at once, dropping the queue: used for slow consumers.
func (c *Conn) abort(code int, text string) {
	c.closeCode.Store(int32(code))
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(100*time.Millisecond))
	c.terminate()
}

// terminate closes the socket; the reader loop then ends.
func (c *Conn) terminate() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.ws.Close()
	})
}

// CloseCode is the code the server closed with, 0 if the peer closed first.
func (c *Conn) CloseCode() int { return int(c.closeCode.Load()) }

// ReadLoop hands each text frame to handle until the connection ends, then
// closes it. It returns the reason the connection ended. handle must not
// keep frame.
func (c *Conn) ReadLoop(handle func(frame []byte)) error {
	defer c.terminate()
	for {
		typ, frame, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.closeCode.Store(CloseTooBig)
			}
			return err
		}
		if typ != websocket.TextMessage {
			// Binary frames are not part of the protocol; answer as a parse error would.
			handle(nil)
			continue
		}
		handle(frame)
	}
}
