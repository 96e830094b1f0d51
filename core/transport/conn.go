package transport

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldhq/herald/core/broker"
)

// Close codes of CONTRACT.md section 3.
const (
	CloseGoingAway    = websocket.CloseGoingAway               // 1001 server shutdown
	CloseInvalidText  = websocket.CloseInvalidFramePayloadData // 1007 a text frame that is not UTF-8 (RFC 6455 section 8.1)
	CloseTooBig       = websocket.CloseMessageTooBig           // 1009
	CloseAuthFailed   = 4001
	CloseSlowConsumer = 4008
	CloseNoPong       = 4009 // no answer to a ping
)

// Options bound one connection's outbox. One Options serves every
// connection of a server: its writers are shared by them.
type Options struct {
	MaxBatch    int           // notifications per onNotificationReceived call
	MaxDelay    time.Duration // how long a notification may wait for others
	OutboxLimit int           // queued items before the connection is a slow consumer
	// OutboxBytes bounds the bytes queued for one connection (publications,
	// replies, error replies and control frames alike): past it, and with a
	// socket that takes no more, the connection is a slow consumer. 0: no
	// bound in bytes. A connection may lower its own (SetOutboxBytes).
	OutboxBytes  int
	WriteTimeout time.Duration // a write that takes longer fails the connection
	// Writers is how many goroutines at most write to connections whose
	// socket takes the bytes at once (0: half the processors, at least one). A connection
	// whose socket is full gets a goroutine of its own until it catches up.
	Writers int
	// NoURing makes the writers write each socket with write(2): by
	// default a writer with several sockets to write at once (a
	// broadcast's fan-out) hands them to the kernel with one io_uring
	// submission, where the kernel offers it.
	NoURing bool
	// Observer, if set, learns of batches and slow consumers (metrics).
	Observer Observer

	// parent, when set, is the Options these were derived from (Derive):
	// its writers and its publish groups are shared.
	parent *Options

	poolOnce sync.Once
	pool     *pool
	// groupsEnded counts EndGroup calls: a connection holding its frame
	// for the rest of a publish waits until it passes the count it noted.
	groupsEnded atomic.Uint64
}

// EndGroup says that the publications of a publish with several have all
// been delivered: connections holding their frame for them send it now.
func (o *Options) EndGroup() {
	o = o.root()
	o.groupsEnded.Add(1)
	p := o.writers()
	for i := range p.shards {
		select {
		case p.shards[i].wake <- struct{}{}:
		default:
		}
	}
}

// root is the Options that own the writers and the publish groups.
func (o *Options) root() *Options {
	if o.parent != nil {
		return o.parent
	}
	return o
}

// Derive returns Options for connections opened from now on, with the
// bounds of b (MaxBatch, MaxDelay, OutboxLimit, OutboxBytes, WriteTimeout)
// and o's writers, publish groups and Observer: connections already open
// keep the bounds they were opened with. b's Writers, NoURing and
// Observer are ignored (the writers are shared).
func (o *Options) Derive(b *Options) *Options {
	r := o.root()
	return &Options{
		MaxBatch: b.MaxBatch, MaxDelay: b.MaxDelay, OutboxLimit: b.OutboxLimit,
		OutboxBytes: b.OutboxBytes, WriteTimeout: b.WriteTimeout,
		Writers: r.Writers, NoURing: r.NoURing, Observer: r.Observer, parent: r,
	}
}

// Observer receives delivery events for metrics. Methods must be cheap and
// must not call back into the Conn: they are called by the writers and by
// publishers, sometimes with the connection's lock held.
type Observer interface {
	// Sent reports what writes that completed carried: once per writer
	// turn (many connections' writes), or once per write made outside
	// one. It must not keep s or its slices.
	Sent(s *Sent)
	// SlowConsumer is called when a connection is closed for not reading:
	// its outbox passed a bound (4008), or a write outlasted WriteTimeout.
	SlowConsumer(reason SlowReason)
}

// Sent is what a run of writes carried, for the Observer.
//
// A writer's turn writes a different connection each time, so that an
// observation made per write (a Prometheus histogram update: four atomic
// operations on shared cache lines) found its lines evicted by the
// previous connections' and cost ~100 ns of the ~3.7 µs a frame costs in
// a broadcast; gathered and reported once per turn, the updates run with
// the lines in cache (docs/performance.md, "The observer, once a turn").
type Sent struct {
	// Batches holds the notifications of each onNotificationReceived
	// frame built for the writes.
	Batches []int
	// Latencies holds, for each completed write with a live publication
	// that has an accept time (broker.Publication.Accepted), the time from
	// the acceptance of its oldest to the write's completion. Publications
	// handed over while a subscription joins or resumes (DeliverMissed)
	// and those without an accept time are not measured.
	Latencies []time.Duration
}

// report hands s to o, if it holds anything, and empties it for reuse.
func (s *Sent) report(o Observer) {
	if len(s.Batches) == 0 && len(s.Latencies) == 0 {
		return
	}
	if o != nil {
		o.Sent(s)
	}
	s.Batches, s.Latencies = s.Batches[:0], s.Latencies[:0]
}

// SlowReason says why a connection was closed as a slow consumer. The set
// is fixed: it is a metric label.
type SlowReason string

// Reasons for SlowConsumer.
const (
	SlowOutboxLimit  SlowReason = "outbox_limit"  // Options.OutboxLimit items queued
	SlowOutboxBytes  SlowReason = "outbox_bytes"  // Options.OutboxBytes (or the connection's own bound) passed
	SlowWriteTimeout SlowReason = "write_timeout" // a write took longer than WriteTimeout
)

// closeText is the reason of the 4008 close frame: it names the bound
// that tripped by its config key (within a close reason's 123 bytes).
func (r SlowReason) closeText() string {
	switch r {
	case SlowOutboxLimit:
		return "slow consumer: delivery.outbox_limit exceeded"
	case SlowOutboxBytes:
		return "slow consumer: delivery.outbox_bytes exceeded"
	}
	return "slow consumer: " + string(r)
}

var batchPrefix = []byte(`{"jsonrpc":"2.0","method":"onNotificationReceived","params":{"notifications":[`)
var batchSuffix = []byte(`]}}`)

// item is one queued thing: a publication (batched with its neighbours),
// a raw JSON-RPC message (a frame of its own), or a control frame.
type item struct {
	pub *broker.Publication
	raw []byte
	op  byte // websocket opcode of raw: text (0 for text), close or pong
	// missed marks a publication handed over by a join or a resume
	// (DeliverMissed): its age is not a delivery latency.
	missed bool
}

// size is what the item counts against the outbox's byte bound: its
// payload and its share of a frame.
func (it *item) size() int {
	if it.pub != nil {
		return len(it.pub.Data) + 1
	}
	return len(it.raw) + frameOverhead
}

// frameOverhead is a frame header at most (RFC 6455 section 5.2).
const frameOverhead = 10

// Writing states of a connection.
const (
	idle    = iota // nothing queued
	queued         // waiting in its writer's queue
	writing        // a shared writer is writing it
	slow           // its socket was full: a goroutine of its own writes
)

// Conn is one WebSocket connection.
//
// Reading uses gorilla's reader; writing does not go through gorilla: the
// outbox's frames are written by a few shared writers (see writer.go)
// straight to the socket without blocking, so that a broadcast to 10k
// connections is 10k non-blocking writes by a handful of goroutines rather
// than 10k goroutines, and several frames for one connection leave in one
// syscall.
type Conn struct {
	ws  *websocket.Conn
	nc  net.Conn
	raw syscall.RawConn // nil when the socket has no descriptor
	// fd is the socket's descriptor, written to directly by tryWrite; -1
	// when it has none: every write then blocks (writeSlow).
	fd int
	// fdMu is held around each write to fd and by terminate while it marks
	// fd closed (fdClosed), before the socket is closed: so no write
	// reaches the descriptor once it may be reused by another socket.
	fdMu     sync.Mutex
	fdClosed bool
	opts     *Options
	w        *shard

	mu    sync.Mutex
	items outbox
	// bytes is what the queued items count against byteLimit; raws is how
	// many of them are not publications (replies, server calls, control
	// frames: none of them waits for a batch).
	bytes, raws int
	byteLimit   int
	state       int
	// urgent says the queued connection's newest writer entry is in the
	// shard's now queue: a reply need not queue it again. held says it is
	// in the later queue holding its frame for the rest of a publish.
	urgent, held bool
	// inPublish says the newest publication queued is followed by more of
	// its publish (broker.Publication.More).
	inPublish bool
	// gen numbers the connection's writer entries: an entry whose gen is
	// not the latest is stale and skipped (it was overtaken by a reply or
	// a full batch queued in the now queue, or by a publisher that wrote
	// itself). Written under mu, read by the shard without it.
	gen atomic.Uint32
	// lastBatch is when the last write holding an onNotificationReceived
	// frame completed (monotonic ns): the next may leave MaxDelay after it.
	lastBatch int64
	// drained, if set, is started on a goroutine of its own once the
	// outbox is empty (WhenDrained: the functions given, chained).
	drained  func()
	closing  bool // no more items are accepted
	abortAt  bool // terminate once the queued close frame is written
	closeOut chan struct{}

	// heardAt is when the peer last sent a frame of any kind, pongs
	// included (monotonic ns).
	heardAt atomic.Int64
	// pingedAt is when Heartbeat last pinged, 0 if its last call did not;
	// only Heartbeat's goroutine touches it.
	pingedAt int64

	done      chan struct{}
	closeOnce sync.Once
	closeCode atomic.Int32
	// readLimit is SetReadLimit's, for the reason of the 1009 close.
	readLimit atomic.Pointer[readLimit]
	// beforeTooBig is BeforeTooBig's; set before reading starts.
	beforeTooBig func()

	rd readSide // the reader's, see reader.go
}

// NewConn wraps an upgraded WebSocket. opts is shared, not copied: one
// Options serves every connection of a server.
func NewConn(ws *websocket.Conn, opts *Options) *Conn {
	c := &Conn{ws: ws, nc: ws.UnderlyingConn(), fd: -1, opts: opts, done: make(chan struct{}), byteLimit: opts.OutboxBytes}
	if g, ok := c.nc.(*guardedConn); ok {
		// Upgraded by Upgrade: gorilla's own writes (a close frame on a
		// frame over the read limit or a protocol error) come to c.
		c.nc = g.Conn
		g.arm(c)
		// gorilla reads through a framer (framer.go), which answers pings
		// and notes pongs itself.
		c.rd.fr = &framer{
			src: g.Conn,
			ping: func(payload []byte) {
				c.heardAt.Store(nanotime())
				c.control(websocket.PongMessage, payload)
			},
			pong: func() { c.heardAt.Store(nanotime()) },
		}
		g.fr = c.rd.fr
	}
	if sc, ok := c.nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.raw = rc
			// The descriptor stays c's until terminate closes the socket:
			// only the socket's Close closes it, and only terminate
			// closes the socket.
			_ = rc.Control(func(fd uintptr) { c.fd = int(fd) })
			if c.rd.fr != nil {
				c.rd.fr.tryRead = rawTryRead(rc)
			}
		}
	}
	c.w = opts.writers().assign()
	c.heardAt.Store(nanotime())
	// gorilla would answer pings and close frames with writes of its own,
	// which must not land in the middle of one of ours: they are queued.
	ws.SetPingHandler(func(data string) error {
		c.heardAt.Store(nanotime())
		c.control(websocket.PongMessage, []byte(data))
		return nil
	})
	ws.SetPongHandler(func(string) error {
		c.heardAt.Store(nanotime())
		return nil
	})
	ws.SetCloseHandler(func(code int, text string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		c.closeReply(code)
		return nil
	})
	return c
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

// Done is closed when the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Deliver queues a publication. It never blocks; a connection over its
// outbox limit is closed as a slow consumer.
func (c *Conn) Deliver(p *broker.Publication) { c.enqueue(item{pub: p}) }

// DeliverMissed queues a publication the connection missed (a resume's
// history, or what arrived while it joined): as Deliver, but its age is
// not counted as delivery latency.
func (c *Conn) DeliverMissed(p *broker.Publication) { c.enqueue(item{pub: p, missed: true}) }

// Send queues a raw JSON-RPC message (a reply or a server call) after what
// is already queued.
func (c *Conn) Send(raw []byte) { c.enqueue(item{raw: raw}) }

func (c *Conn) enqueue(it item) {
	size := it.size()
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	// The bound that was reached is the reason, whatever catching up
	// managed to write before the socket filled.
	reason := SlowOutboxBytes
	if c.items.len() >= c.opts.OutboxLimit {
		reason = SlowOutboxLimit
	}
	if c.overLocked(size) && !c.catchUpLocked(size) {
		c.mu.Unlock()
		if c.opts.Observer != nil {
			c.opts.Observer.SlowConsumer(reason)
		}
		c.abort(CloseSlowConsumer, reason.closeText())
		return
	}
	c.pushItemLocked(it, size)
	endsPublish := false
	if it.pub != nil {
		endsPublish = c.inPublish && !it.pub.More
		c.inPublish = it.pub.More
	}
	if it.pub == nil || endsPublish || (c.held && c.items.len() >= c.opts.MaxBatch) {
		// A reply never waits for a batch; a publish held for the rest of
		// it has nothing more to wait for once it fills a batch (a publish
		// of more publications than an outbox holds leaves in frames of
		// MaxBatch as it is delivered) or once its last publication came
		// (its earlier ones may have left already). A stream not held for
		// a publish leaves at its due time, MaxDelay at most, as it did.
		c.scheduleLocked()
	} else {
		c.schedulePublicationLocked(it.pub.More)
	}
	c.mu.Unlock()
}

func (c *Conn) pushItemLocked(it item, size int) {
	c.items.push(it)
	c.bytes += size
	if it.pub == nil {
		c.raws++
	}
}

// overLocked reports whether queuing size more bytes would pass the
// outbox's bounds.
func (c *Conn) overLocked(size int) bool {
	// One item alone is never over the byte bound: a notification or a
	// reply bigger than it is bounded by the limits on what produced it.
	return c.items.len() >= c.opts.OutboxLimit || (c.byteLimit > 0 && c.items.len() > 0 && c.bytes+size > c.byteLimit)
}

// catchUpLocked is called, with c.mu held, when the outbox is full. An
// outbox fills either because the peer does not read or because its
// publisher delivered faster than the shared writers got to the
// connection (a publish of many notifications); only the first is a slow
// consumer. So the caller writes what is queued itself, without blocking,
// and the connection is slow only if its socket does not take it all. It
// reports whether size more bytes now fit.
func (c *Conn) catchUpLocked(size int) bool {
	for c.state == writing {
		// A shared writer is on it: its write does not block either.
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
	if c.closing {
		return false
	}
	if !c.overLocked(size) {
		return true // the writer made room meanwhile
	}
	if c.state == slow || c.fd < 0 {
		return false
	}
	c.state = writing
	c.gen.Add(1) // whatever entry the shard holds for c is stale now
	c.urgent, c.held = false, false
	buf := getBuffer()
	defer putBuffer(buf)
	var st Sent
	defer st.report(c.opts.Observer)
	for c.items.len() > 0 && c.overLocked(size) {
		b := c.buildLocked(buf, &st)
		c.mu.Unlock()
		n, err := c.tryWrite(*buf)
		c.mu.Lock()
		if err != nil {
			c.state = idle
			c.mu.Unlock()
			c.fail()
			c.mu.Lock()
			return false
		}
		if n < len(*buf) {
			c.state = slow
			go c.writeSlow(append([]byte(nil), (*buf)[n:]...), b)
			return false
		}
		c.noteBatchLocked(b, c.observeWritten(b, &st))
		if b.closed {
			c.mu.Unlock()
			c.closeWritten()
			c.mu.Lock()
		}
	}
	c.state = idle
	if c.items.len() > 0 {
		c.rescheduleLocked()
	} else if f := c.takeDrainedLocked(); f != nil {
		go f()
	}
	return !c.closing && !c.overLocked(size)
}

// rescheduleLocked queues a connection that still has items after a write.
// A reply or a full batch has nothing to wait for; publications wait for
// their batch's time.
func (c *Conn) rescheduleLocked() {
	if c.raws > 0 || c.items.len() >= c.opts.MaxBatch {
		c.scheduleLocked()
		return
	}
	// If the newest is followed by more of its publish, what is queued
	// goes on waiting for the publish's end, as it did before this write.
	last := c.items.at(c.items.len() - 1)
	c.schedulePublicationLocked(last.pub != nil && last.pub.More)
}

// scheduleLocked hands the connection to its writer at once: a reply or a
// control frame is waiting, or a full batch. A connection already queued
// for a later time is queued again in the now queue (its later entry goes
// stale), so that a reply never waits behind a batching delay.
func (c *Conn) scheduleLocked() {
	switch {
	case c.state == idle:
		c.state = queued
	case c.state == queued && !c.urgent:
	default:
		return
	}
	c.urgent, c.held = true, false
	c.w.push(entry{c: c, gen: c.gen.Add(1)}, true)
}

// schedulePublicationLocked hands an idle connection with a new publication
// to its writer, due no sooner than MaxDelay after its previous batch: a
// stream of publications leaves in frames of several, while a lone one (on
// a connection quiet for MaxDelay) does not wait for company that is not
// coming. One followed by more of its publish (more) waits for them, so
// that they share its frame: until the hub says the publish is delivered
// (EndGroup), MaxDelay at most, or until they make a full batch. Either way
// each publication leaves within MaxDelay of its arrival: its due time is
// at most MaxDelay away, and the writer never holds its queue longer than
// for the head's.
func (c *Conn) schedulePublicationLocked(more bool) {
	if c.opts.MaxDelay <= 0 || c.opts.MaxBatch <= 1 {
		c.scheduleLocked()
		return
	}
	if c.state != idle {
		return
	}
	c.state = queued
	c.urgent, c.held = false, more
	e := entry{c: c}
	if more {
		e.due = nanotime() + int64(c.opts.MaxDelay)
		e.group = c.opts.root().groupsEnded.Load() + 1
	} else if c.lastBatch != 0 { // else: never sent a batch, due now
		e.due = c.lastBatch + int64(c.opts.MaxDelay)
	}
	e.gen = c.gen.Add(1)
	c.w.push(e, false)
}

// SetOutboxBytes sets this connection's bound on queued bytes (see
// Options.OutboxBytes); 0 removes it. A session lowers it until its client
// authenticates.
func (c *Conn) SetOutboxBytes(n int) {
	c.mu.Lock()
	c.byteLimit = n
	c.mu.Unlock()
}

// Room is how many more publications the connection should be given now:
// what keeps its outbox under half its bounds. A producer of many (history
// replay) gives at most that many, then waits for WhenDrained.
func (c *Conn) Room() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || (c.byteLimit > 0 && c.bytes >= c.byteLimit/2) {
		return 0
	}
	return max(0, max(1, c.opts.OutboxLimit/2)-c.items.len())
}

// WhenDrained starts f on a goroutine of its own once the outbox is empty
// (at once if it is). Calls made before then are chained: every f runs, in
// the order given, one after another on that goroutine (a resume of several
// channels pages each of them through here). f is dropped if the connection
// closes first.
func (c *Conn) WhenDrained(f func()) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.items.len() == 0 && c.state == idle {
		c.mu.Unlock()
		go f()
		return
	}
	if prev, next := c.drained, f; prev != nil {
		f = func() { prev(); next() }
	}
	c.drained = f
	c.mu.Unlock()
}

// takeDrainedLocked returns the WhenDrained function due now, if any.
func (c *Conn) takeDrainedLocked() func() {
	f := c.drained
	if f == nil || c.items.len() > 0 || c.closing {
		return nil
	}
	c.drained = nil
	return f
}

// control queues a control frame (pong) after what is queued.
func (c *Conn) control(op byte, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	it := item{raw: payload, op: op}
	c.pushItemLocked(it, it.size())
	c.scheduleLocked()
}

// QueuedBytes is what the outbox holds, as counted against its byte bound.
func (c *Conn) QueuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// Queued is the number of items waiting in the outbox.
func (c *Conn) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.items.len()
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
	c.pushCloseLocked(websocket.FormatCloseMessage(code, text))
	c.mu.Unlock()
}

// pushCloseLocked queues a close frame after what is queued; the caller
// has set closing.
func (c *Conn) pushCloseLocked(payload []byte) {
	it := item{raw: payload, op: websocket.CloseMessage}
	c.pushItemLocked(it, it.size())
	c.closeOut = make(chan struct{})
	c.drained = nil
	c.scheduleLocked()
}

// closeByPeerError queues the close frame gorilla wrote on a read error
// (a frame over the read limit, a protocol error; see Upgrade), after what
// is queued.
func (c *Conn) closeByPeerError(code int, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing = true
	c.closeCode.Store(int32(code))
	c.pushCloseLocked(payload)
}

// closeReply answers the peer's close frame, after what is queued.
func (c *Conn) closeReply(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.closing = true
	c.pushCloseLocked(websocket.FormatCloseMessage(code, ""))
}

// abort closes at once, dropping the queue: used for slow consumers. The
// close frame leaves at once, or, on a socket that is full (a frame is
// being written in part), after what the socket has begun; it gets as long
// as a write may take (WriteTimeout, 100ms at least), so that a client
// that stalled learns why it was closed when it reads again. Then the
// socket is closed regardless. Nothing more is queued meanwhile.
func (c *Conn) abort(code int, text string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.abortAt = true
	c.closeCode.Store(int32(code))
	c.resetItemsLocked()
	c.pushCloseLocked(websocket.FormatCloseMessage(code, text))
	c.mu.Unlock()
	time.AfterFunc(max(100*time.Millisecond, c.opts.WriteTimeout), c.terminate)
}

// aborted reports whether abort closed c (a slow consumer, counted there).
func (c *Conn) aborted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.abortAt
}

func (c *Conn) resetItemsLocked() {
	c.items.reset()
	c.bytes, c.raws = 0, 0
}

// closeWritten runs once a close frame left: the reader sees the peer's
// close reply and ends; if the peer never answers, the deadline ends it.
func (c *Conn) closeWritten() {
	c.mu.Lock()
	abort := c.abortAt
	if c.closeOut != nil {
		close(c.closeOut)
		c.closeOut = nil
	}
	c.mu.Unlock()
	if abort {
		c.terminate()
		return
	}
	c.closeHandshakeDeadline(time.Second)
}

// fail ends a connection whose write failed.
func (c *Conn) fail() {
	c.mu.Lock()
	c.closing = true
	c.resetItemsLocked()
	c.drained = nil
	c.state = idle
	if c.closeOut != nil {
		close(c.closeOut)
		c.closeOut = nil
	}
	c.mu.Unlock()
	c.terminate()
}

// terminate closes the socket; the reader then ends (a parked one is
// woken to end).
func (c *Conn) terminate() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.stopPolling() // before the descriptor can be reused
		// A write in progress ends first (it never blocks); none starts
		// once the descriptor may be reused.
		c.fdMu.Lock()
		c.fdClosed = true
		c.fdMu.Unlock()
		_ = c.ws.Close()
		c.wakeReader()
	})
}

// Heartbeat is called every interval, by one goroutine: a connection that
// sent nothing for interval is pinged, and one that has sent nothing since
// a ping at least half an interval old is closed with 4009. (Half: a late
// call may be followed at once by the next one, and the peer must have had
// time to answer.) Silence is the absence of any frame: a client that
// talks needs no ping. It reports whether c is still open.
func (c *Conn) Heartbeat(interval time.Duration) bool {
	now, heard := nanotime(), c.heardAt.Load()
	if c.pingedAt != 0 && heard <= c.pingedAt {
		if time.Duration(now-c.pingedAt) < interval/2 {
			return true
		}
		c.abort(CloseNoPong, fmt.Sprintf("no pong: nothing received for %s", time.Duration(now-heard).Round(time.Millisecond)))
		return false
	}
	c.pingedAt = 0
	if time.Duration(now-heard) >= interval {
		c.pingedAt = now
		c.control(websocket.PingMessage, nil)
	}
	return true
}

// CloseCode is the code the server closed with, 0 if the peer closed first.
func (c *Conn) CloseCode() int { return int(c.closeCode.Load()) }

// ReadLoop hands each text frame to handle until the connection ends, then
// closes it. It returns the reason the connection ended. handle must not
// keep frame. It holds a goroutine (the caller's) for the connection's
// life: Serve is the same without one while idle, where it can.
//
// Each frame is handled on a short-lived goroutine while the reader waits
// (readMessages), so that an idle connection keeps only the reader's small
// stack; see docs/performance.md.
func (c *Conn) ReadLoop(handle func(frame []byte)) error {
	return c.endRead(c.readMessages(handle))
}

// linger ends a connection whose reader failed (a frame over the read
// limit, a protocol error) once our close frame left: closing a socket
// with unread input makes the kernel reset the connection, and a reset
// discards what the peer has not read yet, our close frame included. So
// the write side is shut and the input discarded until the peer closes,
// for a second and a frame's worth of bytes at most.
func (c *Conn) linger() {
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, c.nc, 1<<20)
}

// keptItems bounds the backing array an idle outbox keeps for its next
// burst: enough for the bursts a broadcast makes, small next to a
// connection's other state; a bigger one (a backlog) is let go.
const keptItems = 32

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

// SetReadLimit bounds the messages the peer may send to n bytes: a bigger
// one ends the connection with 1009, written after what is queued, whose
// reason names setting, the config key that sets n, so that the peer
// learns what to fix ("frame of 70000 bytes over limits.max_frame_bytes
// (65536)").
func (c *Conn) SetReadLimit(n int64, setting string) {
	c.readLimit.Store(&readLimit{n: n, setting: setting})
	c.ws.SetReadLimit(n)
}

// BeforeTooBig makes the 1009 close of a message over the read limit wait
// for wait, which returns once the answers of the frames already being
// handled are queued (Send): they leave before the close, so that a peer
// whose earlier requests took effect learns their outcome. Nothing is read
// meanwhile (wait runs on the reader's goroutine, and the reader stops at
// the message over the limit). wait must return in bounded time: the
// handlers it waits for are bounded by their own timeouts. Call it before
// reading starts.
func (c *Conn) BeforeTooBig(wait func()) { c.beforeTooBig = wait }

// closeTooBig queues the 1009 close, with payload, once what BeforeTooBig
// waits for was queued.
func (c *Conn) closeTooBig(payload []byte) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if closing {
		return // a close is queued already (gorilla's 1009, or another)
	}
	if c.beforeTooBig != nil {
		c.beforeTooBig()
	}
	c.closeByPeerError(CloseTooBig, payload)
}

type readLimit struct {
	n       int64
	setting string
}

// frameLenOutOfRange is tooBigClose's frameLen for a frame header whose
// 64-bit length has its top bit set, which RFC 6455 forbids.
const frameLenOutOfRange = -2

// tooBigClose is the payload of the 1009 close for a message over the
// read limit. gorilla writes that close itself, without a reason, from
// the reader, as soon as a frame's header takes the message past the
// limit (Upgrade sends it here): frameLen is that frame's payload length
// as its header gave it, -1 when unknown. A message that passed the limit
// over several fragments, none of them over it alone, is named a message.
func (c *Conn) tooBigClose(frameLen int64) []byte {
	lim := c.readLimit.Load()
	if lim == nil {
		return websocket.FormatCloseMessage(CloseTooBig, "")
	}
	setting := lim.setting
	if setting == "" {
		setting = "the read limit"
	}
	if frameLen == frameLenOutOfRange {
		return websocket.FormatCloseMessage(CloseTooBig, fmt.Sprintf("frame length out of range, over %s (%d)", setting, lim.n))
	}
	if frameLen > lim.n {
		return websocket.FormatCloseMessage(CloseTooBig, fmt.Sprintf("frame of %d bytes over %s (%d)", frameLen, setting, lim.n))
	}
	return websocket.FormatCloseMessage(CloseTooBig, fmt.Sprintf("message over %s (%d)", setting, lim.n))
}
