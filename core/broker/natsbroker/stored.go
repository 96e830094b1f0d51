package natsbroker

import (
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldhq/herald/core/broker"
)

// Headers herald puts on every stored message. The data is the
// notification as clients receive it (broker.Encode), so that no node
// decodes or re-encodes it; the headers carry what a node needs without
// parsing the JSON.
const (
	hdrSeq      = "Herald-Seq"      // the channel's seq, decimal
	hdrEpoch    = "Herald-Epoch"    // the channel's epoch when it was placed
	hdrID       = "Herald-Id"       // the notification's id
	hdrAccepted = "Herald-Accepted" // when herald accepted it, Unix nanoseconds
	hdrMore     = "Herald-More"     // "1": more of the same Publish follow
)

// JetStream's headers.
const (
	hdrMsgID          = "Nats-Msg-Id"
	hdrExpLastSubjSeq = "Nats-Expected-Last-Subject-Sequence"
	hdrExpLastMsgID   = "Nats-Expected-Last-Msg-Id"
	hdrBatchID        = "Nats-Batch-Id"
	hdrBatchSeq       = "Nats-Batch-Sequence"
	hdrBatchCommit    = "Nats-Batch-Commit"
	hdrStreamSubject  = "Nats-Subject"
	hdrStreamSeq      = "Nats-Sequence"
	hdrTimeStamp      = "Nats-Time-Stamp"
	hdrStatus         = "Status"
	hdrDescription    = "Description"
)

// stored is one message of the stream as herald reads it: a notification,
// or a marker (anything without Herald-Seq: JetStream's subject delete
// marker when a channel's last message aged out, or a purge's) that ends
// the channel's run.
type stored struct {
	channel  string
	sseq     uint64 // stream sequence
	seq      uint64
	epoch    string
	id       string
	more     bool
	accepted time.Time
	storedAt time.Time // when the stream stored it
	marker   bool
	msgID    string
	data     []byte
}

// parseStored reads a message served by a direct get or republished
// by the stream: both carry the stream subject and sequence in headers.
func (b *Broker) parseStored(m *nats.Msg) (*stored, bool) {
	subj := m.Header.Get(hdrStreamSubject)
	tok, ok := strings.CutPrefix(subj, b.chPrefix)
	if !ok {
		return nil, false
	}
	ch, err := decodeToken(tok)
	if err != nil {
		return nil, false
	}
	sseq, err := strconv.ParseUint(m.Header.Get(hdrStreamSeq), 10, 64)
	if err != nil || sseq == 0 {
		return nil, false
	}
	s := &stored{channel: ch, sseq: sseq, msgID: m.Header.Get(hdrMsgID)}
	if ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(hdrTimeStamp)); err == nil {
		s.storedAt = ts
	}
	seqText := m.Header.Get(hdrSeq)
	if seqText == "" {
		s.marker = true
		return s, true
	}
	if s.seq, err = strconv.ParseUint(seqText, 10, 64); err != nil || s.seq == 0 {
		s.marker = true
		return s, true
	}
	s.epoch = m.Header.Get(hdrEpoch)
	s.id = m.Header.Get(hdrID)
	s.more = m.Header.Get(hdrMore) == "1"
	if ns, err := strconv.ParseInt(m.Header.Get(hdrAccepted), 10, 64); err == nil {
		s.accepted = time.Unix(0, ns)
	}
	s.data = m.Data
	return s, true
}

func (s *stored) publication() *broker.Publication {
	return &broker.Publication{Channel: s.channel, Seq: s.seq, ID: s.id, Data: s.data, More: s.more, Accepted: s.accepted}
}

// state is where a channel stands: the stream sequence of its last message
// (0: it has none), the seq and epoch of its current run. A channel with
// no message (never published to, or its history aged out) is fresh: its
// next publication starts run number run (epoch runEpoch(run)), after its
// run record at stream sequence recSeq of the runs stream says so.
type state struct {
	sseq   uint64
	seq    uint64
	epoch  string
	fresh  bool
	run    uint64
	recSeq uint64
	// recorded says this node wrote the run record for run (a retry of
	// the publish does not write it again).
	recorded bool
}

// runRecord is a channel's entry in the runs stream: the number of the
// last run it started, at stream sequence sseq (0: it never had one).
type runRecord struct {
	n    uint64
	sseq uint64
	at   time.Time // when the stream stored it
}

// stateOf is the channel's state given its last stored message (nil: none)
// and, when it has none, its run record.
func (b *Broker) stateOf(last *stored, rec runRecord) state {
	switch {
	case last == nil && rec.n > 0 && b.starting(rec):
		// Run n is starting (its record is written before its first
		// publication) or failed to: either way it has no publication a
		// client could hold, and is the run to join.
		return state{epoch: b.runEpoch(rec.n), fresh: true, run: rec.n, recSeq: rec.sseq, recorded: true}
	case last == nil:
		run := rec.n + 1
		return state{epoch: b.runEpoch(run), fresh: true, run: run, recSeq: rec.sseq}
	case last.marker:
		return state{sseq: last.sseq, epoch: b.epochAfter(last.sseq)}
	default:
		return state{sseq: last.sseq, seq: last.seq, epoch: last.epoch}
	}
}

// starting says whether the channel's last run, which has no message now,
// cannot have had one that aged out: its record is younger than the
// history TTL (half of it, for the clocks of this node and the NATS server
// to differ), or nothing ages out.
func (b *Broker) starting(rec runRecord) bool {
	return b.opts.HistoryTTL == 0 || (!rec.at.IsZero() && time.Since(rec.at) < b.opts.HistoryTTL/2)
}

func (s state) position() broker.Position { return broker.Position{Seq: s.seq, Epoch: s.epoch} }

// runEpoch is the epoch of a channel's n-th run: the stream's base for
// the first, so that a channel never published to has it without any
// record; the base and n after.
func (b *Broker) runEpoch(n uint64) string {
	if n <= 1 {
		return b.baseEpoch()
	}
	return b.baseEpoch() + "." + strconv.FormatUint(n, 10)
}

// epochAfter is the epoch of a run that follows a message that is not
// herald's (at stream sequence sseq): a JetStream marker, or something
// another client published on a channel subject.
func (b *Broker) epochAfter(sseq uint64) string {
	return b.baseEpoch() + ".m" + strconv.FormatUint(sseq, 10)
}
