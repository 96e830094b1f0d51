package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// The event path. Every Emit, from any goroutine, appends its notifications
// to one bounded queue (a mutex and a slice: one lock per Emit, not a
// channel operation per notification); one sender goroutine takes whatever
// is queued as a batch (bounded by count and bytes, no timer: a batch is what
// queued while the previous one was being sent, so batches grow with the
// load) and writes it on one long-lived Host.Emit stream, keeping up to
// emitWindow batches in flight. One receiver goroutine per stream reads the
// host's per-batch acks, which arrive in order, and wakes the emitters.
//
// Allocation per notification is kept near zero: an Emit's proto messages,
// its request and its wake-up channel come from a pool and go back to it
// once the Emit has its answer; the acknowledged Published values of a whole
// batch share one array.
const (
	emitMaxBatch = 1024             // notifications per batch
	emitMaxBytes = 1 << 20          // approximate payload bytes per batch, far below the message limit
	emitWindow   = 8                // batches sent but not yet acknowledged
	emitQueueMax = 8 * emitMaxBatch // queued notifications before Emit waits
)

// emitReq is up to one batch's worth of one Emit call. It belongs to that
// Emit: it goes back to the pool only after the receiver delivered its
// result, and never if the Emit gave up waiting (it may still be in flight).
type emitReq struct {
	ns   []*pluginpb.Notification // what is sent; ns[len:cap] keeps spare messages for reuse
	size int
	pub  []Published
	err  error
	done chan struct{} // cap 1: signalled once pub/err are set
}

var emitReqPool = sync.Pool{New: func() any { return &emitReq{done: make(chan struct{}, 1)} }}

func (r *emitReq) add(n *Notification, obj []byte, size int) {
	k := len(r.ns)
	var p *pluginpb.Notification
	if k < cap(r.ns) {
		p = r.ns[:k+1][k]
	}
	if p == nil {
		p = new(pluginpb.Notification)
	}
	p.Channel, p.Event, p.ObjectType, p.ObjectName, p.Object = n.Channel, n.Event, n.ObjectType, n.ObjectName, obj
	r.ns = append(r.ns, p)
	r.size += size
}

// release returns r to the pool; only its owner may call it, once r's
// result was received or r was never queued.
func (r *emitReq) release() {
	for _, p := range r.ns {
		p.Channel, p.Event, p.ObjectType, p.ObjectName, p.Object = "", "", "", "", nil
	}
	r.ns, r.size, r.pub, r.err = r.ns[:0], 0, nil, nil
	emitReqPool.Put(r)
}

func (r *emitReq) finish(pub []Published, err error) {
	r.pub, r.err = pub, err
	r.done <- struct{}{}
}

type emitter struct {
	client     pluginpb.HostClient
	log        hclog.Logger
	maxBytes   int // per batch
	queueBytes int // queued bytes before Emit waits

	mu          sync.Mutex
	queue       []*emitReq
	queued      int           // notifications in queue
	queuedBytes int           // their approximate size
	space       chan struct{} // closed when the queue shrinks; nil when nobody waits
	closed      bool          // the sender has ended: nothing more is taken

	wake chan struct{} // cap 1: the queue became non-empty
	stop chan struct{} // closed by close: finish what is queued, then end
	done chan struct{} // closed when the sender has ended
	once sync.Once

	sendBuf []*pluginpb.Notification // the sender's, reused for every batch

	ctx    context.Context // the streams' lifetime
	cancel context.CancelFunc
}

func newEmitter(client pluginpb.HostClient, log hclog.Logger, maxMessageBytes int) *emitter {
	ctx, cancel := context.WithCancel(context.Background())
	maxBytes := min(emitMaxBytes, maxMessageBytes/2)
	e := &emitter{
		client: client, log: log, maxBytes: maxBytes, queueBytes: 4 * maxBytes,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go e.run()
	return e
}

func (e *emitter) emit(ctx context.Context, ns []Notification) ([]Published, error) {
	// Encode each object once, straight into the message, and split into
	// requests that each fit one batch.
	var one [1]*emitReq
	reqs := one[:0]
	fail := func(err error) ([]Published, error) {
		for _, r := range reqs {
			r.release()
		}
		return nil, err
	}
	var cur *emitReq
	for i := range ns {
		n := &ns[i]
		if err := checkNotification(i, n); err != nil {
			return fail(err)
		}
		obj, err := marshalObject(n.Object)
		if err != nil {
			return fail(fmt.Errorf("emit to %q: object: %w", n.Channel, err))
		}
		sz := len(n.Channel) + len(n.Event) + len(n.ObjectType) + len(n.ObjectName) + len(obj) + 16
		if sz > e.maxBytes {
			return fail(LimitExceeded(fmt.Sprintf("emit to %q: notification %d is %d bytes, over the SDK's limit of %d bytes per notification (its channel, event, object type and name and JSON object together; a fixed bound, not a setting: send a large payload by reference)", n.Channel, i, sz, e.maxBytes)))
		}
		if cur == nil || len(cur.ns) == emitMaxBatch || cur.size+sz > e.maxBytes {
			cur = emitReqPool.Get().(*emitReq)
			reqs = append(reqs, cur)
		}
		cur.add(n, obj, sz)
	}

	for i, r := range reqs {
		if err := e.enqueue(ctx, r); err != nil {
			// Those queued are in flight and are left to the GC; the rest
			// were never seen by anyone.
			for _, r := range reqs[i:] {
				r.release()
			}
			return nil, err
		}
	}

	var out []Published
	if len(reqs) > 1 {
		out = make([]Published, 0, len(ns))
	}
	for _, r := range reqs {
		if d := ctx.Done(); d == nil {
			<-r.done
		} else {
			select {
			case <-r.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		pub, err := r.pub, r.err
		r.release()
		if err != nil {
			return nil, err
		}
		if len(reqs) == 1 {
			return pub, nil // a slice of the batch's array: no copy
		}
		out = append(out, pub...)
	}
	return out, nil
}

// enqueue appends r to the queue, waiting while the queue is full (a
// request always fits an empty queue).
func (e *emitter) enqueue(ctx context.Context, r *emitReq) error {
	e.mu.Lock()
	for {
		if e.closed {
			e.mu.Unlock()
			return ErrHostGone
		}
		if e.queued == 0 || (e.queued+len(r.ns) <= emitQueueMax && e.queuedBytes+r.size <= e.queueBytes) {
			break
		}
		if e.space == nil {
			e.space = make(chan struct{})
		}
		space := e.space
		e.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		}
		e.mu.Lock()
	}
	wasEmpty := len(e.queue) == 0
	e.queue = append(e.queue, r)
	e.queued += len(r.ns)
	e.queuedBytes += r.size
	e.mu.Unlock()
	if wasEmpty {
		select {
		case e.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return nil
}

// take removes the next batch from the queue, waiting for one; ok is false
// once close was called and the queue is empty (then nothing more is taken
// and later Emits fail).
func (e *emitter) take() (batch []*emitReq, n int, ok bool) {
	e.mu.Lock()
	for len(e.queue) == 0 {
		select {
		case <-e.stop:
			e.closed = true
			if e.space != nil {
				close(e.space)
				e.space = nil
			}
			e.mu.Unlock()
			return nil, 0, false
		default:
		}
		e.mu.Unlock()
		select {
		case <-e.wake:
		case <-e.stop:
		}
		e.mu.Lock()
	}
	size, k := 0, 0
	for ; k < len(e.queue); k++ {
		r := e.queue[k]
		if k > 0 && (n+len(r.ns) > emitMaxBatch || size+r.size > e.maxBytes) {
			break
		}
		n += len(r.ns)
		size += r.size
	}
	// The batch stays pending until its ack, so it gets its own slice.
	batch = append(make([]*emitReq, 0, k), e.queue[:k]...)
	rest := copy(e.queue, e.queue[k:])
	clear(e.queue[rest:])
	e.queue = e.queue[:rest]
	e.queued -= n
	e.queuedBytes -= size
	if e.space != nil {
		close(e.space)
		e.space = nil
	}
	e.mu.Unlock()
	return batch, n, true
}

// close finishes every queued emit, closes the stream and waits for its
// acknowledgements, bounded by ctx.
func (e *emitter) close(ctx context.Context) {
	e.once.Do(func() { close(e.stop) })
	select {
	case <-e.done:
	case <-ctx.Done():
		e.cancel()
		<-e.done
	}
	e.cancel()
}

func (e *emitter) run() {
	defer close(e.done)
	var st *emitStream
	defer func() {
		if st != nil {
			st.finish()
		}
	}()
	for {
		batch, n, ok := e.take()
		if !ok {
			return
		}
		if st == nil || st.dead() {
			if st != nil {
				st.finish()
			}
			var err error
			st, err = e.open()
			if err != nil {
				failAll(batch, fmt.Errorf("emit: %w", err))
				st = nil
				continue
			}
		}
		e.sendBuf = st.send(batch, n, e.sendBuf)
	}
}

func (e *emitter) open() (*emitStream, error) {
	ctx, cancel := context.WithCancel(e.ctx)
	s, err := e.client.Emit(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &emitStream{s: s, cancel: cancel, window: make(chan struct{}, emitWindow),
		deadCh: make(chan struct{}), recvDone: make(chan struct{})}
	st.sentCond.L = &st.mu
	go st.receive()
	return st, nil
}

type pendingBatch struct {
	id    uint64
	batch []*emitReq
}

// emitStream is one Host.Emit stream and its in-flight batches.
type emitStream struct {
	s      pluginpb.Host_EmitClient
	cancel context.CancelFunc
	window chan struct{}

	mu       sync.Mutex
	pending  []pendingBatch
	nextID   uint64
	sent     uint64    // batches whose Send returned: their messages are no longer read
	sentCond sync.Cond // on mu: sent moved
	err      error

	deadCh   chan struct{}
	recvDone chan struct{}
}

func (st *emitStream) dead() bool {
	select {
	case <-st.deadCh:
		return true
	default:
		return false
	}
}

// send writes batch (n notifications) on the stream; buf is scratch space
// for the message's list, returned for the next call.
func (st *emitStream) send(batch []*emitReq, n int, buf []*pluginpb.Notification) []*pluginpb.Notification {
	select {
	case st.window <- struct{}{}:
	case <-st.deadCh:
		failAll(batch, st.err)
		return buf
	}
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		failAll(batch, st.err)
		return buf
	}
	st.nextID++
	id := st.nextID
	st.pending = append(st.pending, pendingBatch{id: id, batch: batch})
	st.mu.Unlock()

	ns := buf[:0]
	for _, r := range batch {
		ns = append(ns, r.ns...)
	}
	err := st.s.Send(&pluginpb.EmitBatch{Id: id, Notifications: ns, ColumnarAck: true})
	clear(ns)
	// The ack may be read before Send returns; the receiver waits for this
	// before handing the requests (and their messages) back to the emitters.
	st.mu.Lock()
	st.sent = id
	st.sentCond.Broadcast()
	st.mu.Unlock()
	if err != nil {
		// The receiver learns the real error from Recv and fails the
		// pending batches; cancelling makes sure Recv returns.
		st.cancel()
	}
	return ns[:0]
}

func (st *emitStream) receive() {
	defer close(st.recvDone)
	for {
		ack, err := st.s.Recv()
		if err != nil {
			st.mu.Lock()
			st.err = fmt.Errorf("emit stream: %w", err)
			if errors.Is(err, context.Canceled) {
				st.err = ErrHostGone
			}
			pending := st.pending
			st.pending = nil
			close(st.deadCh)
			st.mu.Unlock()
			for _, b := range pending {
				failAll(b.batch, st.err)
			}
			return
		}
		st.mu.Lock()
		if len(st.pending) == 0 {
			st.mu.Unlock()
			continue // an ack for nothing: ignore
		}
		b := st.pending[0]
		st.pending[0] = pendingBatch{}
		st.pending = st.pending[1:]
		for st.sent < b.id {
			st.sentCond.Wait()
		}
		st.mu.Unlock()
		<-st.window
		deliver(b.batch, ack)
	}
}

// finish half-closes the stream so the host ends it after the last ack, and
// waits for the receiver.
func (st *emitStream) finish() {
	_ = st.s.CloseSend()
	<-st.recvDone
	st.cancel()
}

func deliver(batch []*emitReq, ack *pluginpb.EmitAck) {
	if e := fromPBError(ack.GetError()); e != nil {
		failAll(batch, e)
		return
	}
	total := 0
	for _, r := range batch {
		total += len(r.ns)
	}
	// One backing array for the whole batch: one allocation, not one per emit.
	var all []Published
	if seqs, ids := ack.GetSeqs(), ack.GetIds(); len(seqs) == total && len(ids) == total {
		// Columnar (what the SDK asks for): the channels are ours.
		all = make([]Published, total)
		i := 0
		for _, r := range batch {
			for _, n := range r.ns {
				all[i] = Published{Channel: n.Channel, Seq: seqs[i], ID: ids[i]}
				i++
			}
		}
	} else if pub := ack.GetPublished(); len(pub) == total {
		// A host that predates columnar acks.
		all = make([]Published, total)
		for i, p := range pub {
			all[i] = Published{Channel: p.GetChannel(), Seq: p.GetSeq(), ID: p.GetId()}
		}
	} else {
		failAll(batch, fmt.Errorf("emit: host acknowledged %d of %d notifications", max(len(pub), len(seqs)), total))
		return
	}
	off := 0
	for _, r := range batch {
		k := len(r.ns)
		r.finish(all[off:off+k:off+k], nil)
		off += k
	}
}

func failAll(batch []*emitReq, err error) {
	if err == nil {
		err = ErrHostGone
	}
	for _, r := range batch {
		r.finish(nil, err)
	}
}
