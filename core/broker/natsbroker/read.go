package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/heraldhq/herald/core/broker"
)

// respMux receives the answers of batched direct gets (several messages
// and an end-of-batch status per request) on one wildcard subscription
// made once, so that no request waits for a new subscription's interest to
// reach the server that answers.
type respMux struct {
	prefix string
	sub    *nats.Subscription
	mu     sync.Mutex
	waits  map[string]chan *nats.Msg
}

func (r *respMux) start(nc *nats.Conn) error {
	r.prefix = nats.NewInbox() + "."
	r.waits = make(map[string]chan *nats.Msg)
	sub, err := nc.Subscribe(r.prefix+"*", func(m *nats.Msg) {
		r.mu.Lock()
		ch := r.waits[m.Subject[len(r.prefix):]]
		r.mu.Unlock()
		if ch == nil {
			return
		}
		select {
		case ch <- m:
		default: // more than asked for: the request fails as incomplete
		}
	})
	if err != nil {
		return err
	}
	// Bounded by the broker's requests, each bounded in what it asks.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	r.sub = sub
	return nil
}

func (r *respMux) stop() {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
	}
}

func (r *respMux) register(capacity int) (string, chan *nats.Msg) {
	tok := nuid.Next()
	ch := make(chan *nats.Msg, capacity)
	r.mu.Lock()
	r.waits[tok] = ch
	r.mu.Unlock()
	return r.prefix + tok, ch
}

func (r *respMux) unregister(reply string) {
	r.mu.Lock()
	delete(r.waits, reply[len(r.prefix):])
	r.mu.Unlock()
}

// directRequest is JetStream's direct get request (JSApiMsgGetRequest).
type directRequest struct {
	Seq       uint64   `json:"seq,omitempty"`
	LastFor   string   `json:"last_by_subj,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
}

// maxMultiLast is how many subjects one multi-last request asks for; the
// server answers at most 1024 messages per request.
const maxMultiLast = 256

// readTimeout bounds one read of the stream.
func (b *Broker) readCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.PublishTimeout)
}

// lastOf reads the channel's last stored message (nil: it has none). One
// direct get, answered by any replica.
func (b *Broker) lastOf(ctx context.Context, channel string) (*stored, error) {
	ctx, cancel := b.readCtx(ctx)
	defer cancel()
	m, err := b.request(ctx, b.directGet+"."+b.chPrefix+encodeToken(channel))
	if err != nil {
		return nil, fmt.Errorf("read the last message of %q: %w", channel, unavailable(err))
	}
	switch status := m.Header.Get(hdrStatus); status {
	case "":
	case "404":
		return nil, nil
	default:
		return nil, fmt.Errorf("read the last message of %q: status %s %s", channel, status, m.Header.Get(hdrDescription))
	}
	s, ok := b.parseStored(m)
	if !ok {
		return nil, fmt.Errorf("read the last message of %q: not a herald message", channel)
	}
	return s, nil
}

// request sends a direct get. While no replica serves direct gets (a
// stream just created, or electing a leader) there are no responders: it
// asks again until ctx ends.
func (b *Broker) request(ctx context.Context, subject string) (*nats.Msg, error) {
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		m, err := b.nc.RequestWithContext(ctx, subject, nil)
		if !errors.Is(err, nats.ErrNoResponders) {
			return m, err
		}
		if serr := sleep(ctx, wait); serr != nil {
			return nil, err
		}
	}
}

// batchGet sends a batched direct get and returns the messages it answers
// (none for "no results"), in stream order.
func (b *Broker) batchGet(ctx context.Context, api string, req directRequest, expect int) ([]*nats.Msg, error) {
	ctx, cancel := b.readCtx(ctx)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		out, err := b.batchGetOnce(ctx, api, body, expect)
		if !errors.Is(err, nats.ErrNoResponders) {
			return out, err
		}
		if serr := sleep(ctx, wait); serr != nil {
			return nil, unavailable(err)
		}
	}
}

func (b *Broker) batchGetOnce(ctx context.Context, api string, body []byte, expect int) ([]*nats.Msg, error) {
	reply, ch := b.resp.register(expect + 2)
	defer b.resp.unregister(reply)
	if err := b.nc.PublishRequest(api, reply, body); err != nil {
		return nil, unavailable(err)
	}
	var out []*nats.Msg
	for {
		select {
		case <-ctx.Done():
			return nil, unavailable(ctx.Err())
		case m := <-ch:
			switch status := m.Header.Get(hdrStatus); status {
			case "":
				out = append(out, m)
			case "204": // end of batch
				return out, nil
			case "404":
				return out, nil
			case "503":
				return nil, nats.ErrNoResponders
			default:
				return nil, fmt.Errorf("direct get: status %s %s", status, m.Header.Get(hdrDescription))
			}
		}
	}
}

// storedBatch is batchGet on the notifications stream.
func (b *Broker) storedBatch(ctx context.Context, req directRequest, expect int) ([]*stored, error) {
	msgs, err := b.batchGet(ctx, b.directGet, req, expect)
	if err != nil {
		return nil, err
	}
	out := make([]*stored, 0, len(msgs))
	for _, m := range msgs {
		if s, ok := b.parseStored(m); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// channelFrom reads up to count messages of the channel from stream
// sequence from on.
func (b *Broker) channelFrom(ctx context.Context, channel string, from uint64, count int) ([]*stored, error) {
	msgs, err := b.storedBatch(ctx, directRequest{Seq: max(from, 1), NextFor: b.chPrefix + encodeToken(channel), Batch: count}, count)
	if err != nil {
		return nil, fmt.Errorf("read %q from stream sequence %d: %w", channel, from, err)
	}
	return msgs, nil
}

// lastOfMany reads the last message of each channel, in requests of
// maxMultiLast subjects. Channels without one are absent from the answer.
func (b *Broker) lastOfMany(ctx context.Context, channels []string) (map[string]*stored, error) {
	out := make(map[string]*stored, len(channels))
	for len(channels) > 0 {
		chunk := channels[:min(len(channels), maxMultiLast)]
		channels = channels[len(chunk):]
		subjects := make([]string, len(chunk))
		for i, ch := range chunk {
			subjects[i] = b.chPrefix + encodeToken(ch)
		}
		msgs, err := b.storedBatch(ctx, directRequest{MultiLast: subjects}, len(subjects))
		if err != nil {
			return nil, fmt.Errorf("read the last message of %d channels: %w", len(chunk), err)
		}
		for _, s := range msgs {
			out[s.channel] = s
		}
	}
	return out, nil
}

// lastOfLeader reads the channel's last message from the stream's leader
// (the JetStream API rather than a direct get): current, where a replica
// answering direct gets may lag. It costs the leader a JSON answer, so it
// is asked only when direct gets seem stale.
func (b *Broker) lastOfLeader(ctx context.Context, channel string) (*stored, error) {
	ctx, cancel := b.readCtx(ctx)
	defer cancel()
	body, err := json.Marshal(directRequest{LastFor: b.chPrefix + encodeToken(channel)})
	if err != nil {
		return nil, err
	}
	m, err := b.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+b.opts.Stream, body)
	if err != nil {
		return nil, fmt.Errorf("read the last message of %q from the leader: %w", channel, unavailable(err))
	}
	var resp struct {
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, fmt.Errorf("read the last message of %q from the leader: %w", channel, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == codeMessageNotFound:
		return nil, nil
	case resp.Error != nil:
		return nil, fmt.Errorf("read the last message of %q from the leader: %w", channel, resp.Error)
	case resp.Message == nil:
		return nil, fmt.Errorf("read the last message of %q from the leader: empty answer", channel)
	}
	msg := nats.NewMsg(resp.Message.Subject)
	parseHeader(resp.Message.Header, msg.Header)
	msg.Header[hdrStreamSubject] = []string{resp.Message.Subject}
	msg.Header[hdrStreamSeq] = []string{strconv.FormatUint(resp.Message.Seq, 10)}
	msg.Header[hdrTimeStamp] = []string{resp.Message.Time.Format(time.RFC3339Nano)}
	msg.Data = resp.Message.Data
	s, ok := b.parseStored(msg)
	if !ok {
		return nil, fmt.Errorf("read the last message of %q from the leader: not a herald message", channel)
	}
	return s, nil
}

// parseHeader reads a NATS header block ("NATS/1.0\r\nKey: Value\r\n...").
func parseHeader(raw []byte, into nats.Header) {
	lines := strings.Split(string(raw), "\r\n")
	for _, line := range lines[min(1, len(lines)):] {
		k, v, ok := strings.Cut(line, ":")
		if ok && k != "" {
			into[k] = append(into[k], strings.TrimSpace(v))
		}
	}
}

// recordOf reads the channel's run record (zero: it never started a run).
func (b *Broker) recordOf(ctx context.Context, channel string) (runRecord, error) {
	ctx, cancel := b.readCtx(ctx)
	defer cancel()
	m, err := b.request(ctx, b.runsGet+"."+b.runPrefix+encodeToken(channel))
	if err != nil {
		return runRecord{}, fmt.Errorf("read the run record of %q: %w", channel, unavailable(err))
	}
	switch status := m.Header.Get(hdrStatus); status {
	case "":
		return parseRecord(m)
	case "404":
		return runRecord{}, nil
	default:
		return runRecord{}, fmt.Errorf("read the run record of %q: status %s %s", channel, status, m.Header.Get(hdrDescription))
	}
}

func parseRecord(m *nats.Msg) (runRecord, error) {
	n, err1 := strconv.ParseUint(string(m.Data), 10, 64)
	sseq, err2 := strconv.ParseUint(m.Header.Get(hdrStreamSeq), 10, 64)
	if err1 != nil || err2 != nil {
		return runRecord{}, fmt.Errorf("run record %q: not a run number", m.Data)
	}
	at, _ := time.Parse(time.RFC3339Nano, m.Header.Get(hdrTimeStamp))
	return runRecord{n: n, sseq: sseq, at: at}, nil
}

// channelState reads where the channel stands: its last message, and its
// run record when it has none.
//
// Both are asked at once (the record is needed only when the channel has
// no message, but asking after would make a channel never published to,
// the most common subscription, cost two round trips).
func (b *Broker) channelState(ctx context.Context, channel string) (state, error) {
	type recAnswer struct {
		rec runRecord
		err error
	}
	recCh := make(chan recAnswer, 1)
	go func() {
		rec, err := b.recordOf(ctx, channel)
		recCh <- recAnswer{rec, err}
	}()
	last, err := b.lastOf(ctx, channel)
	ra := <-recCh // ends with ctx at the latest
	if err != nil {
		return state{}, err
	}
	if last != nil {
		return b.stateOf(last, runRecord{}), nil
	}
	if ra.err != nil {
		return state{}, ra.err
	}
	return b.stateOf(nil, ra.rec), nil
}

// channelStates is channelState of several channels, in one multi-last
// request per 256 channels and stream.
func (b *Broker) channelStates(ctx context.Context, channels []string) (map[string]state, error) {
	lasts, err := b.lastOfMany(ctx, channels)
	if err != nil {
		return nil, err
	}
	var fresh []string
	for _, ch := range channels {
		if lasts[ch] == nil {
			fresh = append(fresh, ch)
		}
	}
	recs := make(map[string]runRecord, len(fresh))
	for len(fresh) > 0 {
		chunk := fresh[:min(len(fresh), maxMultiLast)]
		fresh = fresh[len(chunk):]
		subjects := make([]string, len(chunk))
		for i, ch := range chunk {
			subjects[i] = b.runPrefix + encodeToken(ch)
		}
		msgs, err := b.batchGet(ctx, b.runsGet, directRequest{MultiLast: subjects}, len(subjects))
		if err != nil {
			return nil, fmt.Errorf("read the run records of %d channels: %w", len(chunk), err)
		}
		for _, m := range msgs {
			tok, ok := strings.CutPrefix(m.Header.Get(hdrStreamSubject), b.runPrefix)
			ch, err := decodeToken(tok)
			if !ok || err != nil {
				continue
			}
			if rec, err := parseRecord(m); err == nil {
				recs[ch] = rec
			}
		}
	}
	out := make(map[string]state, len(channels))
	for _, ch := range channels {
		out[ch] = b.stateOf(lasts[ch], recs[ch])
	}
	return out, nil
}

// Positions is Position of many channels at once: one multi-last request
// per 256 channels (and one per 256 of them without messages, for their
// run records), rather than a round trip each. A subscribe to many
// channels may use it.
func (b *Broker) Positions(ctx context.Context, channels []string) (map[string]broker.Position, error) {
	if err := b.usable(); err != nil {
		return nil, fmt.Errorf("positions of %d channels: %w", len(channels), err)
	}
	sts, err := b.channelStates(ctx, channels)
	if err != nil {
		return nil, fmt.Errorf("positions of %d channels: %w", len(channels), err)
	}
	out := make(map[string]broker.Position, len(sts))
	for ch, st := range sts {
		b.noteBaseline(ch, st)
		out[ch] = st.position()
	}
	return out, nil
}

// Position implements broker.Broker: one direct get of the channel's last
// message (and one of its run record if it has none). A channel that never
// had one costs nothing anywhere.
//
// For a channel this node watches, the answer is also one the Handler has
// reached: it waits (at most PublishTimeout) for the live delivery to
// catch up with what it read, else answers where the Handler stands. A
// subscriber joining at that position then gets every later publication
// once.
func (b *Broker) Position(ctx context.Context, channel string) (broker.Position, error) {
	if err := b.usable(); err != nil {
		return broker.Position{}, fmt.Errorf("position of %q: %w", channel, err)
	}
	if _, ok := b.handedOf(channel); ok {
		st, err := b.channelState(ctx, channel)
		if err != nil {
			return broker.Position{}, fmt.Errorf("position of %q: %w", channel, err)
		}
		if h, reached := b.waitHanded(ctx, channel, st.sseq); !reached {
			return h.position(), nil
		}
		return st.position(), nil
	}
	st, err := b.channelState(ctx, channel)
	if err != nil {
		return broker.Position{}, fmt.Errorf("position of %q: %w", channel, err)
	}
	b.noteBaseline(channel, st)
	return st.position(), nil
}

// smallHistory is the history size up to which History reads everything
// a channel keeps in one round trip, rather than its last message first.
const smallHistory = 64

// History implements broker.Broker. It reads the channel's last message
// (one round trip), and when something was missed every message the
// channel keeps (a second one, at most HistorySize messages). With a
// history of at most 64, it reads everything at once. For a channel this
// node watches, the answer is one its Handler has reached, as Position's.
func (b *Broker) History(ctx context.Context, channel string, since broker.Position) ([]*broker.Publication, broker.Position, error) {
	if err := b.usable(); err != nil {
		return nil, broker.Position{}, fmt.Errorf("history of %q: %w", channel, err)
	}
	pubs, at, err := b.history(ctx, channel, since)
	if err != nil && !errors.Is(err, broker.ErrUnrecoverable) {
		return nil, at.position(), err
	}
	if _, watched := b.handedOf(channel); watched {
		if h, reached := b.waitHanded(ctx, channel, at.sseq); !reached {
			return b.historyUpTo(ctx, channel, since, h)
		}
	} else {
		b.noteBaseline(channel, at)
	}
	return pubs, at.position(), err
}

// history reads the publications after since and the state they bring
// the caller to (on ErrUnrecoverable, the channel's state).
func (b *Broker) history(ctx context.Context, channel string, since broker.Position) ([]*broker.Publication, state, error) {
	var kept []*stored
	var st state
	var err error
	if b.opts.HistorySize > 0 && b.opts.HistorySize <= smallHistory {
		if kept, err = b.channelFrom(ctx, channel, 1, b.opts.HistorySize+1); err != nil {
			return nil, state{}, fmt.Errorf("history of %q: %w", channel, err)
		}
		if len(kept) == 0 {
			st, err = b.channelState(ctx, channel)
		} else {
			st = b.stateOf(kept[len(kept)-1], runRecord{})
		}
	} else {
		st, err = b.channelState(ctx, channel)
	}
	if err != nil {
		return nil, state{}, fmt.Errorf("history of %q: %w", channel, err)
	}
	cur := st.position()
	if since == cur {
		return nil, st, nil
	}
	if since.Epoch != cur.Epoch || since.Seq > cur.Seq || b.opts.HistorySize == 0 ||
		cur.Seq-since.Seq > uint64(b.opts.HistorySize) {
		return nil, st, broker.ErrUnrecoverable
	}
	if kept == nil {
		if kept, err = b.channelFrom(ctx, channel, 1, b.opts.HistorySize+1); err != nil {
			return nil, st, fmt.Errorf("history of %q: %w", channel, err)
		}
	}
	// The answer's position is that of the last publication it returns:
	// the two reads may come from replicas a little apart, and the
	// Handler must go on from exactly what the caller got.
	var pubs []*broker.Publication
	got := state{epoch: since.Epoch, seq: since.Seq}
	for _, s := range kept {
		if s.marker || s.epoch != since.Epoch || s.seq < got.seq {
			continue
		}
		if s.seq == since.Seq {
			got.sseq = s.sseq
			continue
		}
		if s.seq != got.seq+1 || b.expired(s) {
			return nil, st, broker.ErrUnrecoverable
		}
		pubs = append(pubs, s.publication())
		got = state{sseq: s.sseq, seq: s.seq, epoch: s.epoch}
	}
	if len(pubs) == 0 && since.Seq > 0 && got.sseq == 0 && cur.Seq > since.Seq {
		// Neither since nor anything after it is kept.
		return nil, st, broker.ErrUnrecoverable
	}
	return pubs, got, nil
}

// historyUpTo is History of a watched channel: the publications after
// since up to where its Handler stands, read from the stream.
func (b *Broker) historyUpTo(ctx context.Context, channel string, since broker.Position, st state) ([]*broker.Publication, broker.Position, error) {
	cur := st.position()
	if since == cur {
		return nil, cur, nil
	}
	if since.Epoch != cur.Epoch || since.Seq > cur.Seq || b.opts.HistorySize == 0 ||
		cur.Seq-since.Seq > uint64(b.opts.HistorySize) {
		return nil, cur, broker.ErrUnrecoverable
	}
	kept, err := b.channelFrom(ctx, channel, 1, b.opts.HistorySize+1)
	if err != nil {
		return nil, cur, fmt.Errorf("history of %q: %w", channel, err)
	}
	pubs := make([]*broker.Publication, 0, cur.Seq-since.Seq)
	next := since.Seq + 1
	for _, s := range kept {
		if s.marker || s.epoch != cur.Epoch || s.seq < next || s.seq > cur.Seq {
			continue
		}
		if s.seq != next || b.expired(s) {
			return nil, cur, broker.ErrUnrecoverable
		}
		pubs = append(pubs, s.publication())
		next++
	}
	if next <= cur.Seq {
		return nil, cur, broker.ErrUnrecoverable
	}
	return pubs, cur, nil
}

// expired says whether s is older than the history TTL. JetStream drops
// it a moment later (its expiry runs on a timer); until then it is not
// offered for recovery, so that the TTL means what it means on one node.
func (b *Broker) expired(s *stored) bool {
	return b.opts.HistoryTTL > 0 && !s.storedAt.IsZero() && time.Since(s.storedAt) > b.opts.HistoryTTL
}

// byStreamSeq reads n consecutive messages from stream sequence from,
// whatever their channel (an atomic batch is stored consecutively).
func (b *Broker) byStreamSeq(ctx context.Context, from uint64, n int) ([]*stored, error) {
	msgs, err := b.storedBatch(ctx, directRequest{Seq: from, Batch: n}, n)
	if err != nil {
		return nil, fmt.Errorf("read %d messages from stream sequence %d: %w", n, from, err)
	}
	if len(msgs) != n || msgs[0].sseq != from {
		return nil, fmt.Errorf("read %d messages from stream sequence %d: %w", n, from, errNotFound)
	}
	return msgs, nil
}

var errNotFound = errors.New("not in the stream")
