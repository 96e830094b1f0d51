package cluster

import (
	"time"

	"github.com/nats-io/nats.go"
)

// run publishes the heartbeat every interval (and at once when asked),
// expires silent peers and re-evaluates the busy signal, until Close.
func (n *Node) run() {
	defer n.loops.Done()
	t := time.NewTicker(n.opts.Heartbeat)
	defer t.Stop()
	n.tick(true)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.tick(false)
		case <-n.beatNow:
			n.beat()
		}
	}
}

// tick samples this node's state, expires peers and sends the heartbeat.
func (n *Node) tick(hello bool) {
	now := time.Now()
	connected := n.nc.IsConnected()
	busy := n.opts.Local.Busy()

	n.mu.Lock()
	n.selfBusy = busy
	switch {
	case !connected && !n.blind:
		n.blind = true
		n.log.Warn("NATS connection down: membership and busy signal frozen, presence is this node's only")
	case connected && n.blind:
		// What we heard while away is stale: listen for a full window
		// before leading again, and ask everyone to speak up now.
		n.blind = false
		n.readyAt = now.Add(missedBeats * n.opts.Heartbeat)
		hello = true
		n.log.Info("NATS connection back: rejoining the cluster")
	}
	for id, p := range n.peers {
		if p.expired(now, n.opts.Heartbeat) {
			delete(n.peers, id)
			n.dropLocked(id)
			n.log.Warn("node gone: not heard for three heartbeats", "peer", id, "last_seen", p.seen)
		}
	}
	n.evaluateLocked(now)
	hb := n.heartbeatLocked(now)
	n.mu.Unlock()

	if connected {
		hb.Hello = hello
		n.publishHeartbeat(hb)
	}
}

// beat sends the heartbeat outside the schedule (a flip to announce, a
// hello to answer).
func (n *Node) beat() {
	if !n.nc.IsConnected() {
		return
	}
	n.mu.Lock()
	hb := n.heartbeatLocked(time.Now())
	n.mu.Unlock()
	n.publishHeartbeat(hb)
}

func (n *Node) publishHeartbeat(hb heartbeat) {
	if err := n.nc.Publish(n.subjNodes, encodeHeartbeat(hb)); err != nil {
		n.log.Warn("publish heartbeat", "subject", n.subjNodes, "error", err)
	}
}

func (n *Node) heartbeatLocked(now time.Time) heartbeat {
	return heartbeat{
		V: wireVersion, ID: n.id, Inst: n.inst,
		EveryMS:   n.opts.Heartbeat.Milliseconds(),
		Busy:      n.selfBusy,
		Announced: n.announced,
		Lead:      n.leadingLocked(now),
		Ready:     n.readyLocked(now),
	}
}

// beatSoon asks run to publish a heartbeat now; it never blocks.
func (n *Node) beatSoon() {
	select {
	case n.beatNow <- struct{}{}:
	default:
	}
}

// onHeartbeat updates the membership from another node's heartbeat.
func (n *Node) onHeartbeat(m *nats.Msg) {
	if !n.enter() {
		return
	}
	defer n.leave()
	hb, err := decodeHeartbeat(m.Data)
	if err != nil {
		n.warnIgnored("a message on the membership subject", m.Subject, err)
		return
	}
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if hb.ID != n.id {
		n.stats.heartbeats.Add(1)
	}
	if hb.ID == n.id {
		if hb.Inst != n.inst && hb.Inst != n.dupInst {
			n.dupInst = hb.Inst
			n.log.Error("another process uses this node id: presence and the busy signal will be wrong until node ids are unique", "other_instance", hb.Inst)
		}
		return
	}
	if hb.Bye {
		if _, ok := n.peers[hb.ID]; ok {
			delete(n.peers, hb.ID)
			n.dropLocked(hb.ID)
			n.log.Info("node left", "peer", hb.ID)
			n.evaluateLocked(now)
		}
		return
	}
	p, known := n.peers[hb.ID]
	if !known {
		p = &peer{}
		n.peers[hb.ID] = p
		n.log.Info("node joined", "peer", hb.ID, "nodes", len(n.peers)+1)
	} else if p.inst != hb.Inst {
		n.log.Info("node restarted", "peer", hb.ID)
	}
	p.inst, p.busy, p.every, p.seen = hb.Inst, hb.Busy, hb.every(), now
	// Follow the announced state of whoever leads, unless we lead: then
	// ours is the reference (two leaders exist only while views differ,
	// for at most a heartbeat). While our view is partial, any node whose
	// view is complete knows better than we do.
	if !n.leadingLocked(now) && (hb.Lead || hb.Ready && !n.readyLocked(now)) {
		n.announced = hb.Announced
	}
	if hb.Hello {
		n.beatSoon()
	}
	n.evaluateLocked(now)
}

// leadingLocked reports whether this node leads the busy signal: it has
// the smallest id among the live nodes and its view is complete (it has
// listened for a full expiry window since it started or reconnected).
func (n *Node) leadingLocked(now time.Time) bool {
	if !n.readyLocked(now) {
		return false
	}
	for id := range n.peers {
		if id < n.id {
			return false
		}
	}
	return true
}

// readyLocked reports whether the node's view of the membership is
// complete: it has listened for a full expiry window since it started or
// its NATS connection came back.
func (n *Node) readyLocked(now time.Time) bool {
	return !n.closed && !n.blind && !now.Before(n.readyAt)
}

// evaluateLocked announces a flip of the cluster's busy state if this node
// leads.
func (n *Node) evaluateLocked(now time.Time) {
	if !n.leadingLocked(now) || now.Before(n.holdUntil) {
		return
	}
	busy := n.selfBusy
	for _, p := range n.peers {
		busy = busy || p.busy
	}
	if busy == n.announced {
		return
	}
	n.announced = busy
	n.log.Info("cluster busy state flips", "busy", busy)
	// A flip not yet handed to OnFlip is the opposite of this one: the
	// two cancel, and OnFlip is not called for a state the cluster left.
	if n.pendingFlip != nil {
		n.pendingFlip = nil
	} else {
		n.pendingFlip = &busy
		select {
		case n.flipped <- struct{}{}:
		default:
		}
	}
	// Tell the others now, so that a leader taking over knows what was
	// announced.
	n.beatSoon()
}

// notify hands flips to OnFlip, one at a time, off the heartbeat path: a
// slow OnFlip (a publish while NATS is slow) must not stop the heartbeat.
func (n *Node) notify() {
	defer n.loops.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.flipped:
		}
		n.mu.Lock()
		flip := n.pendingFlip
		n.pendingFlip = nil
		n.mu.Unlock()
		if flip == nil || n.opts.OnFlip == nil {
			continue
		}
		if err := n.opts.OnFlip(n.ctx, *flip); err != nil {
			n.log.Warn("announcing the cluster busy state failed: retrying in a heartbeat", "busy", *flip, "error", err)
			n.unannounce(*flip)
		}
	}
}

// unannounce takes back a flip whose announcement failed, so that the
// next evaluation a heartbeat later offers it again if the cluster is
// still in that state.
func (n *Node) unannounce(flip bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.pendingFlip != nil:
		// The flip queued after it goes back to what the cluster was last
		// told: nothing to announce.
		n.pendingFlip = nil
	case n.announced == flip:
		n.announced = !flip
	}
	n.holdUntil = time.Now().Add(n.opts.Heartbeat)
}
