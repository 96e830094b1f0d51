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
	items    outbox
	flushing bool // a writer is scheduled or running
	closing  bool // no more items are accepted
	closeMsg []byte
	// delayed starts the writer MaxDelay after the first item of a burst.
	// One timer per connection, made on its first delivery and re-armed for
	// every burst: a goroutine that sleeps through the delay and a timer
	// made per burst cost more than the write they precede.
	delayed *time.Timer

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
	if c.items.len() >= c.opts.OutboxLimit {
		c.closing = true
		c.items.reset()
		c.mu.Unlock()
		if c.opts.Observer != nil {
			c.opts.Observer.SlowConsumer()
		}
		go c.abort(CloseSlowConsumer, "slow consumer: outbox limit exceeded")
		return
	}
	c.items.push(it)
	if c.flushing {
		c.mu.Unlock()
		return
	}
	c.flushing = true
	if it.raw != nil || c.opts.MaxDelay <= 0 || c.opts.MaxBatch <= 1 {
		c.mu.Unlock()
		go c.flush()
		return
	}
	// A publication waits MaxDelay for others to join its frame; the writer
	// goroutine exists only once that time is up.
	if c.delayed == nil {
		c.delayed = time.AfterFunc(c.opts.MaxDelay, c.flush)
	} else {
		c.delayed.Reset(c.opts.MaxDelay)
	}
	c.mu.Unlock()
}

// Queued is the number of items waiting in the outbox.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items.len()
}

// flush is the connection's writer. It exists only while there is something
// to write: it starts once the first publication of a burst has waited
// MaxDelay (or at once for a reply), drains the outbox and ends.
func (c *Conn) flush() {
	buf := getBuffer()
	defer putBuffer(buf)
	for {
		c.mu.Lock()
		if c.items.len() == 0 {
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
		if first := c.items.at(0); first.raw != nil {
			frame = first.raw
			c.items.drop(1)
		} else {
			*buf = append((*buf)[:0], batchPrefix...)
			for n < c.items.len() && n < c.opts.MaxBatch && c.items.at(n).raw == nil {
				if n > 0 {
					*buf = append(*buf, ',')
				}
				*buf = append(*buf, c.items.at(n).pub.Data...)
				n++
			}
			*buf = append(*buf, batchSuffix...)
			c.items.drop(n)
			frame = *buf
		}
		c.mu.Unlock()

		if err := c.write(frame); err != nil {
			c.mu.Lock()
			c.closing = true
			c.items.reset()
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
//
// Each frame is handled on a short-lived goroutine while the reader waits:
// handling (JSON decoding, subscribing, plugin calls) grows a stack to 8 KiB
// and more, and a reader that handled frames itself would park between
// frames on that grown stack. An idle connection keeps only the reader's
// small one; see docs/performance.md.
func (c *Conn) ReadLoop(handle func(frame []byte)) error {
	defer c.terminate()
	handled := make(chan struct{})
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
			frame = nil
		}
		go func() {
			defer func() { handled <- struct{}{} }()
			handle(frame)
		}()
		<-handled
	}
}

// keptItems bounds the backing array an idle outbox keeps for its next
// burst: enough for the bursts a broadcast makes, small next to a
// connection's other state; a bigger one (a backlog) is let go.
const keptItems = 16

// outbox is a connection's FIFO of queued items. It keeps a small backing
// array between bursts, so that delivering to an idle connection does not
// allocate.
type outbox struct {
	items []item
	head  int // index of the oldest pending item
}

func (q *outbox) len() int { return len(q.items) - q.head }

func (q *outbox) at(i int) *item { return &q.items[q.head+i] }

func (q *outbox) push(it item) {
	if q.head > 0 && len(q.items) == cap(q.items) {
		// Reuse the space of items already sent before growing.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	q.items = append(q.items, it)
}

// drop forgets the n oldest items.
func (q *outbox) drop(n int) {
	clear(q.items[q.head : q.head+n])
	q.head += n
	if q.head == len(q.items) {
		q.head = 0
		if cap(q.items) > keptItems {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
	}
}

func (q *outbox) reset() { q.items, q.head = nil, 0 }
