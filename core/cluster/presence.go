package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// IncompleteError is returned by Presence when some live nodes did not
// answer (in full) before the deadline: the count and users returned are
// those of the nodes that did.
type IncompleteError struct {
	Channel string
	Missing []string // ids of the nodes whose answer is missing or partial, sorted
	Err     error    // why the wait ended (the context's error, or ErrClosed)
}

func (e *IncompleteError) Error() string {
	return fmt.Sprintf("presence %q: no full answer from %d node(s) (%s): %v",
		e.Channel, len(e.Missing), strings.Join(e.Missing, ", "), e.Err)
}

func (e *IncompleteError) Unwrap() error { return e.Err }

// Presence returns how many connections across the live nodes are
// subscribed to channel and the distinct user ids among them. It asks
// every other live node once and waits for all of them, or until ctx ends
// (PresenceTimeout when ctx has no deadline). A call for a channel whose
// presence this node is already gathering shares that request instead of
// sending another (bounded by its own ctx). On an error, count and users
// still hold what was gathered: at least this node's own.
func (n *Node) Presence(ctx context.Context, channel string) (count int, users []string, err error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.opts.PresenceTimeout)
		defer cancel()
	}
	n.mu.Lock()
	if g := n.flights[channel]; g != nil && !n.closed {
		g.shared++
		n.mu.Unlock()
		n.stats.shared.Add(1)
		select {
		case <-g.done:
			return g.result(nil)
		case <-ctx.Done():
			return g.result(ctx.Err())
		}
	}
	n.mu.Unlock()

	count, users = n.opts.Local.Presence(channel)
	n.mu.Lock()
	switch {
	case n.closed:
		n.mu.Unlock()
		return count, users, fmt.Errorf("presence %q: %w", channel, ErrClosed)
	case n.blind || !n.nc.IsConnected():
		n.mu.Unlock()
		// Counted as a gathering that no other node answered, so that
		// the metrics show presence answered for this node alone.
		n.stats.gathered.Add(1)
		n.stats.incomplete.Add(1)
		return count, users, fmt.Errorf("presence %q: %w", channel, ErrDisconnected)
	case len(n.peers) == 0:
		n.mu.Unlock()
		return count, users, nil
	}
	expect := make([]string, 0, len(n.peers))
	for id := range n.peers {
		expect = append(expect, id)
	}
	g := newGather(channel, expect, count, users)
	n.nextReq++
	req := n.nextReq
	n.gathers[req] = g
	if n.flights[channel] == nil {
		n.flights[channel] = g
	}
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.gathers, req)
		if n.flights[channel] == g {
			delete(n.flights, channel)
		}
		n.mu.Unlock()
	}()

	err = n.nc.PublishMsg(&nats.Msg{
		Subject: n.subjPresence,
		Reply:   n.inbox + "." + strconv.FormatUint(req, 10),
		Data:    encodeRequest(n.id, channel),
	})
	if err != nil {
		g.abort(fmt.Errorf("publish request: %w", err))
	}
	select {
	case <-g.done:
	case <-ctx.Done():
		g.abort(ctx.Err())
	}
	n.stats.gathered.Add(1)
	count, users, err = g.result(nil)
	if err != nil {
		n.stats.incomplete.Add(1)
	}
	return count, users, err
}

// onPresenceRequest answers another node's request with this node's count
// and distinct users, in parts of at most the NATS max payload.
func (n *Node) onPresenceRequest(m *nats.Msg) {
	if !n.enter() {
		return
	}
	defer n.leave()
	from, channel, err := decodeRequest(m.Data)
	if err != nil {
		n.warnIgnored("a message on the presence subject", m.Subject, err)
		return
	}
	if from == n.id || m.Reply == "" {
		return // our own request: the gatherer counted us already
	}
	count, users := n.opts.Local.Presence(channel)
	w := replyWriter{node: n.id, count: count, users: users, max: int(n.nc.MaxPayload()), buf: n.replyBuf}
	parts := 0
	for w.more() {
		if err := n.nc.Publish(m.Reply, w.nextPart()); err != nil {
			n.log.Warn("answer presence", "channel", channel, "to", from, "error", err)
			break
		}
		parts++
	}
	n.replyBuf = w.buf
	n.stats.answered.Add(1)
	n.stats.parts.Add(uint64(parts))
	n.stats.leftOut.Add(uint64(len(w.skipped)))
	if parts > 1 {
		n.log.Debug("presence answer over the NATS max payload: sent in parts", "channel", channel, "users", len(users), "parts", parts)
	}
	if len(w.skipped) > 0 {
		n.log.Warn("presence answer left out user ids longer than the NATS max payload", "channel", channel, "left_out", len(w.skipped), "max_payload", w.max)
	}
}

// onPresenceReply routes a reply part to the request it answers.
func (n *Node) onPresenceReply(m *nats.Msg) {
	if !n.enter() {
		return
	}
	defer n.leave()
	req, err := strconv.ParseUint(m.Subject[strings.LastIndexByte(m.Subject, '.')+1:], 10, 64)
	if err != nil {
		return
	}
	n.mu.Lock()
	g := n.gathers[req]
	n.mu.Unlock()
	if g == nil {
		return // late: the request ended
	}
	if err := g.add(m.Data); err != nil {
		n.warnIgnored("a presence reply", m.Subject, err)
	}
}

// dropLocked stops in-flight requests waiting for a node that left.
func (n *Node) dropLocked(id string) {
	for _, g := range n.gathers {
		g.forget(id)
	}
}

// maxUsersHint caps the size a gather reserves for users up front, whatever
// count a reply claims.
const maxUsersHint = 1 << 16

// gather collects the replies to one presence request.
type gather struct {
	channel string
	done    chan struct{} // closed when every expected node answered, or on abort

	mu      sync.Mutex
	ended   bool
	cause   error
	shared  int                // Presence calls that joined this one (guarded by Node.mu)
	waiting map[string]*answer // expected nodes, until complete
	count   int
	local   []string            // this node's users
	users   map[string]struct{} // everyone else's, made on the first one
}

// answer tracks the parts received from one node.
type answer struct {
	counted bool
	parts   map[int]bool
	last    int // index of the last part, -1 until seen
}

func newGather(channel string, expect []string, count int, local []string) *gather {
	g := &gather{
		channel: channel,
		done:    make(chan struct{}),
		waiting: make(map[string]*answer, len(expect)),
		count:   count,
		local:   local,
	}
	for _, id := range expect {
		g.waiting[id] = &answer{last: -1}
	}
	return g
}

// add merges one reply part. A node's count is taken once, whatever the
// number of its parts or of duplicates; a part from a node not asked, or
// from one already complete, is ignored.
func (g *gather) add(data []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return nil
	}
	var a *answer
	h, err := decodeReply(data, func(u string) {
		g.users[u] = struct{}{}
	}, func(h replyHeader) bool {
		w := g.waiting[h.node]
		if w == nil || w.parts[h.part] || (w.last >= 0 && h.part > w.last) {
			return false // not asked, already complete, or a duplicate part
		}
		a = w
		if g.users == nil {
			// Sized once from the first answer: the others are likely alike.
			g.users = make(map[string]struct{}, min(len(g.local)+h.count*len(g.waiting), maxUsersHint))
		}
		return true
	})
	if err != nil || a == nil {
		return err
	}
	if !a.counted {
		a.counted = true
		g.count += h.count
	}
	if a.parts == nil {
		a.parts = map[int]bool{}
	}
	a.parts[h.part] = true
	if h.last {
		a.last = h.part
	}
	if a.last >= 0 && len(a.parts) == a.last+1 {
		delete(g.waiting, h.node)
		g.finishLocked(nil)
	}
	return nil
}

// forget stops waiting for a node that left the cluster; what it sent is
// kept.
func (g *gather) forget(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended {
		return
	}
	delete(g.waiting, id)
	g.finishLocked(nil)
}

// abort ends the wait with what arrived so far.
func (g *gather) abort(cause error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.ended {
		g.cause = cause
		g.ended = true
		close(g.done)
	}
}

func (g *gather) finishLocked(cause error) {
	if !g.ended && len(g.waiting) == 0 {
		g.cause = cause
		g.ended = true
		close(g.done)
	}
}

// result is the merged presence so far, in a slice of the caller's own;
// an IncompleteError names the nodes whose answer is missing or partial,
// with the gather's cause, or else the given one.
func (g *gather) result(cause error) (int, []string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	users := slices.Clone(g.local)
	if g.users != nil {
		for _, u := range g.local {
			g.users[u] = struct{}{}
		}
		users = make([]string, 0, len(g.users))
		for u := range g.users {
			users = append(users, u)
		}
	}
	if len(g.waiting) == 0 {
		return g.count, users, nil
	}
	if g.cause != nil {
		cause = g.cause
	}
	if cause == nil {
		cause = errors.New("wait ended")
	}
	missing := make([]string, 0, len(g.waiting))
	for id := range g.waiting {
		missing = append(missing, id)
	}
	slices.Sort(missing)
	return g.count, users, &IncompleteError{Channel: g.channel, Missing: missing, Err: cause}
}
