package transport

import (
	"errors"
	"fmt"
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

// run writes ready connections until none is queued. It takes them from
// the queue a turn at a time, up to turnMax: a large turn's frames leave
// in one io_uring submission (see turn.write).
func (s *shard) run() {
	var timer *time.Timer
	var t turn
	for {
		s.mu.Lock()
		var wait int64
		t.entries = t.entries[:0]
		for len(t.entries) < turnMax {
			if s.now.len() > 0 {
				t.entries = append(t.entries, s.now.pop())
				continue
			}
			if s.later.len() == 0 {
				break
			}
			head := s.later.peek()
			if head.stale() {
				s.later.pop()
				continue
			}
			// Only the head's due time is waited for: one behind it that
			// is due sooner waits at most until the head's, which is due
			// within MaxDelay of being queued, before the later one was.
			if w := head.due - nanotime(); w > 0 && !head.groupEnded(head.c.opts) {
				wait = w
				break
			}
			t.entries = append(t.entries, s.later.pop())
		}
		if len(t.entries) > 0 {
			s.mu.Unlock()
			t.write()
			continue
		}
		if wait > 0 {
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
		s.running = false
		s.mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
		return
	}
}

// turnMax bounds the connections a writer takes from its queue at once: a
// reply queued meanwhile waits for at most that many writes (~1 ms).
const turnMax = 256

// turnURingMin is the smallest turn whose frames go through io_uring:
// below it, write(2) per connection costs about what the submission does
// (BenchmarkFanOutFloor's uring/per=K against write/g=1: one or two sends
// a submission cost what write(2) does, four ~0.65 of it, 256 ~0.45).
// So a broadcast's fan-out leaves in submissions of turnMax sockets, and a
// trickle of single deliveries (scenario c) is written as before.
const turnURingMin = 4

// uringTurns counts the turns submitted through io_uring (tests).
var uringTurns atomic.Int64

// turn is the connections a writer took from its queue at once, and what
// writing them with one io_uring submission needs. It belongs to the
// shard's goroutine.
type turn struct {
	entries []entry
	slots   []slot
	reqs    []sendReq
	sent    Sent // reported to the Observer once the turn is written
}

// slot is one connection of a submitted turn.
type slot struct {
	c       *Conn
	buf     *[]byte
	b       built
	req     int // index in reqs, or -1: not submitted
	written int
	err     error
}

// write writes the turn's connections: through one io_uring submission
// for a large turn, else one write(2) each (writeOut).
func (t *turn) write() {
	if len(t.entries) == 0 {
		return
	}
	// A shard's connections share their root Options, hence the Observer.
	defer t.sent.report(t.entries[0].c.opts.Observer)
	var r *uring
	if len(t.entries) >= turnURingMin && !t.entries[0].c.opts.root().NoURing {
		r = takeRing()
	}
	if r == nil {
		for _, e := range t.entries {
			if !e.stale() {
				e.c.writeOut(e.gen, &t.sent)
			}
		}
		return
	}
	t.slots = t.slots[:0]
	for _, e := range t.entries {
		if e.stale() {
			continue
		}
		buf, b, ok := e.c.beginWrite(e.gen, &t.sent)
		if !ok {
			continue
		}
		t.slots = append(t.slots, slot{c: e.c, buf: buf, b: b, req: -1})
	}
	// Each socket's fdMu is held from before its send is submitted until
	// it completed, as tryWrite holds it around a write(2): its
	// descriptor cannot be closed and reused meanwhile. Nobody else holds
	// two of them, so holding many cannot deadlock.
	t.reqs = t.reqs[:0]
	for i := range t.slots {
		sl := &t.slots[i]
		c := sl.c
		if c.fd < 0 || len(*sl.buf) == 0 {
			continue // written 0: c's own goroutine writes it (see tryWrite)
		}
		c.fdMu.Lock()
		if c.fdClosed {
			c.fdMu.Unlock()
			sl.err = net.ErrClosed
			continue
		}
		sl.req = len(t.reqs)
		t.reqs = append(t.reqs, sendReq{fd: c.fd, b: *sl.buf})
	}
	err := r.send(t.reqs)
	uringTurns.Add(1)
	for i := range t.slots {
		sl := &t.slots[i]
		if sl.req < 0 {
			continue
		}
		switch n := t.reqs[sl.req].n; {
		case n >= 0:
			sl.written = n
		case n == -int(syscall.EAGAIN):
			sl.written = 0 // a full socket: its own goroutine writes it
		case n == -int(syscall.EINVAL) || n == -int(syscall.EOPNOTSUPP):
			// The kernel does not take this send through io_uring (a
			// socket or kernel without IORING_OP_SEND): write(2) it
			// is, from now on for every socket.
			sl.written, sl.err = writeFd(sl.c.fd, *sl.buf)
			turnOff(fmt.Errorf("the kernel refused a send through it: %w", syscall.Errno(-n)))
		default:
			sl.err = syscall.Errno(-n)
		}
		sl.c.fdMu.Unlock()
	}
	giveRing(r, err != nil, t.reqs)
	for i := range t.slots {
		sl := &t.slots[i]
		sl.c.finishWrite(*sl.buf, sl.written, sl.err, sl.b, &t.sent)
		if sl.req < 0 || t.reqs[sl.req].n != -int(syscall.EIO) || err == nil {
			putBuffer(sl.buf)
		}
		t.slots[i] = slot{}
	}
	clear(t.reqs)
}

// writeBudget bounds the bytes a shared writer builds for one connection per
// turn; what is left waits for the connection's next turn.
const writeBudget = 256 << 10

// writeOut writes what c has queued without blocking: what the socket does
// not take goes on with a goroutine of c's own. gen is the entry's: an
// entry overtaken since (see entry.stale) does nothing.
func (c *Conn) writeOut(gen uint32, st *Sent) {
	buf, b, ok := c.beginWrite(gen, st)
	if !ok {
		return
	}
	n, err := c.tryWrite(*buf)
	c.finishWrite(*buf, n, err, b, st)
	putBuffer(buf)
}

// beginWrite takes c for writing, if entry gen is still its latest, and
// builds its frames in a pooled buffer (see buildLocked), noting their
// batches in st. The caller writes them, hands the outcome to finishWrite
// and puts the buffer back.
func (c *Conn) beginWrite(gen uint32, st *Sent) (buf *[]byte, b built, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != queued || c.gen.Load() != gen {
		return nil, built{}, false
	}
	buf = getBuffer()
	c.state = writing
	c.urgent, c.held = false, false
	return buf, c.buildLocked(buf, st), true
}

// finishWrite goes on after the socket took n bytes of out (begun with
// beginWrite, which built b): a failed write fails c, a short one hands
// the rest to a goroutine of c's own, a whole one makes c idle again or
// queues it behind the others if more came meanwhile. out is not kept; a
// whole write's latency is noted in st.
func (c *Conn) finishWrite(out []byte, n int, err error, b built, st *Sent) {
	if err != nil {
		c.fail()
		return
	}
	if n < len(out) {
		rest := append([]byte(nil), out[n:]...)
		c.mu.Lock()
		c.state = slow
		c.mu.Unlock()
		go c.writeSlow(rest, b)
		return
	}
	now := c.observeWritten(b, st)
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
	var st Sent
	defer st.report(c.opts.Observer) // what a failed write built
	for {
		if c.opts.WriteTimeout > 0 {
			_ = c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		}
		if _, err := c.nc.Write(rest); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && c.opts.Observer != nil && !c.aborted() {
				// A connection aborted for its outbox was counted then;
				// this write was only the close frame's wait.
				c.opts.Observer.SlowConsumer(SlowWriteTimeout)
			}
			c.fail()
			return
		}
		now := c.observeWritten(b, &st)
		st.report(c.opts.Observer)
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
		b = c.buildLocked(buf, &st)
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
	return writeFd(c.fd, b)
}

// writeFd writes as much of b as the non-blocking socket fd takes now.
// Its caller holds the connection's fdMu.
func writeFd(fd int, b []byte) (n int, err error) {
	for n < len(b) {
		m, e := rawWrite1(uintptr(fd), b[n:])
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
// most MaxBatch, raw messages and control frames one frame each. Each
// batch's size is noted in st.
func (c *Conn) buildLocked(buf *[]byte, st *Sent) (out built) {
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
			st.Batches = append(st.Batches, k)
		}
	}
	*buf = b
	return out
}

// observeWritten follows a write of b that completed, with one clock
// read (none if nothing needs one): it notes in st the delivery latency,
// one observation per write (one syscall, one or more frames) from its
// oldest live publication, never one per notification; and it returns the
// time (monotonic ns), which noteBatchLocked takes as the batch's.
func (c *Conn) observeWritten(b built, st *Sent) (now int64) {
	measure := !b.oldest.IsZero() && c.opts.Observer != nil
	if !measure && !b.batch {
		return 0
	}
	now = nanotime()
	if measure {
		st.Latencies = append(st.Latencies, sinceAt(b.oldest, now))
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
