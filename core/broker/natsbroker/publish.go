package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/heraldhq/herald/core/broker"
)

// chanState is what this node remembers of a channel it published to or
// watches: where it stood after the last message the node knows of. Its
// mutex serializes this node's publishers to the channel, so that they do
// not race each other at the server (nodes still may: the expected
// sequence settles it).
type chanState struct {
	mu    sync.Mutex
	known bool
	st    state
}

func (b *Broker) stateFor(channel string) *chanState {
	b.statesMu.Lock()
	defer b.statesMu.Unlock()
	cs := b.states[channel]
	if cs != nil {
		return cs
	}
	if len(b.states) >= b.opts.CacheChannels {
		// Forget some channel nobody is publishing to right now: it is read
		// again when next published to.
		for name, other := range b.states {
			if other.mu.TryLock() {
				delete(b.states, name)
				other.mu.Unlock()
				break
			}
		}
	}
	cs = &chanState{}
	// The key outlives the publish: its own copy, not a view into the
	// request it came from (the publish parser's names share one array).
	b.states[strings.Clone(channel)] = cs
	return cs
}

func (b *Broker) forgetStates() {
	b.statesMu.Lock()
	b.states = make(map[string]*chanState)
	b.statesMu.Unlock()
}

// JetStream error codes the publish path branches on.
const (
	codeClusterNotAvailable    = 10008
	codeInsufficientResources  = 10023
	codeWrongLastSequence      = 10071
	codeMessageNotFound        = 10037
	codeStoreFailed            = 10077
	codeWrongLastSeqConstant   = 10164
	codeBatchDuplicate         = 10201
	codeBatchTooManyInflight   = 10210
	codeJetStreamNotAvailable  = 10076
	codeAccountResourcesExceed = 10002
)

type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("jetstream: %s (%d/%d)", e.Description, e.Code, e.ErrCode)
}

type pubAck struct {
	Stream    string    `json:"stream"`
	Seq       uint64    `json:"seq"`
	Duplicate bool      `json:"duplicate"`
	Count     int       `json:"count"`
	Error     *apiError `json:"error"`
}

// pending is one notification being published.
type pending struct {
	n       *broker.Notification
	channel *chanState
	subject string
	id      string
	seq     uint64
	epoch   string
	msg     *nats.Msg
}

// Publish implements broker.Broker. One notification is one JetStream
// publish; several are one atomic batch, stored all together or not at
// all. Each notification's channel seq is the seq of the channel's last
// message plus one, made safe against every other node by JetStream's
// expected last subject sequence: a publish that lost a race is read
// again and retried, so seqs never fork nor skip.
//
// Publish returns once JetStream acknowledged the publication (stored on
// the stream's replicas). It does not hand the publications to the
// Handler: the stream republishes them, to this node as to every other
// that watches their channels.
func (b *Broker) Publish(ctx context.Context, ns []broker.Notification) ([]*broker.Publication, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
	}
	if len(ns) > maxBatch {
		return nil, fmt.Errorf("publish %d notifications: at most %d go in one atomic publish", len(ns), maxBatch)
	}
	if err := b.usable(); err != nil {
		return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
	}
	if err := b.connected(); err != nil {
		return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
	}
	ps := make([]pending, len(ns))
	channels := make(map[string]*chanState, 1)
	// One lock for the publish's ids, not ulid.Make's per id.
	ids := b.ids.Reserve(time.Now().UnixMilli(), len(ns))
	for i := range ns {
		n := &ns[i]
		cs := channels[n.Channel]
		if cs == nil {
			cs = b.stateFor(n.Channel)
			channels[n.Channel] = cs
		}
		ps[i] = pending{n: n, channel: cs, subject: b.chPrefix + encodeToken(n.Channel), id: ids.Next().String()}
	}
	// Lock in one order, so that two publishes sharing channels cannot
	// each hold one the other waits for.
	names := make([]string, 0, len(channels))
	for name := range channels {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		channels[name].mu.Lock()
		defer channels[name].mu.Unlock()
	}

	actx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	conflicts := 0 // in a row: after two, the channels are read from the leader
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := actx.Err(); err != nil {
				return nil, fmt.Errorf("publish %d notifications: gave up after %d attempts: %w", len(ns), attempt, unavailable(err))
			}
		}
		if err := b.refresh(actx, names, channels, conflicts > 1); err != nil {
			return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
		}
		if ok, err := b.startRuns(actx, names, channels); err != nil {
			return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
		} else if !ok {
			continue
		}
		now := time.Now()
		if err := b.build(ps, now); err != nil {
			return nil, fmt.Errorf("publish %d notifications: %w", len(ns), err)
		}
		ack, sent, err := b.send(actx, ps)
		if err != nil {
			if sent {
				// The publish may have been stored: look before saying
				// it was not.
				if pubs, ok := b.landed(ps, now); ok {
					return pubs, nil
				}
			}
			return nil, fmt.Errorf("publish %d notifications: %w", len(ns), unavailable(err))
		}
		if ack.Error == nil {
			if ack.Duplicate {
				b.stats.duplicates.Add(1)
				return b.original(ctx, ps, ack.Seq)
			}
			b.stats.published.Add(int64(len(ps)))
			return b.placed(ps, ack.Seq, now), nil
		}
		if ack.Error.ErrCode != codeWrongLastSequence {
			conflicts = 0
		}
		switch e := ack.Error; e.ErrCode {
		case codeWrongLastSequence:
			// Another node published to one of the channels: read where
			// they stand now and go again.
			b.stats.conflicts.Add(1)
			conflicts++
			for _, cs := range channels {
				cs.known = false
			}
			continue
		case codeWrongLastSeqConstant, codeBatchTooManyInflight:
			// A replicated stream still applies another publish to the
			// same channel, or too many batches are in flight: wait a
			// moment.
			b.stats.conflicts.Add(1)
			for _, cs := range channels {
				cs.known = false
			}
			if err := sleep(actx, min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)); err != nil {
				return nil, fmt.Errorf("publish %d notifications: %w", len(ns), unavailable(err))
			}
		case codeBatchDuplicate:
			b.stats.duplicates.Add(1)
			return b.originalBatch(ctx, ps)
		case codeStoreFailed, codeAccountResourcesExceed:
			if strings.Contains(e.Description, "maximum bytes") || strings.Contains(e.Description, "maximum messages") ||
				e.ErrCode == codeAccountResourcesExceed {
				return nil, fmt.Errorf("publish %d notifications: %w (%s)", len(ns), ErrFull, e.Description)
			}
			return nil, fmt.Errorf("publish %d notifications: %w", len(ns), e)
		case codeClusterNotAvailable, codeInsufficientResources, codeJetStreamNotAvailable:
			return nil, fmt.Errorf("publish %d notifications: %w: %w", len(ns), broker.ErrUnavailable, e)
		default:
			if e.Code == 503 {
				return nil, fmt.Errorf("publish %d notifications: %w: %w", len(ns), broker.ErrUnavailable, e)
			}
			return nil, fmt.Errorf("publish %d notifications: %w", len(ns), e)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// refresh reads where the channels this node does not know stand: one
// direct get for one channel, one multi-last request for several.
//
// With fromLeader (the publish lost the race twice in a row: the replica
// answering direct gets may lag), the last messages are read from the
// stream's leader, one request per channel.
func (b *Broker) refresh(ctx context.Context, names []string, channels map[string]*chanState, fromLeader bool) error {
	var unknown []string
	for _, name := range names {
		if !channels[name].known {
			unknown = append(unknown, name)
		}
	}
	if fromLeader {
		for _, name := range unknown {
			last, err := b.lastOfLeader(ctx, name)
			if err != nil {
				return err
			}
			var rec runRecord
			if last == nil {
				if rec, err = b.recordOf(ctx, name); err != nil {
					return err
				}
			}
			channels[name].st, channels[name].known = b.stateOf(last, rec), true
		}
		return nil
	}
	if len(unknown) == 1 {
		st, err := b.channelState(ctx, unknown[0])
		if err != nil {
			return err
		}
		channels[unknown[0]].st, channels[unknown[0]].known = st, true
		return nil
	}
	sts, err := b.channelStates(ctx, unknown)
	if err != nil {
		return err
	}
	for _, name := range unknown {
		cs := channels[name]
		cs.st, cs.known = sts[name], true
	}
	return nil
}

// startRuns writes the run record of each channel that starts a run with
// this publish, before the publish: whatever becomes of the publish, a
// later run of the channel never gets the same epoch. A record is written
// only if the channel's record has not changed since it was read
// (expected last subject sequence): ok is false when another node wrote
// one meanwhile, and the publish must read the channels again.
func (b *Broker) startRuns(ctx context.Context, names []string, channels map[string]*chanState) (ok bool, err error) {
	var fresh []*chanState
	var freshNames []string
	for _, name := range names {
		if cs := channels[name]; cs.st.fresh && !cs.st.recorded {
			fresh, freshNames = append(fresh, cs), append(freshNames, name)
		}
	}
	// The records of a publish's new channels are written side by side,
	// not one round trip after another.
	type result struct {
		lost bool
		err  error
	}
	results := make([]result, len(fresh))
	sem := make(chan struct{}, maxParallelRuns)
	var wg sync.WaitGroup
	for i, cs := range fresh {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i].lost, results[i].err = b.startRun(ctx, freshNames[i], cs)
		}()
	}
	wg.Wait()
	ok = true
	for _, r := range results {
		if r.err != nil {
			return false, r.err
		}
		if r.lost {
			ok = false
		}
	}
	return ok, nil
}

// maxParallelRuns bounds the run records one publish writes at once.
const maxParallelRuns = 32

// startRun writes one channel's run record; lost says another node started
// the run first (the channel must be read again).
func (b *Broker) startRun(ctx context.Context, name string, cs *chanState) (lost bool, err error) {
	m := nats.NewMsg(b.runPrefix + encodeToken(name))
	m.Header[hdrExpLastSubjSeq] = []string{strconv.FormatUint(cs.st.recSeq, 10)}
	m.Data = strconv.AppendUint(nil, cs.st.run, 10)
	resp, err := b.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return false, fmt.Errorf("start run %d of %q: %w", cs.st.run, name, unavailable(err))
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return false, fmt.Errorf("start run %d of %q: read the acknowledgement %q: %w", cs.st.run, name, resp.Data, err)
	}
	if ack.Error != nil {
		if ack.Error.ErrCode == codeWrongLastSequence || ack.Error.ErrCode == codeWrongLastSeqConstant {
			cs.known = false
			return true, nil
		}
		return false, fmt.Errorf("start run %d of %q: %w", cs.st.run, name, ack.Error)
	}
	cs.st.recSeq, cs.st.recorded = ack.Seq, true
	return false, nil
}

// build gives each notification its seq and the message that carries it.
// Only a channel's first notification in the batch carries the expected
// last subject sequence: JetStream refuses the header on a subject the
// batch already wrote, and the batch being atomic, the later ones cannot
// be raced anyway.
func (b *Broker) build(ps []pending, now time.Time) error {
	running := make(map[*chanState]state, 1)
	maxPayload := b.nc.MaxPayload()
	batchID := ""
	if len(ps) > 1 {
		batchID = nuid.Next()
	}
	for i := range ps {
		p := &ps[i]
		cur, seen := running[p.channel]
		if !seen {
			cur = p.channel.st
		}
		p.seq, p.epoch = cur.seq+1, cur.epoch
		running[p.channel] = state{seq: p.seq, epoch: p.epoch}
		accepted := p.n.Accepted
		if accepted.IsZero() {
			accepted = now
		}
		m := nats.NewMsg(p.subject)
		ts := now.UnixMilli()
		m.Data = broker.Encode(make([]byte, 0, broker.EncodedLen(p.n, p.id, p.seq, ts)), p.n, p.id, p.seq, ts)
		h := m.Header
		h[hdrSeq] = []string{strconv.FormatUint(p.seq, 10)}
		h[hdrEpoch] = []string{p.epoch}
		h[hdrID] = []string{p.id}
		h[hdrAccepted] = []string{strconv.FormatInt(accepted.UnixNano(), 10)}
		if !seen {
			h[hdrExpLastSubjSeq] = []string{strconv.FormatUint(cur.sseq, 10)}
		}
		if p.n.MsgID != "" {
			h[hdrMsgID] = []string{p.n.MsgID}
		}
		if batchID != "" {
			if i < len(ps)-1 {
				h[hdrMore] = []string{"1"}
			}
			h[hdrBatchID] = []string{batchID}
			h[hdrBatchSeq] = []string{strconv.Itoa(i + 1)}
			if i == len(ps)-1 {
				h[hdrBatchCommit] = []string{"1"}
			}
		}
		if size := msgSize(m); size > maxPayload {
			return fmt.Errorf("notification %d for %q is %d bytes with its headers, over the NATS max_payload of %d", i, p.n.Channel, size, maxPayload)
		}
		p.msg = m
	}
	return nil
}

func msgSize(m *nats.Msg) int64 {
	size := int64(len(m.Subject) + len(m.Data) + 16)
	for k, vs := range m.Header {
		for _, v := range vs {
			size += int64(len(k) + len(v) + 4)
		}
	}
	return size
}

// send publishes the messages (the batch's first ones without waiting,
// the last as a request for the batch's acknowledgement). sent says the
// commit (or the single message) went out: when err is set too, whether it
// was stored is unknown.
func (b *Broker) send(ctx context.Context, ps []pending) (*pubAck, bool, error) {
	for _, p := range ps[:len(ps)-1] {
		if err := b.nc.PublishMsg(p.msg); err != nil {
			return nil, false, err
		}
	}
	resp, err := b.nc.RequestMsgWithContext(ctx, ps[len(ps)-1].msg)
	if err != nil {
		// No responders: no stream answered, nothing was stored.
		return nil, !errors.Is(err, nats.ErrNoResponders), err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, true, fmt.Errorf("read the publish acknowledgement %q: %w", resp.Data, err)
	}
	return &ack, true, nil
}

// placed records where the publications went (the batch's messages are
// stored consecutively, the last at last) and returns them.
func (b *Broker) placed(ps []pending, last uint64, now time.Time) []*broker.Publication {
	first := last - uint64(len(ps)) + 1
	out := make([]*broker.Publication, len(ps))
	for i := range ps {
		p := &ps[i]
		p.channel.st = state{sseq: first + uint64(i), seq: p.seq, epoch: p.epoch}
		p.channel.known = true
		accepted := p.n.Accepted
		if accepted.IsZero() {
			accepted = now
		}
		out[i] = &broker.Publication{Channel: p.n.Channel, Seq: p.seq, ID: p.id, Data: p.msg.Data, More: i < len(ps)-1, Accepted: accepted}
	}
	return out
}

// landed looks whether a publish whose acknowledgement was lost was
// stored: the message after the expected one on the first channel is
// ours, or nothing of it is there.
func (b *Broker) landed(ps []pending, now time.Time) ([]*broker.Publication, bool) {
	ctx, cancel := context.WithTimeout(b.life, b.opts.PublishTimeout)
	defer cancel()
	first := &ps[0]
	msgs, err := b.channelFrom(ctx, first.n.Channel, first.channel.st.sseq+1, 1)
	if err != nil || len(msgs) == 0 || msgs[0].id != first.id {
		first.channel.known = false
		return nil, false
	}
	return b.placed(ps, msgs[0].sseq+uint64(len(ps))-1, now), true
}

// original answers a publish that JetStream found to be a duplicate (its
// MsgID was seen within the window) with what the first one placed.
func (b *Broker) original(ctx context.Context, ps []pending, sseq uint64) ([]*broker.Publication, error) {
	for _, p := range ps {
		p.channel.known = false
	}
	msgs, err := b.byStreamSeq(ctx, sseq, 1)
	if err != nil {
		return nil, fmt.Errorf("publish: duplicate of stream sequence %d: %w", sseq, err)
	}
	if msgs[0].msgID != ps[0].n.MsgID || msgs[0].marker {
		return nil, fmt.Errorf("publish: duplicate of stream sequence %d, which is not message %q", sseq, ps[0].n.MsgID)
	}
	return []*broker.Publication{msgs[0].publication()}, nil
}

// originalBatch answers an atomic publish that JetStream refused for a
// duplicate MsgID. The refusal does not say where the original is, so the
// first notification's MsgID is probed: a plain publish with that MsgID
// and an expected last msg id that can never match. JetStream checks
// duplicates before that expectation, so a duplicate is answered with the
// original's stream sequence and anything else is refused: the probe
// never stores anything. The original batch is stored consecutively from
// there.
func (b *Broker) originalBatch(ctx context.Context, ps []pending) ([]*broker.Publication, error) {
	for _, p := range ps {
		p.channel.known = false
	}
	first := ps[0].n.MsgID
	if first == "" {
		return nil, fmt.Errorf("publish %d notifications: JetStream found a duplicate MsgID, but not on the first notification", len(ps))
	}
	probe := nats.NewMsg(ps[0].subject)
	probe.Header[hdrMsgID] = []string{first}
	probe.Header[hdrExpLastMsgID] = []string{"herald-probe-" + nuid.Next()}
	pctx, cancel := context.WithTimeout(ctx, b.opts.PublishTimeout)
	defer cancel()
	resp, err := b.nc.RequestMsgWithContext(pctx, probe)
	if err != nil {
		return nil, fmt.Errorf("publish %d notifications: find the original of a duplicate: %w", len(ps), unavailable(err))
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil || ack.Error != nil || !ack.Duplicate {
		return nil, fmt.Errorf("publish %d notifications: some MsgIDs were published before, but not as this publish", len(ps))
	}
	msgs, err := b.byStreamSeq(ctx, ack.Seq, len(ps))
	if err != nil {
		return nil, fmt.Errorf("publish %d notifications: read the original: %w", len(ps), err)
	}
	out := make([]*broker.Publication, len(ps))
	for i, s := range msgs {
		if s.marker || s.msgID != ps[i].n.MsgID {
			return nil, fmt.Errorf("publish %d notifications: the original publish at stream sequence %d differs from this one at %d", len(ps), ack.Seq, i)
		}
		out[i] = s.publication()
	}
	return out, nil
}
