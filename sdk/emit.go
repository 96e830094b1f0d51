package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// The event path. Every Emit, from any goroutine, goes into one queue; one
// sender goroutine packs queued emits into batches (bounded by count and
// bytes, no timer: a batch is whatever queued while the previous one was
// being sent) and writes them on one long-lived Host.Emit stream, keeping up
// to emitWindow batches in flight. One receiver goroutine per stream reads
// the host's per-batch acks, which arrive in order, and wakes the emitters.
const (
	emitMaxBatch   = 1024    // notifications per batch
	emitMaxBytes   = 1 << 20 // approximate payload bytes per batch, far below the message limit
	emitWindow     = 8       // batches sent but not yet acknowledged
	emitQueueDepth = 4096    // queued Emit requests before Emit blocks
)

type emitReq struct {
	ns   []*pluginpb.Notification
	size int
	done chan emitResult // buffered: the receiver never blocks on it
}

type emitResult struct {
	pub []Published
	err error
}

type emitter struct {
	client   pluginpb.HostClient
	log      hclog.Logger
	maxBytes int

	reqs chan *emitReq
	stop chan struct{} // closed by close: finish what is queued, then end
	done chan struct{} // closed when the sender has ended
	once sync.Once

	ctx    context.Context // the streams' lifetime
	cancel context.CancelFunc
}

func newEmitter(client pluginpb.HostClient, log hclog.Logger, maxMessageBytes int) *emitter {
	ctx, cancel := context.WithCancel(context.Background())
	e := &emitter{
		client: client, log: log, maxBytes: min(emitMaxBytes, maxMessageBytes/2),
		reqs: make(chan *emitReq, emitQueueDepth),
		stop: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel,
	}
	go e.run()
	return e
}

func notificationSize(n *pluginpb.Notification) int {
	return len(n.Channel) + len(n.Event) + len(n.ObjectType) + len(n.ObjectName) + len(n.Object) + 16
}

func (e *emitter) emit(ctx context.Context, ns []*pluginpb.Notification) ([]Published, error) {
	// Split into requests that each fit one batch.
	var reqs []*emitReq
	cur := &emitReq{done: make(chan emitResult, 1)}
	for _, n := range ns {
		sz := notificationSize(n)
		if sz > e.maxBytes {
			return nil, LimitExceeded(fmt.Sprintf("emit to %q: notification of %d bytes exceeds the %d-byte limit", n.Channel, sz, e.maxBytes))
		}
		if len(cur.ns) == emitMaxBatch || cur.size+sz > e.maxBytes {
			reqs = append(reqs, cur)
			cur = &emitReq{done: make(chan emitResult, 1)}
		}
		cur.ns = append(cur.ns, n)
		cur.size += sz
	}
	reqs = append(reqs, cur)

	for _, r := range reqs {
		select {
		case e.reqs <- r:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.stop:
			return nil, ErrHostGone
		}
	}
	out := make([]Published, 0, len(ns))
	for _, r := range reqs {
		select {
		case res := <-r.done:
			if res.err != nil {
				return nil, res.err
			}
			out = append(out, res.pub...)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-e.done:
			// The sender ended; it fails everything it took, but r may have
			// been queued after its last look.
			select {
			case res := <-r.done:
				if res.err != nil {
					return nil, res.err
				}
				out = append(out, res.pub...)
			default:
				return nil, ErrHostGone
			}
		}
	}
	return out, nil
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
	var carry *emitReq
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-e.reqs:
			case <-e.stop:
				// Drain what is already queued, then end.
				select {
				case first = <-e.reqs:
				default:
					return
				}
			}
		}
		batch := []*emitReq{first}
		n, size := len(first.ns), first.size
	fill:
		for n < emitMaxBatch {
			select {
			case r := <-e.reqs:
				if n+len(r.ns) > emitMaxBatch || size+r.size > e.maxBytes {
					carry = r
					break fill
				}
				batch = append(batch, r)
				n += len(r.ns)
				size += r.size
			default:
				break fill
			}
		}
		if st == nil || st.dead() {
			if st != nil {
				st.finish()
			}
			var err error
			st, err = e.open()
			if err != nil {
				for _, r := range batch {
					r.done <- emitResult{err: fmt.Errorf("emit: %w", err)}
				}
				st = nil
				continue
			}
		}
		st.send(batch, n)
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
	go st.receive()
	return st, nil
}

// emitStream is one Host.Emit stream and its in-flight batches.
type emitStream struct {
	s      pluginpb.Host_EmitClient
	cancel context.CancelFunc
	window chan struct{}

	mu      sync.Mutex
	pending [][]*emitReq
	nextID  uint64
	err     error

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

func (st *emitStream) send(batch []*emitReq, n int) {
	select {
	case st.window <- struct{}{}:
	case <-st.deadCh:
		failAll(batch, st.err)
		return
	}
	st.mu.Lock()
	if st.err != nil {
		st.mu.Unlock()
		failAll(batch, st.err)
		return
	}
	st.nextID++
	id := st.nextID
	st.pending = append(st.pending, batch)
	st.mu.Unlock()

	ns := make([]*pluginpb.Notification, 0, n)
	for _, r := range batch {
		ns = append(ns, r.ns...)
	}
	if err := st.s.Send(&pluginpb.EmitBatch{Id: id, Notifications: ns}); err != nil {
		// The receiver learns the real error from Recv and fails the
		// pending batches; cancelling makes sure Recv returns.
		st.cancel()
	}
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
				failAll(b, st.err)
			}
			return
		}
		st.mu.Lock()
		if len(st.pending) == 0 {
			st.mu.Unlock()
			continue // an ack for nothing: ignore
		}
		batch := st.pending[0]
		st.pending = st.pending[1:]
		st.mu.Unlock()
		<-st.window
		deliver(batch, ack)
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
	pub := ack.GetPublished()
	total := 0
	for _, r := range batch {
		total += len(r.ns)
	}
	if len(pub) != total {
		failAll(batch, fmt.Errorf("emit: host acknowledged %d of %d notifications", len(pub), total))
		return
	}
	// One backing array for the whole batch: one allocation, not one per emit.
	all := make([]Published, total)
	for i, p := range pub {
		all[i] = Published{Channel: p.GetChannel(), Seq: p.GetSeq(), ID: p.GetId()}
	}
	off := 0
	for _, r := range batch {
		r.done <- emitResult{pub: all[off : off+len(r.ns) : off+len(r.ns)]}
		off += len(r.ns)
	}
}

func failAll(batch []*emitReq, err error) {
	if err == nil {
		err = ErrHostGone
	}
	for _, r := range batch {
		r.done <- emitResult{err: err}
	}
}
