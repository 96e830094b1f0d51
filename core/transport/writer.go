package transport

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

// A broadcast to N connections makes N connections ready to write at once.
// Giving each its own goroutine (as the first outbox did) fills the
// scheduler's run queue with N goroutines, and the publisher that is still
// fanning out waits behind all of them; see docs/performance.md. Instead,
// each connection belongs to one of a few shards, and a shard's single
// goroutine writes its ready connections in turn, without blocking: a
// socket that cannot take a whole write at once (a slow reader) is handed
// to a goroutine of its own, so it delays nobody else.

// pool is the writers of one Options.
type pool struct {
	shards []shard
	next   atomic.Uint32
}

// shard is a queue of connections ready to write, and at most one goroutine
// writing them, started when the queue gets work and ended when it is empty.
type shard struct {
	mu      sync.Mutex
	now     fifo // replies and control frames: written first
	later   fifo // publications, each due at most MaxDelay after it was queued
	running bool
	wake    chan struct{} // tells a sleeping writer that something is due now
}

func (o *Options) writers() *pool {
	o = o.root()
	o.poolOnce.Do(func() {
		n := o.Writers
		if n <= 0 {
			n = defaultWriters(runtime.GOMAXPROCS(0))
		}
		o.pool = &pool{shards: make([]shard, n)}
		for i := range o.pool.shards {
			o.pool.shards[i].wake = make(chan struct{}, 1)
		}
	})
	return o.pool
}

// entry is a connection in a shard's queue. due and group are the
// entry's, not the connection's, so that the shard reads them under its
// own lock only.
type entry struct {
	c *Conn
	// due is when a queued connection may be written (monotonic ns).
	due int64
	// group, if not 0, is the Options.groupsEnded count at which a
	// connection holding its frame for the rest of a publish is due.
	group uint64
	gen   uint32
}

// stale says whether a newer entry of the same connection was queued since
// (or the connection was written without one): this one is skipped.
func (e *entry) stale() bool { return e.c.gen.Load() != e.gen }

// groupEnded says whether e waits for the rest of a publish that has
// been delivered since.
func (e *entry) groupEnded(o *Options) bool {
	return e.group != 0 && o.root().groupsEnded.Load() >= e.group
}

// defaultWriters leaves half the processors to everything else. A writer
// with work never blocks, so as many writers as processors hold every
// processor during a broadcast: the publish request, the readers and the
// plugins then wait for the scheduler's 10ms preemption. In the 10k
// broadcast on 2 CPUs that tripled the publish round trip and put p99 at
// ~300ms; one writer brought it under 200ms (docs/performance.md).
func defaultWriters(procs int) int { return max(1, procs/2) }

func (p *pool) assign() *shard {
	return &p.shards[int(p.next.Add(1)%uint32(len(p.shards)))]
}

// push queues e, whose connection its caller has marked queued (with c.mu
// held).
func (s *shard) push(e entry, now bool) {
	s.mu.Lock()
	if now {
		s.now.push(e)
	} else {
		s.later.push(e)
	}
	start := !s.running
	s.running = true
	s.mu.Unlock()
	if start {
		go s.run()
	} else if now {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// run writes ready connections until none is queued.
func (s *shard) run() {
	var timer *time.Timer
	for {
		s.mu.Lock()
		var e entry
		switch {
		case s.now.len() > 0:
			e = s.now.pop()
		case s.later.len() > 0:
			head := s.later.peek()
			if head.stale() {
				s.later.pop()
				s.mu.Unlock()
				continue
			}
			// Only the head's due time is waited for: one behind it that
			// is due sooner waits at most until the head's, which is due
			// within MaxDelay of being queued, before the later one was.
			if wait := head.due - nanotime(); wait > 0 && !head.groupEnded(head.c.opts) {
				s.mu.Unlock()
				if timer == nil {
					timer = time.NewTimer(time.Duration(wait))
				} else {
					timer.Reset(time.Duration(wait))
				}
				select {
				case <-timer.C:
				case <-s.wake:
					timer.Stop()
				}
				continue
			}
			e = s.later.pop()
		default:
			s.running = false
			s.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return
		}
		s.mu.Unlock()
		if !e.stale() {
			e.c.writeOut(e.gen)
		}
	}
}

// writeBudget bounds the bytes a shared writer builds for one connection per
// turn; what is left waits for the connection's next turn.
const writeBudget = 256 << 10

// writeOut writes what c has queued without blocking: what the socket does
// not take goes on with a goroutine of c's own. gen is the entry's: an
// entry overtaken since (see entry.stale) does nothing.
func (c *Conn) writeOut(gen uint32) {
	c.mu.Lock()
	if c.state != queued || c.gen.Load() != gen {
		c.mu.Unlock()
		return
	}
	buf := getBuffer()
	defer putBuffer(buf)
	c.state = writing
	c.urgent, c.held = false, false
	b := c.buildLocked(buf)
	c.mu.Unlock()

	n, err := c.tryWrite(*buf)
	if err != nil {
		c.fail()
		return
	}
	if n < len(*buf) {
		rest := append([]byte(nil), (*buf)[n:]...)
		c.mu.Lock()
		c.state = slow
		c.mu.Unlock()
		go c.writeSlow(rest, b)
		return
	}
	now := c.observeWritten(b)
	if b.closed {
		c.closeWritten()
	}
	c.mu.Lock()
	c.noteBatchLocked(b, now)
	c.state = idle
	if c.items.len() > 0 {
		// More came while writing: back in the queue, behind the others.
		c.rescheduleLocked()
	}
	drained := c.takeDrainedLocked()
	c.mu.Unlock()
	if drained != nil {
		go drained()
	}
}

// writeSlow writes rest, then whatever is queued, blocking, until c's
// outbox is empty; then c goes back to the shared writers. b is what
// rest holds (see buildLocked).
func (c *Conn) writeSlow(rest []byte, b built) {
	buf := getBuffer()
	defer putBuffer(buf)
	for {
		if c.opts.WriteTimeout > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		}
		if _, err := c.nc.Write(rest); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.opts.Observer != nil {
				c.opts.Observer.SlowConsumer(SlowWriteTimeout)
			}
			c.fail()
			return
		}
		now := c.observeWritten(b)
		if b.closed {
			c.closeWritten()
		}
		c.mu.Lock()
		c.noteBatchLocked(b, now)
		if c.items.len() == 0 {
			// The write deadline stays: the shared writers' writes
			// (tryWrite) do not heed it, and this one sets its own.
			c.state = idle
			drained := c.takeDrainedLocked()
			c.mu.Unlock()
			if drained != nil {
				go drained()
			}
			return
		}
		b = c.buildLocked(buf)
		c.mu.Unlock()
		rest = *buf
	}
}

// tryWrite writes as much of b as the socket takes now.
//
// It writes to the descriptor itself rather than through the socket's
// RawConn.Write: that one's bookkeeping (the socket's reference count and
// write lock, resetting its poll state, a call through a closure) was 6-8 %
// of herald's CPU in a broadcast (docs/performance.md). What it guaranteed
// is kept by two other means: one writer at a time per connection (its
// state says which; a write gorilla makes itself is queued, see Upgrade),
// and fdMu, which terminate takes before the socket closes, so that a
// write never reaches the descriptor once it is closed and reused.
func (c *Conn) tryWrite(b []byte) (n int, err error) {
	if c.fd < 0 || len(b) == 0 {
		return 0, nil
	}
	c.fdMu.Lock()
	defer c.fdMu.Unlock()
	if c.fdClosed {
		return 0, net.ErrClosed
	}
	for n < len(b) {
		m, e := rawWrite1(uintptr(c.fd), b[n:])
		switch e {
		case 0:
			n += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return n, nil
		default:
			return n, e
		}
	}
	return n, nil
}

// rawWrite1 is write(2) on a non-blocking socket. It never blocks, so it is
// made without telling the scheduler (RawSyscall): entering and leaving a
// syscall state on every frame, and the sysmon wakeups that the syscall
// state invites, were a tenth of the writers' time in a 10k broadcast.
func rawWrite1(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	return int(n), e
}

// built is what buildLocked put in a buffer, for what follows its write.
type built struct {
	closed bool      // the last frame is a close frame
	oldest time.Time // when the oldest live publication in it was accepted (zero: none)
	batch  bool      // it holds an onNotificationReceived frame
}

// buildLocked appends to buf the frames of what is queued, up to
// writeBudget bytes: publications in onNotificationReceived batches of at
// most MaxBatch, raw messages and control frames one frame each.
func (c *Conn) buildLocked(buf *[]byte) (out built) {
	b := (*buf)[:0]
	maxBatch := max(1, c.opts.MaxBatch)
	for c.items.len() > 0 && len(b) < writeBudget {
		if first := c.items.at(0); first.pub == nil {
			op := first.op
			if op == 0 {
				op = websocket.TextMessage
			}
			b = appendFrameHeader(b, op, len(first.raw))
			b = append(b, first.raw...)
			c.bytes -= first.size()
			c.raws--
			c.items.drop(1)
			if op == websocket.CloseMessage {
				out.closed = true
				break
			}
			continue
		}
		k, size := 0, len(batchPrefix)+len(batchSuffix)
		for k < c.items.len() && k < maxBatch {
			it := c.items.at(k)
			if it.pub == nil {
				break
			}
			if k > 0 {
				size++
			}
			size += len(it.pub.Data)
			c.bytes -= it.size()
			if out.oldest.IsZero() && !it.missed {
				// Items are in queue order: the first live one is the
				// oldest.
				out.oldest = it.pub.Accepted
			}
			k++
		}
		b = appendFrameHeader(b, websocket.TextMessage, size)
		b = append(b, batchPrefix...)
		for i := range k {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, c.items.at(i).pub.Data...)
		}
		b = append(b, batchSuffix...)
		c.items.drop(k)
		out.batch = true
		if c.opts.Observer != nil {
			c.opts.Observer.BatchSent(k)
		}
	}
	*buf = b
	return out
}

// observeWritten follows a write of b that completed, with one clock
// read (none if nothing needs one): it reports the delivery latency, one
// observation per write (one syscall, one or more frames) from its oldest
// live publication, so that measuring costs a histogram update per
// connection's turn, never per notification; and it returns the time
// (monotonic ns), which noteBatchLocked takes as the batch's.
func (c *Conn) observeWritten(b built) (now int64) {
	measure := !b.oldest.IsZero() && c.opts.Observer != nil
	if !measure && !b.batch {
		return 0
	}
	now = nanotime()
	if measure {
		c.opts.Observer.Delivered(sinceAt(b.oldest, now))
	}
	return now
}

// noteBatchLocked records when a write holding a batch completed: the next
// batch leaves MaxDelay after it at the earliest (schedulePublicationLocked,
// which reads it only once the connection is idle again, after this).
func (c *Conn) noteBatchLocked(b built, now int64) {
	if b.batch {
		c.lastBatch = now
	}
}

// sinceAt is time.Since(t) at now (nanotime), without reading the clock
// again when t has a monotonic reading (an accept time taken in this
// process always has).
func sinceAt(t time.Time, now int64) time.Duration {
	if t == t.Round(0) { // no monotonic reading: the wall clock it is
		return time.Since(t)
	}
	return time.Duration(now) - t.Sub(epoch)
}

// appendFrameHeader appends the header of an unmasked (server to client),
// unfragmented WebSocket frame (RFC 6455 section 5.2).
func appendFrameHeader(b []byte, op byte, n int) []byte {
	b = append(b, 0x80|op)
	switch {
	case n <= 125:
		return append(b, byte(n))
	case n <= 0xffff:
		return append(b, 126, byte(n>>8), byte(n))
	default:
		return append(b, 127, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// fifo is a queue of connections' entries that keeps its space between
// bursts.
type fifo struct {
	buf  []entry
	head int
}

func (q *fifo) len() int { return len(q.buf) - q.head }

func (q *fifo) peek() *entry { return &q.buf[q.head] }

func (q *fifo) push(c entry) {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		n := copy(q.buf, q.buf[q.head:])
		clear(q.buf[n:])
		q.buf, q.head = q.buf[:n], 0
	}
	q.buf = append(q.buf, c)
}

func (q *fifo) pop() entry {
	c := q.buf[q.head]
	q.buf[q.head] = entry{}
	q.head++
	if q.head == len(q.buf) {
		q.buf, q.head = q.buf[:0], 0
	}
	return c
}

// epoch anchors nanotime: time.Since reads the monotonic clock.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }
