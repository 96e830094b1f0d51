package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// Defaults of Options.
const (
	DefaultPrefix          = "herald"
	DefaultHeartbeat       = time.Second
	DefaultPresenceTimeout = 500 * time.Millisecond
)

// missedBeats is how many heartbeat intervals a node may stay silent before
// the others declare it gone.
const missedBeats = 3

// maxPeerInterval caps the interval a peer advertises, so that a peer
// claiming an absurd one cannot stay in the membership for ever after it
// stopped.
const maxPeerInterval = time.Minute

// maxNodeID bounds a node id: it travels in every heartbeat and reply.
const maxNodeID = 128

// ErrClosed is returned by Presence after Close.
var ErrClosed = errors.New("cluster node closed")

// ErrDisconnected means the node cannot reach NATS: presence holds this
// node's own count and users only.
var ErrDisconnected = errors.New("cluster unreachable: NATS connection is down")

// Local is what the node knows about itself. The server implements it with
// its hub (Presence) and its load signal (Busy). Both are called from
// NATS handler goroutines and must not block for long nor call back into
// the Node.
type Local interface {
	// Presence returns how many connections of this node are subscribed to
	// channel and the distinct user ids among them.
	Presence(channel string) (count int, users []string)
	// Busy reports whether this node is over its overload thresholds.
	Busy() bool
}

// Options configure a Node. The zero value of every field but Local is
// useful.
type Options struct {
	// NodeID names this process in the cluster; it must be unique among the
	// nodes that share Prefix. Default: a new ULID, which sorts by start
	// time, so that the oldest node leads the busy signal and a node that
	// joins does not take the lead from it.
	NodeID string
	// Prefix starts every subject this package uses (default "herald").
	Prefix string
	// Local answers for this node. Required.
	Local Local
	// Heartbeat is how often the node announces itself (default 1s); a
	// node not heard for three of its intervals is gone.
	Heartbeat time.Duration
	// PresenceTimeout bounds a Presence call whose context has no deadline
	// (default 500ms).
	PresenceTimeout time.Duration
	// OnFlip is called when the cluster's busy state flips, on one node of
	// the cluster only (the live node with the smallest id), so that the
	// caller publishes one servers_busy / servers_normal per flip. Calls are
	// sequential, off the heartbeat path, and ctx ends at Close. When it
	// returns an error (the publish failed), the flip is not taken as
	// announced: it is offered again a heartbeat interval later if the
	// cluster is still in that state. It must not call Close (Close waits
	// for it).
	OnFlip func(ctx context.Context, busy bool) error
	// Logger receives membership changes and protocol errors (default: none).
	Logger hclog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Local == nil {
		return o, errors.New("cluster options: Local is required")
	}
	if o.NodeID == "" {
		o.NodeID = ulid.Make().String()
	}
	if len(o.NodeID) > maxNodeID {
		return o, fmt.Errorf("cluster options: NodeID is %d bytes, at most %d", len(o.NodeID), maxNodeID)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if err := validPrefix(o.Prefix); err != nil {
		return o, fmt.Errorf("cluster options: Prefix %q: %w", o.Prefix, err)
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Heartbeat < time.Millisecond || o.Heartbeat > maxPeerInterval {
		return o, fmt.Errorf("cluster options: Heartbeat %s is outside 1ms..%s", o.Heartbeat, maxPeerInterval)
	}
	if o.PresenceTimeout == 0 {
		o.PresenceTimeout = DefaultPresenceTimeout
	}
	if o.PresenceTimeout < 0 {
		return o, fmt.Errorf("cluster options: PresenceTimeout %s is negative", o.PresenceTimeout)
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	return o, nil
}

// validPrefix accepts what can start a NATS subject: dot-separated
// non-empty tokens without wildcards or white space.
func validPrefix(p string) error {
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return errors.New("empty subject token")
		}
		if strings.ContainsAny(tok, "*> \t\r\n") {
			return errors.New("wildcards and white space are not allowed")
		}
	}
	return nil
}

// peer is another node as its heartbeats describe it.
type peer struct {
	inst  string
	busy  bool
	every time.Duration
	seen  time.Time
}

func (p *peer) expired(now time.Time, own time.Duration) bool {
	every := max(min(p.every, maxPeerInterval), own)
	return now.Sub(p.seen) > missedBeats*every
}

// Node is this process's member of the cluster: it keeps the membership,
// answers and gathers presence, and derives the cluster's busy state.
type Node struct {
	nc   *nats.Conn
	opts Options
	id   string
	inst string
	log  hclog.Logger

	subjNodes    string
	subjPresence string
	inbox        string // replies to this node's presence requests: inbox.<request id>

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	loops  sync.WaitGroup // run and notify
	subs   []*nats.Subscription

	// handlers counts NATS handler calls in progress, so that Close returns
	// only once none will touch Local again.
	handlers sync.WaitGroup

	beatNow chan struct{} // 1 slot: publish a heartbeat now
	flipped chan struct{} // 1 slot: pendingFlip is set

	mu          sync.Mutex
	closed      bool
	peers       map[string]*peer
	gathers     map[uint64]*gather // by request id
	flights     map[string]*gather // by channel: the gather later calls join
	nextReq     uint64
	selfBusy    bool      // Local.Busy() at the last tick
	announced   bool      // the cluster busy state last announced by a leader
	readyAt     time.Time // before it, the node's view may be partial: it does not lead
	blind       bool      // the NATS connection was down at the last tick
	pendingFlip *bool     // a flip not yet handed to OnFlip
	holdUntil   time.Time // after a failed OnFlip, no flip before it
	dupInst     string    // the last process seen using our id, logged once
	ignored     uint64    // messages ignored since the last warning about them
	warnedAt    time.Time // the last warning about ignored messages

	replyBuf []byte // owned by the presence request handler (one at a time)

	stats struct {
		heartbeats, gathered, shared, incomplete, answered, parts, leftOut atomic.Uint64
	}
}

// Stats are the node's counters since New, for metrics.
type Stats struct {
	HeartbeatsHeard    uint64 // heartbeats received from other nodes
	PresenceGathered   uint64 // Presence calls that asked other nodes
	PresenceShared     uint64 // Presence calls that joined a request in flight for the channel
	PresenceIncomplete uint64 // ... of which some node did not answer in full in time
	PresenceAnswered   uint64 // requests of other nodes answered
	PresenceParts      uint64 // reply messages sent (more than answered when split over max payload)
	UsersLeftOut       uint64 // user ids too long for any reply message, not sent
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		HeartbeatsHeard:    n.stats.heartbeats.Load(),
		PresenceGathered:   n.stats.gathered.Load(),
		PresenceShared:     n.stats.shared.Load(),
		PresenceIncomplete: n.stats.incomplete.Load(),
		PresenceAnswered:   n.stats.answered.Load(),
		PresenceParts:      n.stats.parts.Load(),
		UsersLeftOut:       n.stats.leftOut.Load(),
	}
}

// New joins the cluster on nc: it subscribes to the membership and presence
// subjects, announces the node, and starts the heartbeat. ctx bounds the
// set-up only (without a deadline, nats.go's flush timeout bounds it); the
// node lives until Close. The caller owns nc and closes it
// after Close.
func New(ctx context.Context, nc *nats.Conn, opts Options) (*Node, error) {
	if nc == nil {
		return nil, errors.New("cluster: no NATS connection")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	inst := ulid.Make().String()
	n := &Node{
		nc:           nc,
		opts:         opts,
		id:           opts.NodeID,
		inst:         inst,
		log:          opts.Logger.With("node", opts.NodeID),
		subjNodes:    opts.Prefix + ".nodes",
		subjPresence: opts.Prefix + ".presence",
		inbox:        nc.NewInbox(),
		beatNow:      make(chan struct{}, 1),
		flipped:      make(chan struct{}, 1),
		peers:        map[string]*peer{},
		gathers:      map[uint64]*gather{},
		flights:      map[string]*gather{},
		readyAt:      time.Now().Add(missedBeats * opts.Heartbeat),
		selfBusy:     opts.Local.Busy(),
	}
	for _, s := range []struct {
		subject string
		handle  nats.MsgHandler
	}{
		{n.subjPresence, n.onPresenceRequest},
		{n.inbox + ".*", n.onPresenceReply},
		{n.subjNodes, n.onHeartbeat},
	} {
		sub, err := nc.Subscribe(s.subject, s.handle)
		if err != nil {
			n.unsubscribe()
			return nil, fmt.Errorf("cluster: subscribe %s: %w", s.subject, err)
		}
		n.subs = append(n.subs, sub)
	}
	// The subscriptions must be in place before the first heartbeat: a node
	// that hears it may ask us for presence at once.
	flush := nc.Flush // nats.go's own bound
	if _, ok := ctx.Deadline(); ok {
		flush = func() error { return nc.FlushWithContext(ctx) }
	}
	// While NATS cannot be reached (a node starting before it), nats.go
	// registers them when it connects, and the node says hello then; a
	// flush would only wait out its timeout (10s, with the node not yet
	// listening).
	if !nc.IsConnected() {
		flush = func() error { return nil }
	}
	if err := flush(); err != nil && nc.IsConnected() {
		n.unsubscribe()
		return nil, fmt.Errorf("cluster: register subscriptions: %w", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.loops.Add(2)
	go n.run()
	go n.notify()
	return n, nil
}

// ID is this node's id.
func (n *Node) ID() string { return n.id }

// Nodes lists the ids of the live nodes, this one included, sorted.
func (n *Node) Nodes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := make([]string, 0, len(n.peers)+1)
	ids = append(ids, n.id)
	for id := range n.peers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Busy reports whether any live node is busy (this one as Local says now,
// the others as their last heartbeat said).
func (n *Node) Busy() bool {
	if n.opts.Local.Busy() {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.peers {
		if p.busy {
			return true
		}
	}
	return false
}

// Close leaves the cluster: it tells the other nodes, ends the node's
// goroutines and waits for its NATS handlers and any OnFlip call to
// return. Presence calls in flight return what they have with ErrClosed.
// It does not close the NATS connection.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	gathers := n.gathers
	n.gathers = map[uint64]*gather{}
	n.mu.Unlock()

	for _, g := range gathers {
		g.abort(ErrClosed)
	}
	n.unsubscribe()
	n.cancel()
	n.loops.Wait()
	n.handlers.Wait()

	if !n.nc.IsConnected() {
		return nil
	}
	bye := encodeHeartbeat(heartbeat{V: wireVersion, ID: n.id, Inst: n.inst, EveryMS: n.opts.Heartbeat.Milliseconds(), Bye: true})
	if err := n.nc.Publish(n.subjNodes, bye); err != nil {
		return fmt.Errorf("cluster: publish goodbye: %w", err)
	}
	// Bounded: a node that cannot say goodbye expires anyway.
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.Heartbeat)
	defer cancel()
	if err := n.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("cluster: flush goodbye: %w", err)
	}
	return nil
}

func (n *Node) unsubscribe() {
	for _, s := range n.subs {
		if err := s.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			n.log.Warn("unsubscribe", "subject", s.Subject, "error", err)
		}
	}
}

// ignoredWarnEvery spaces the warnings about messages the node cannot read:
// a node of another version heartbeats every second.
const ignoredWarnEvery = time.Minute

// warnIgnored logs a message the node cannot read, at most once per
// ignoredWarnEvery, with how many were ignored since the last warning.
func (n *Node) warnIgnored(what, subject string, err error) {
	n.mu.Lock()
	n.ignored++
	now := time.Now()
	if now.Sub(n.warnedAt) < ignoredWarnEvery {
		n.mu.Unlock()
		return
	}
	count := n.ignored
	n.ignored, n.warnedAt = 0, now
	n.mu.Unlock()
	n.log.Warn("ignoring "+what, "subject", subject, "error", err, "ignored", count)
}

// enter registers a NATS handler call; it fails once the node is closed.
func (n *Node) enter() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.handlers.Add(1)
	return true
}

func (n *Node) leave() { n.handlers.Done() }
