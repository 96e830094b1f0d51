package natsbroker

import (
	"context"
	"errors"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/heraldhq/herald/core/broker"
)

// watch is a channel this node has subscribers on. sub and baseSent are
// guarded by the broker's watchMu; the rest belongs to the channel's
// dispatcher goroutine.
type watch struct {
	id       string // tells this watch of the channel from a later one
	channel  string
	sub      *nats.Subscription
	shard    chan event
	baseSent bool

	// Where the Handler stands: the stream sequence of the last message of
	// the channel dealt with (handed over, or a marker), and the seq and
	// epoch of the last one handed over.
	hasBase bool
	sseq    uint64
	last    uint64
	epoch   string
	// early holds live messages that came before the baseline (the first
	// History or Position answer after Watch), at most maxEarly.
	early     []*stored
	tailTries int

	// handed is where the Handler stands, for History and Position to
	// answer from (set with the baseline, then after each hand-over).
	handedMu sync.Mutex
	handed   state
	based    bool
	progress chan struct{} // closed when handed moves, or the watch ends
	ended    bool
}

// end wakes whoever waits for the watch's Handler: it is unwatched.
func (w *watch) end() {
	w.handedMu.Lock()
	w.ended = true
	if w.progress != nil {
		close(w.progress)
		w.progress = nil
	}
	w.handedMu.Unlock()
}

func (w *watch) setHanded(st state) {
	w.handedMu.Lock()
	w.handed, w.based = st, true
	if w.progress != nil {
		close(w.progress)
		w.progress = nil
	}
	w.handedMu.Unlock()
}

// waitHanded waits until the Handler of a watched channel has dealt with
// the message at stream sequence sseq, and reports whether it did before
// ctx and the broker's bound ended; it returns where the Handler stands.
func (b *Broker) waitHanded(ctx context.Context, channel string, sseq uint64) (state, bool) {
	b.watchMu.Lock()
	w := b.watched[channel]
	b.watchMu.Unlock()
	if w == nil {
		return state{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	for {
		w.handedMu.Lock()
		h := w.handed
		if h.sseq >= sseq || w.ended {
			w.handedMu.Unlock()
			return h, h.sseq >= sseq
		}
		if w.progress == nil {
			w.progress = make(chan struct{})
		}
		progress := w.progress
		w.handedMu.Unlock()
		select {
		case <-progress:
		case <-ctx.Done():
			return h, false
		case <-b.done:
			return h, false
		}
	}
}

// handedOf is where the Handler of a watched channel stands, once it has a
// baseline. History and Position of such a channel answer no further than
// that: what is placed after reaches the Handler later, and a subscriber
// that joins now gets it from there, once (the hub skips by seq only what
// it buffered while joining; what the Handler gets after the subscriber
// is live is delivered as it is).
func (b *Broker) handedOf(channel string) (state, bool) {
	b.watchMu.Lock()
	w := b.watched[channel]
	b.watchMu.Unlock()
	if w == nil {
		return state{}, false
	}
	w.handedMu.Lock()
	defer w.handedMu.Unlock()
	return w.handed, w.based
}

const (
	maxEarly = 1024
	// maxTailTries bounds the tail checks of a channel whose baseline
	// never comes (nobody asked its position after watching it).
	maxTailTries = 20
	// catchUpChunk is how many messages one gap-filling read asks for.
	catchUpChunk = 256
)

// event is what a dispatcher goroutine handles, in order: a live message,
// a channel's baseline, or the result of a tail check.
type event struct {
	w        *watch
	live     *stored
	baseline *state
	tail     bool
	last     *stored // the channel's last message (tail check), nil: none
}

var shardSeed = maphash.MakeSeed()

func (b *Broker) shardOf(channel string) chan event {
	if len(b.shards) == 1 {
		return b.shards[0]
	}
	return b.shards[maphash.String(shardSeed, channel)%uint64(len(b.shards))]
}

// Watch implements broker.Interest: the channel's live subject is
// subscribed on the shared Go channel. It sends a SUB and returns (no
// round trip): it is called under the hub's locks.
func (b *Broker) Watch(channel string) {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	select {
	case <-b.done:
		return
	default:
	}
	if b.watched[channel] != nil {
		return
	}
	w := &watch{id: nuid.Next(), channel: channel, shard: b.shardOf(channel)}
	sub, err := b.nc.ChanSubscribe(b.livePrefix+encodeToken(channel), b.live)
	if err != nil {
		b.log.Error("watch a channel", "channel", channel, "error", err)
	} else {
		// The shared channel bounds what waits; NATS's per-subscription
		// limits would only drop earlier.
		_ = sub.SetPendingLimits(-1, -1)
	}
	w.sub = sub
	b.watched[channel] = w
	b.markTail(channel)
}

// Unwatch implements broker.Interest.
func (b *Broker) Unwatch(channel string) {
	b.watchMu.Lock()
	w := b.watched[channel]
	delete(b.watched, channel)
	b.watchMu.Unlock()
	if w != nil {
		w.end()
		if w.sub != nil {
			_ = w.sub.Unsubscribe()
		}
	}
}

// Watched reports how many channels the broker watches.
func (b *Broker) Watched() int {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	return len(b.watched)
}

func (b *Broker) watchOf(channel string) *watch {
	b.watchMu.Lock()
	defer b.watchMu.Unlock()
	return b.watched[channel]
}

// noteBaseline passes a position read after Watch to the channel's
// dispatcher, once: the Handler gets what follows it.
func (b *Broker) noteBaseline(channel string, st state) {
	b.watchMu.Lock()
	w := b.watched[channel]
	if w == nil || w.baseSent {
		b.watchMu.Unlock()
		return
	}
	w.baseSent = true
	b.watchMu.Unlock()
	w.setHanded(st)
	b.post(w.shard, event{w: w, baseline: &st})
}

func (b *Broker) post(shard chan event, ev event) {
	select {
	case shard <- ev:
	case <-b.done:
	}
}

// route drains the shared Go channel every watched subject delivers to,
// and passes each message to its channel's dispatcher.
func (b *Broker) route() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case m := <-b.live:
			tok, ok := strings.CutPrefix(m.Subject, b.livePrefix)
			if !ok {
				continue
			}
			ch, err := decodeToken(tok)
			if err != nil {
				continue
			}
			b.watchMu.Lock()
			w := b.watched[ch]
			b.watchMu.Unlock()
			if w == nil {
				continue // unwatched meanwhile
			}
			if m.Sub == nil {
				// A tail check's answer, queued behind the live messages
				// received before it.
				if tw, ok := m.Header[hdrTailWatch]; ok && len(tw) == 1 && tw[0] == w.id {
					var last *stored
					if sseq, err := strconv.ParseUint(m.Header.Get(hdrStreamSeq), 10, 64); err == nil && sseq > 0 {
						last = &stored{channel: ch, sseq: sseq}
					}
					b.post(w.shard, event{w: w, tail: true, last: last})
				}
				continue
			}
			if w.sub != m.Sub {
				continue // unwatched meanwhile
			}
			s, ok := b.parseStored(m)
			if !ok || s.channel != ch {
				continue
			}
			b.post(w.shard, event{w: w, live: s})
		}
	}
}

// dispatch hands one shard's publications to the Handler, in seq order per
// channel.
func (b *Broker) dispatch(in chan event) {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case ev := <-in:
			if b.watchOf(ev.w.channel) != ev.w {
				continue // unwatched meanwhile
			}
			b.handle(ev)
		}
	}
}

func (b *Broker) handle(ev event) {
	w := ev.w
	switch {
	case ev.baseline != nil:
		if w.hasBase {
			return
		}
		w.hasBase = true
		w.sseq, w.last, w.epoch = ev.baseline.sseq, ev.baseline.seq, ev.baseline.epoch
		early := w.early
		w.early = nil
		for _, s := range early {
			b.accept(w, s)
		}
		if len(early) >= maxEarly {
			b.markTail(w.channel) // some may have been dropped
		}
	case ev.live != nil:
		if !w.hasBase {
			if len(w.early) < maxEarly {
				w.early = append(w.early, ev.live)
			}
			return
		}
		b.accept(w, ev.live)
	case ev.tail:
		if !w.hasBase {
			if w.tailTries < maxTailTries {
				w.tailTries++
				b.markTail(w.channel)
			}
			return
		}
		if ev.last != nil && ev.last.sseq > w.sseq {
			if err := b.catchUp(w); err != nil {
				b.log.Warn("catch up a watched channel", "channel", w.channel, "error", err)
				b.markTail(w.channel)
			}
		}
	}
}

// accept hands s over if it is the channel's next publication. A message
// dealt with already is dropped; a gap (NATS dropped live messages, or
// they were placed before the interest reached the stream) is filled from
// the stream first.
func (b *Broker) accept(w *watch, s *stored) {
	if s.sseq <= w.sseq {
		return
	}
	if !b.next(w, s) {
		err := b.catchUp(w)
		if err != nil {
			b.log.Warn("fill a gap in a watched channel", "channel", w.channel, "error", err)
		}
		if err != nil || s.sseq > w.sseq {
			// The read failed, or was answered by a replica that does
			// not have s yet (it would have everything before s if it
			// had): s and what it misses are handed over by a tail check.
			b.markTail(w.channel)
		}
		return
	}
	b.take(w, s)
}

// next says whether s follows what the channel's Handler has: the next
// seq of its run, a marker, or the first of a new run.
func (b *Broker) next(w *watch, s *stored) bool {
	switch {
	case s.marker:
		return true
	case s.epoch == w.epoch:
		return s.seq == w.last+1
	default:
		return s.seq == 1
	}
}

// take hands s over (a marker only opens the next run). When s is of
// another run than the Handler's last publication (its first, after every
// message of the channel aged out), or a marker opens one, the Handler is
// told first (broker.RunHandler): the channel's subscribers hold positions
// of the previous run, which s does not continue. So it is when s does not
// follow the last one in its run (the ones between aged out before this
// node read them).
func (b *Broker) take(w *watch, s *stored) {
	w.sseq = s.sseq
	h := b.handler.Load()
	if s.marker {
		w.last, w.epoch = 0, b.epochAfter(s.sseq)
		if h != nil && h.run != nil {
			h.run.RunChanged(w.channel, broker.Position{Epoch: w.epoch})
		}
		w.setHanded(state{sseq: w.sseq, epoch: w.epoch})
		return
	}
	sameRun := s.epoch == w.epoch
	if sameRun && s.seq <= w.last {
		return // the same seq twice cannot happen; never hand it twice
	}
	gap := !b.next(w, s)
	if gap {
		b.log.Warn("a watched channel lost publications that are no longer kept", "channel", w.channel,
			"epoch", s.epoch, "from_seq", w.last+1, "to_seq", s.seq-1)
	}
	w.last, w.epoch = s.seq, s.epoch
	if (!sameRun || gap) && h != nil && h.run != nil {
		// A gap inside a run is told as a new run is: the subscribers'
		// next seq is not the one they wait for, and they learn where
		// the stream goes on rather than take the jump for a loss.
		h.run.RunChanged(w.channel, broker.Position{Seq: s.seq - 1, Epoch: s.epoch})
	}
	if h != nil && h.h != nil {
		h.h.HandlePublication(s.publication())
	}
	// After the Handler has it: a History or Position answered meanwhile
	// says the seq before, and the joining subscriber gets s from the hub's
	// buffer.
	w.setHanded(state{sseq: s.sseq, seq: s.seq, epoch: s.epoch})
}

// catchUp reads the channel from the stream after what its Handler has, to
// its end, and hands each message over in order.
func (b *Broker) catchUp(w *watch) error {
	b.stats.gapFills.Add(1)
	ctx, cancel := context.WithTimeout(b.life, b.opts.PublishTimeout)
	defer cancel()
	for {
		msgs, err := b.channelFrom(ctx, w.channel, w.sseq+1, catchUpChunk)
		if err != nil {
			return err
		}
		for _, s := range msgs {
			if s.sseq > w.sseq {
				b.take(w, s)
			}
		}
		if len(msgs) < catchUpChunk {
			return nil
		}
		select {
		case <-b.done:
			return errors.New("broker closed")
		default:
		}
	}
}

// markTail asks for a tail check of the channel.
func (b *Broker) markTail(channel string) {
	b.tailMu.Lock()
	b.tailPending[channel] = struct{}{}
	b.tailMu.Unlock()
	select {
	case b.tailKick <- struct{}{}:
	default:
	}
}

// tailChecker reads the last message of the channels marked since its last
// round (watched meanwhile, after a reconnect, after a failed fill) and
// lets their dispatchers fill what the Handler misses. A round waits
// TailCheckDelay first, so that the SUBs of a burst of Watches reach
// every server and are checked in one request per 256 channels.
func (b *Broker) tailChecker() {
	defer b.wg.Done()
	timer := time.NewTimer(0)
	<-timer.C
	for {
		select {
		case <-b.done:
			return
		case <-b.tailKick:
		}
		timer.Reset(b.opts.TailCheckDelay)
		select {
		case <-b.done:
			timer.Stop()
			return
		case <-timer.C:
		}
		b.tailMu.Lock()
		pending := b.tailPending
		b.tailPending = make(map[string]struct{})
		b.tailMu.Unlock()
		err := b.tailCheck(pending)
		if r := b.reconnectRounds.Load(); err == nil && r > 0 && b.reconnectRounds.CompareAndSwap(r, r-1) {
			// A replica that answers while it catches up after an outage
			// may not have the tail yet: look again a bit later.
			timer.Reset(5 * b.opts.TailCheckDelay)
			select {
			case <-b.done:
				timer.Stop()
				return
			case <-timer.C:
			}
			b.markAllTails()
		}
		if err != nil {
			b.log.Warn("tail check of watched channels", "channels", len(pending), "error", err)
			// Again at the next round (a reconnect starts one).
			b.tailMu.Lock()
			for ch := range pending {
				b.tailPending[ch] = struct{}{}
			}
			b.tailMu.Unlock()
			if b.nc.Status() == nats.CONNECTED && b.usable() == nil {
				select {
				case b.tailKick <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (b *Broker) tailCheck(pending map[string]struct{}) error {
	if err := b.usable(); err != nil {
		return err // checked again once set up
	}
	ctx, cancel := context.WithTimeout(b.life, b.opts.PublishTimeout)
	defer cancel()
	// The server has the SUBs sent before the flush.
	if err := b.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	var channels []string
	watches := make(map[string]*watch, len(pending))
	b.watchMu.Lock()
	for ch := range pending {
		if w := b.watched[ch]; w != nil {
			channels = append(channels, ch)
			watches[ch] = w
		}
	}
	b.watchMu.Unlock()
	if len(channels) == 0 {
		return nil
	}
	b.stats.tailChecks.Add(int64((len(channels) + maxMultiLast - 1) / maxMultiLast))
	lasts, err := b.lastOfMany(ctx, channels)
	if err != nil {
		return err
	}
	for _, ch := range channels {
		// Through the shared channel, behind the live messages that came
		// before the answer: on one server, those are what the tail check
		// found, and handing them over from the stream first would put
		// this channel ahead of others.
		m := &nats.Msg{Subject: b.livePrefix + encodeToken(ch), Header: nats.Header{hdrTailWatch: []string{watches[ch].id}}}
		if last := lasts[ch]; last != nil {
			m.Header[hdrStreamSeq] = []string{strconv.FormatUint(last.sseq, 10)}
		}
		select {
		case b.live <- m:
		case <-b.done:
			return nil
		}
	}
	return nil
}

// hdrTailWatch marks a tail check's answer in the shared channel, with the
// watch it is for.
const hdrTailWatch = "Herald-Tail-Watch"

// onReconnect checks the tail of every watched channel: what was placed
// while this node was away is handed over.
func (b *Broker) onReconnect(nc *nats.Conn) {
	if b.prevReconnect != nil {
		b.prevReconnect(nc)
	}
	b.reconnectRounds.Store(reconnectRounds)
	b.markAllTails()
}

// reconnectRounds is how many more tail checks of every watched channel
// follow the first after a reconnect.
const reconnectRounds = 3

func (b *Broker) markAllTails() {
	b.watchMu.Lock()
	channels := make([]string, 0, len(b.watched))
	for ch := range b.watched {
		channels = append(channels, ch)
	}
	b.watchMu.Unlock()
	b.tailMu.Lock()
	for _, ch := range channels {
		b.tailPending[ch] = struct{}{}
	}
	b.tailMu.Unlock()
	select {
	case b.tailKick <- struct{}{}:
	default:
	}
}

// onAsyncError notices live messages NATS dropped (the shared channel was
// full): the channel's tail is checked.
func (b *Broker) onAsyncError(nc *nats.Conn, sub *nats.Subscription, err error) {
	if b.prevAsyncErr != nil {
		b.prevAsyncErr(nc, sub, err)
	}
	if sub == nil || !errors.Is(err, nats.ErrSlowConsumer) {
		return
	}
	if tok, ok := strings.CutPrefix(sub.Subject, b.livePrefix); ok {
		if ch, err := decodeToken(tok); err == nil {
			b.markTail(ch)
		}
	}
}
